"""No value the inventory accepts adds a line, a token or a section to a rendered file (issue 11).

The generator: for each string-typed field of the inventory (a slot), hypothesis draws values
mixing the field's own characters with hostile ones (line breaks of every kind, NUL, quotes, ';',
braces, '#', blanks, '$', backtick, Unicode separators ...): the benign value with hostile
characters put in, random text over both alphabets, and text over the field's own alphabet (so
that many values are accepted and rendered).

The oracle: a rejected value is fine. For an accepted one everything is rendered (render_all:
every renderer, every service) and compared with the render of the same inventory holding a
benign value in that slot:

- every rendered file holds printable ASCII, tabs and newlines only;
- the same files, with the same number of lines (split at "\\n" and as str.splitlines splits),
  each line with the same number of tokens (split at whitespace and at the delimiters of the
  file's syntax): the value adds no line, no token and no section;
- each file is the benign file with the benign value replaced by the accepted one (as the
  inventory holds it, and what is derived from it, e.g. a root partition's device): the value
  appears where the benign one did and nowhere else;
- the PXELINUX files keep their label structure (per LABEL the KERNEL, INITRD, APPEND and
  IPAPPEND lines, and the global directives);
- the control files, sourced by busybox sh, set each CC_ key to exactly the value the contract
  gives it (contract.control_values) and no other CC_ variable.

Addresses and numbers are parsed into objects, so they are rendered in canonical form only:
for them the hostile characters are inserted into the benign value, and an accepted value must
be the same address or number (ignored, never a different one) and render the same files.
Numbers are YAML integers (StrictInt): a text is refused whatever it holds.

Beside the generated values, every slot gets issue 11's own case each run (each line break and
NUL before and after the benign value); the sfdisk script (the one multi-line value) and the
fields with a fixed set of words have tests of their own, and a last test fails when the model
grows a field that has no slot. Bounded: EXAMPLES per slot, about 15 s for the whole file."""

from __future__ import annotations

import copy
import re
import subprocess
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Any, Literal, get_args, get_origin

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from clustcontrol import contract
from clustcontrol.contract import control_values, partition_device
from clustcontrol.errors import InvalidInputError
from clustcontrol.inventory.model import Inventory
from clustcontrol.inventory.store import parse_inventory
from clustcontrol.render import RenderContext, render_all
from clustcontrol.render.base import Output, Service
from clustcontrol.render.firewall import cluster_interface
from tests.node.conftest import BUSYBOX

EXAMPLES = 60  # per slot: 33 slots, a few milliseconds per value (more for the ones rendered)

# Every value that differs from any other in the inventory, so that replacing it in the
# rendered text replaces exactly that value.
BENIGN: dict[str, Any] = {
    "cluster": {
        "domain": "benigndomain.example",
        "network": "192.168.0.0/24",
        "master": {"name": "benignmaster", "ip": "192.168.0.1", "interface": "benignif0"},
        "gateway": "192.168.0.254",
        "dns_forwarders": ["192.0.2.53"],
        "tftp_root": "/srv/benigntftp",
        "boot_dir": "benignboot",
        "control_dir": "/srv/benign-clustcontrol",
        "state_dir": "/srv/benignstate",
        "dhcp_interface": "benignif0",
        "serial_console": "ttyS0,115200",
        "rsync_port": 8873,
        "rsync_max_connections": 64,
        "sync_retries": 5,
    },
    "default_image": "benignimage",
    "images": {
        "benignimage": {
            "root": "/srv/benignroot",
            "kernel": "benignkernel",
            "initrd": "benigninitrd",
            "kernel_args": ["benignarg"],
            "disk_layout": "benignlayout",
            "persistent": ["/var/lib/benignpersist"],
            "secrets": ["/var/lib/benignsecret"],
            "boot_interface": "benigneth0",
            "verify_every": 10,
            "keep_generations": 7,
        }
    },
    "disk_layouts": {
        "benignlayout": {
            "device": "/dev/benigndisk",
            "sfdisk": "label: dos\n,2GiB,S\n,,L\n",
            "partitions": [
                {"number": 1, "use": "swap"},
                {"number": 2, "use": "root", "fs": "ext4"},
                {"number": 3, "use": "data", "mount": "/benignmount", "persistent": True},
            ],
        }
    },
    "nodes": [
        # Its own image, layout and kernel words: it gets a pxelinux.cfg file of its own.
        {
            "name": "benignnode",
            "mac": "52:54:00:be:00:01",
            "ip": "192.168.0.11",
            "image": "benignimage",
            "disk_layout": "benignlayout",
            "kernel_args": ["benignword"],
        },
        {"name": "benignupdater", "mac": "52:54:00:be:00:02", "ip": "192.168.0.12"},
    ],
    "update_node": {"ip": "192.168.0.250", "image": "benignimage", "node": "benignupdater"},
}

HOSTILE = "\n\r\x00\x0b\x0c\x1c\x1d\x85\u2028\u2029\t \"';{}[]()#$`\\<>|&*?!~^,=:@%/"


@dataclass(frozen=True)
class Key:
    """A dict key in an inventory path: the slot renames it."""

    old: str


Step = str | int | Key


@dataclass(frozen=True)
class Slot:
    """One string-typed field, where its value goes (the field first, then the fields that must
    name the same value, e.g. a node's image), the characters it is made of, and how to read it
    back from the Inventory (as rendered). `derived` gives the strings rendered from it besides
    itself; `canonical`: the value is parsed (an address, a number) and rendered canonically."""

    name: str
    paths: tuple[tuple[Step, ...], ...]
    alphabet: str
    read: Callable[[Inventory], object]
    derived: Callable[[Inventory], list[str]] = field(default=lambda inv: [])
    canonical: bool = False
    prefix: str = ""
    applies: Callable[[Inventory], bool] = field(default=lambda inv: True)


def _get(data: Any, path: tuple[Step, ...]) -> Any:
    for step in path:
        data = data[step.old if isinstance(step, Key) else step]
    return data


def _set(data: dict[str, Any], path: tuple[Step, ...], value: object) -> None:
    parent = _get(data, path[:-1])
    last = path[-1]
    if isinstance(last, Key):  # rename, keeping the order of the keys
        items = [(value if k == last.old else k, v) for k, v in parent.items()]
        parent.clear()
        parent.update(items)
    else:
        parent[last] = value


def with_value(slot: Slot, value: object) -> dict[str, Any]:
    data = copy.deepcopy(BENIGN)
    for path in slot.paths:
        _set(data, path, value)
    return data


LABEL = "abcXYZ019-"
NAME = "abcxyz019_-"
PATH = "/aZ09._+@-"
KERNEL_WORD = "aZ09_.,:=/+@%-"
SFDISK = "disk_layouts.sfdisk"
IMAGE = ("images", "benignimage")
LAYOUT = ("disk_layouts", "benignlayout")


def _image(inv: Inventory) -> Any:
    return next(iter(inv.images.values()))


def _layout(inv: Inventory) -> Any:
    return next(iter(inv.disk_layouts.values()))


def _root_device(inv: Inventory) -> list[str]:
    layout = _layout(inv)
    return [partition_device(layout.device, layout.root.number)]


def _serial_line(inv: Inventory) -> list[str]:
    """PXELINUX's SERIAL PORT SPEED and GRUB's serial --unit=PORT --speed=SPEED as the oracle
    expects them from console=ttySPORT[,SPEEDpnf] (the kernel's serial console options:
    kernel-parameters.txt, "console=")."""
    value = str(inv.cluster.serial_console)
    match = re.fullmatch(r"ttyS([0-9]+)(?:,([0-9]+)[noe]?[5-8]?r?)?", value)
    assert match is not None, f"accepted serial console {value!r} is not ttyS<n>[,<speed>...]"
    port, speed = match.group(1), match.group(2) or 115200
    return [f"SERIAL {port} {speed}", f"serial --unit={port} --speed={speed}"]


SLOTS: tuple[Slot, ...] = (
    Slot("cluster.domain", (("cluster", "domain"),), LABEL + ".", lambda i: i.cluster.domain),
    Slot(
        "cluster.master.name",
        (("cluster", "master", "name"),),
        LABEL,
        lambda i: i.cluster.master.name,
    ),
    Slot(
        "cluster.tftp_root",
        (("cluster", "tftp_root"),),
        PATH,
        lambda i: i.cluster.tftp_root,
        prefix="/",
    ),
    Slot("cluster.boot_dir", (("cluster", "boot_dir"),), "aZ09._+-", lambda i: i.cluster.boot_dir),
    Slot(
        "cluster.control_dir",
        (("cluster", "control_dir"),),
        PATH,
        lambda i: i.cluster.control_dir,
        prefix="/srv/clustcontrol",
    ),
    Slot(
        "cluster.state_dir",
        (("cluster", "state_dir"),),
        PATH,
        lambda i: i.cluster.state_dir,
        prefix="/srv/state",
    ),
    Slot(
        "cluster.master.interface",
        # dhcp_interface is its older name: both must agree, so both get the value.
        (("cluster", "master", "interface"), ("cluster", "dhcp_interface")),
        "aZ09_.:-",
        lambda i: i.cluster.master_interface,
        # The firewall matches the device: the name without an alias suffix (":0").
        derived=lambda i: [f'iifname "{cluster_interface(i)}"'],
    ),
    Slot(
        "cluster.serial_console",
        (("cluster", "serial_console"),),
        "0123456789,noer8",
        lambda i: i.cluster.serial_console,
        derived=_serial_line,
        prefix="ttyS",
        # Another console (tty0, hvc0 ...) renders no SERIAL line, only console=VALUE on the
        # APPEND lines: a kernel word in the same place as images.kernel_args.
        applies=lambda i: str(i.cluster.serial_console).startswith("ttyS"),
    ),
    Slot(
        "image name",
        (
            (*IMAGE[:1], Key("benignimage")),
            ("default_image",),
            ("nodes", 0, "image"),
            ("update_node", "image"),
        ),
        NAME,
        lambda i: next(iter(i.images)),
    ),
    Slot("images.root", ((*IMAGE, "root"),), PATH, lambda i: _image(i).root, prefix="/"),
    Slot("images.kernel", ((*IMAGE, "kernel"),), "aZ09._+-", lambda i: _image(i).kernel),
    Slot("images.initrd", ((*IMAGE, "initrd"),), "aZ09._+-", lambda i: _image(i).initrd),
    Slot(
        "images.kernel_args",
        ((*IMAGE, "kernel_args", 0),),
        KERNEL_WORD,
        lambda i: _image(i).kernel_args[0],
    ),
    Slot(
        "images.persistent",
        ((*IMAGE, "persistent", 0),),
        PATH,
        lambda i: _image(i).persistent[0],
        prefix="/",
    ),
    Slot(
        "images.secrets",
        ((*IMAGE, "secrets", 0),),
        PATH + "*",
        lambda i: _image(i).secrets[0],
        prefix="/",
    ),
    Slot(
        "images.boot_interface",
        ((*IMAGE, "boot_interface"),),
        "aZ09_.:-",
        lambda i: _image(i).boot_interface,
    ),
    Slot(
        "layout name",
        ((*LAYOUT[:1], Key("benignlayout")), (*IMAGE, "disk_layout"), ("nodes", 0, "disk_layout")),
        NAME,
        lambda i: next(iter(i.disk_layouts)),
    ),
    Slot(
        "disk_layouts.device",
        ((*LAYOUT, "device"),),
        "aZ09_.:+@-/",
        lambda i: _layout(i).device,
        derived=_root_device,
        prefix="/dev/",
    ),
    Slot(
        "disk_layouts.partitions.mount",
        ((*LAYOUT, "partitions", 2, "mount"),),
        PATH,
        lambda i: _layout(i).partitions[2].mount,
        prefix="/",
    ),
    Slot("nodes.name", (("nodes", 0, "name"),), LABEL, lambda i: i.nodes[0].name),
    Slot(
        "update node's name",
        (("nodes", 1, "name"), ("update_node", "node")),
        LABEL,
        lambda i: i.nodes[1].name,
    ),
    Slot(
        "nodes.mac",
        (("nodes", 0, "mac"),),
        "0123456789abcdefABCDEF:-.",
        lambda i: i.nodes[0].mac[0],
    ),
    Slot(
        "nodes.kernel_args",
        (("nodes", 0, "kernel_args", 0),),
        KERNEL_WORD,
        lambda i: i.nodes[0].kernel_args[0],
    ),
    # Parsed values: addresses, networks, numbers.
    *(
        Slot(name, (path,), "0123456789./", read, canonical=True)
        for name, path, read in (
            ("cluster.network", ("cluster", "network"), lambda i: i.cluster.network),
            ("cluster.master.ip", ("cluster", "master", "ip"), lambda i: i.cluster.master.ip),
            ("cluster.gateway", ("cluster", "gateway"), lambda i: i.cluster.gateway),
            (
                "cluster.dns_forwarders",
                ("cluster", "dns_forwarders", 0),
                lambda i: i.cluster.dns_forwarders[0],
            ),
            ("cluster.rsync_port", ("cluster", "rsync_port"), lambda i: i.cluster.rsync_port),
            (
                "cluster.rsync_max_connections",
                ("cluster", "rsync_max_connections"),
                lambda i: i.cluster.rsync_max_connections,
            ),
            ("cluster.sync_retries", ("cluster", "sync_retries"), lambda i: i.cluster.sync_retries),
            ("images.verify_every", (*IMAGE, "verify_every"), lambda i: _image(i).verify_every),
            (
                "images.keep_generations",
                (*IMAGE, "keep_generations"),
                lambda i: _image(i).keep_generations,
            ),
            (
                "disk_layouts.partitions.number",
                (*LAYOUT, "partitions", 1, "number"),
                lambda i: _layout(i).partitions[1].number,
            ),
            ("nodes.ip", ("nodes", 0, "ip"), lambda i: i.nodes[0].ip),
            ("update_node.ip", ("update_node", "ip"), lambda i: i.update_node.ip),
        )
    ),
)


def benign_value(slot: Slot) -> object:
    """The slot's benign value as the inventory holds it (the first of its paths, or a renamed
    key): a number stays a number (the model takes integers only)."""
    first = slot.paths[0]
    last = first[-1]
    return last.old if isinstance(last, Key) else _get(BENIGN, first)


def benign_text(slot: Slot) -> str:
    """The slot's benign value as text."""
    return str(benign_value(slot))


def values(slot: Slot) -> st.SearchStrategy[str]:
    """Hostile and benign values for a slot (see the module docstring)."""
    benign = benign_text(slot)
    hostile = st.sampled_from(HOSTILE)
    insertions = st.lists(
        st.tuples(st.integers(0, len(benign)), st.text(HOSTILE, min_size=1, max_size=2)),
        min_size=1,
        max_size=3,
    )

    def insert(changes: list[tuple[int, str]]) -> str:
        text = benign
        for position, chars in sorted(changes, reverse=True):
            text = text[:position] + chars + text[position:]
        return text

    mutated = insertions.map(insert)
    if slot.canonical:
        return mutated
    replacements = st.lists(
        st.tuples(st.integers(0, len(benign) - 1), st.sampled_from(slot.alphabet)),
        min_size=1,
        max_size=3,
    )

    def replace(changes: list[tuple[int, str]]) -> str:
        chars = list(benign)
        for position, char in changes:
            chars[position] = char
        return "".join(chars)

    # The benign value with some of its characters replaced by others of its own alphabet:
    # mostly accepted, so the oracle sees many rendered values.
    replaced = replacements.map(replace)
    own = st.text(slot.alphabet, min_size=1, max_size=24).map(lambda t: slot.prefix + t)
    mixed = st.text(
        st.one_of(st.sampled_from(slot.alphabet), hostile), min_size=1, max_size=24
    ).map(lambda t: slot.prefix + t)
    suffixed = hostile.map(lambda c: benign + c)
    return st.one_of(mutated, suffixed, replaced, own, mixed)


# --- rendering and the oracle ----------------------------------------------------------------
_HASH = re.compile(r"^; content-hash: [0-9a-f]+$", re.MULTILINE)
# Characters that delimit tokens or sections in (nearly) every format we render: statement and
# comment characters, quotes, brackets, shell expansions. Whitespace always delimits.
COMMON_DELIMITERS = ";{}[]()\"'#$`\\<>|&"
# More per service, where the syntax gives them a meaning. PXELINUX and the control files:
# whitespace only (APPEND words may hold ',' and '='; control files are sourced, see below).
DELIMITERS: Mapping[Service, str] = {
    "dns": COMMON_DELIMITERS + "@",
    "dhcp-isc": COMMON_DELIMITERS + ",=",
    "dhcp-kea": COMMON_DELIMITERS + ",",
    "dhcp-dnsmasq": COMMON_DELIMITERS + ",=",
    "tftp": COMMON_DELIMITERS + "=",
    "pxe": "",
    "nfs-kernel": COMMON_DELIMITERS + ",",
    "nfsd": COMMON_DELIMITERS + "=",
    "nfs-ganesha": COMMON_DELIMITERS + ",=",
    "bind-mount": COMMON_DELIMITERS + ",",
    "control": "",
    "rsyncd": COMMON_DELIMITERS + "=",
    "firewall": COMMON_DELIMITERS + ",=",
}
PXELINUX_DIRECTIVES = (
    "LABEL", "KERNEL", "LINUX", "INITRD", "APPEND", "IPAPPEND", "DEFAULT", "INCLUDE", "SERIAL",
    "CONSOLE", "PROMPT", "TIMEOUT", "MENU", "SAY", "UI", "LOCALBOOT", "CONFIG", "FONT",
)  # fmt: skip


def render(inv: Inventory) -> dict[str, tuple[Service, str]]:
    """Every rendered text file: path -> (service, content), the zone hash masked."""
    outputs: list[Output] = list(render_all(RenderContext(inv)))
    return {
        o.path: (o.service, _HASH.sub("; content-hash: HASH", o.content.decode()))
        for o in outputs
        if o.content is not None
    }


NOT_PLAIN = re.compile(r"[^\x20-\x7e\t\n]")


@cache
def _tokenizer(delimiters: str) -> re.Pattern[str]:
    escaped = re.escape(delimiters)
    return re.compile(rf"[{escaped}]|[^\s{escaped}]+" if delimiters else r"\S+")


def tokens(line: str, delimiters: str) -> list[str]:
    """The tokens of a line: runs of anything but whitespace (Unicode's, line separators
    included) and delimiters, and each delimiter alone."""
    return _tokenizer(delimiters).findall(line)


def pxelinux_structure(text: str) -> list[Counter[str]]:
    """The directives of a PXELINUX file: one Counter for the lines before the first LABEL,
    then one per LABEL (PXELINUX reads a directive case-insensitively at the line's start)."""
    blocks: list[Counter[str]] = [Counter()]
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        directive = words[0].upper()
        if directive == "LABEL":
            blocks.append(Counter())
        blocks[-1][directive if directive in PXELINUX_DIRECTIVES else "?"] += 1
    return blocks


def replace_all(text: str, replacements: Mapping[str, str]) -> str:
    """Replace each key by its value in one pass, longest key first where they overlap."""
    if not replacements:
        return text
    pattern = "|".join(re.escape(k) for k in sorted(replacements, key=len, reverse=True))
    return re.sub(pattern, lambda m: replacements[m.group()], text)


def control_expectations(inv: Inventory) -> dict[str, list[tuple[str, str]]]:
    """path of each sourced control file -> the (key, value) pairs it must set."""
    base = inv.cluster.control_dir
    view = RenderContext(inv).view
    files = {f"{base}/default": control_values("cluster", inv)}
    files |= {f"{base}/images/{name}": control_values("image", inv, name) for name in inv.images}
    files |= {
        f"{base}/layouts/{name}": control_values("layout", name, layout)
        for name, layout in inv.disk_layouts.items()
    }
    files |= {f"{base}/nodes/{host.name}": control_values("node", inv, host) for host in view.hosts}
    return {path: [(k, str(v)) for k, v in pairs] for path, pairs in files.items()}


SET_MARK, END_MARK = "--set--\n", "--end--\n"


def check_sourced(files: Mapping[str, tuple[Service, str]], inv: Inventory) -> None:
    """Each control file, sourced alone by busybox sh (set -eu), sets exactly its keys to
    exactly their values, and no other CC_ variable (as `set` lists them)."""
    script = ""
    expected: list[tuple[str, list[str]]] = []
    for path, pairs in sorted(control_expectations(inv).items()):
        printed = " ".join(f'"[${{{key}}}]"' for key, _ in pairs)
        script += (
            f"(\n{files[path][1]}\nprintf '%s\\n' {printed}\n"
            f"printf '{SET_MARK}'\nset\nprintf '{END_MARK}'\n)\n"
        )
        values = "".join(f"[{value}]\n" for _, value in pairs)
        expected.append((values, sorted(key for key, _ in pairs)))
    proc = subprocess.run(
        [BUSYBOX, "sh", "-eu", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    got = []
    for chunk in proc.stdout.split(END_MARK)[:-1]:
        values, _, variables = chunk.partition(SET_MARK)
        names = re.findall(r"^(CC_[A-Za-z0-9_]*)=", variables, flags=re.MULTILINE)
        got.append((values, sorted(names)))
    assert got == expected


@cache
def benign_render() -> tuple[Inventory, dict[str, tuple[Service, str]]]:
    inv = parse_inventory(copy.deepcopy(BENIGN))
    return inv, render(inv)


def check_render(slot: Slot, inv: Inventory) -> None:
    """The oracle for an accepted value (see the module docstring)."""
    benign_inv, benign = benign_render()
    got = render(inv)
    if slot.canonical:
        # Parsed: a hostile character was ignored (e.g. blanks around a number), never turned
        # into another value.
        assert slot.read(inv) == slot.read(benign_inv)
        assert got == benign
        return
    old, new = str(slot.read(benign_inv)), str(slot.read(inv))
    replacements = dict(zip(slot.derived(benign_inv), slot.derived(inv), strict=True))
    # A derived string that stays the same is kept: it shields its part of the text from the
    # shorter value's replacement (longest key first), e.g. the firewall's interface, which
    # drops an alias suffix the value gained.
    replacements[old] = new
    expected_paths = {replace_all(path, replacements): path for path in benign}
    assert set(got) == set(expected_paths), set(got) ^ set(expected_paths)
    for path, (service, text) in got.items():
        bad = NOT_PLAIN.findall(text)
        assert not bad, f"{path}: characters {bad}"
        before = benign[expected_paths[path]][1]
        if slot.name == SFDISK and path.rsplit("/", 1)[-1].startswith("sfdisk-"):
            continue  # the value itself, checked by its own test
        assert text == replace_all(before, replacements), path
        lines, benign_lines = text.split("\n"), before.split("\n")
        assert len(lines) == len(benign_lines), path
        assert len(text.splitlines()) == len(before.splitlines()), path
        for line, benign_line in zip(lines, benign_lines, strict=True):
            assert len(tokens(line, DELIMITERS[service])) == len(
                tokens(benign_line, DELIMITERS[service])
            ), (path, line, benign_line)
        if service == "pxe":
            assert pxelinux_structure(text) == pxelinux_structure(before), path
    check_sourced(got, inv)


def accepted(data: dict[str, Any]) -> Inventory | None:
    try:
        return parse_inventory(data)
    except InvalidInputError as exc:
        # Rejected: one line per problem, the value shown by repr (no raw line break, control
        # or separator character in it).
        assert all(line.isprintable() for line in exc.problems), exc.problems
        return None


SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_benign_inventory_passes_the_oracle() -> None:
    inv, files = benign_render()
    services = {service for service, _ in files.values()}
    assert services == set(DELIMITERS), "every renderer is covered"
    # What the slots rely on: the node with its own pxelinux.cfg file, the update node, the
    # serial console, the interface, the non-default control directory.
    assert any(path.endswith("/pxelinux.cfg/C0A8000B") for path in files)
    assert "/etc/default/isc-dhcp-server" in files
    assert "SERIAL 0 115200" in files["/srv/benigntftp/benignboot/pxelinux-common"][1]
    assert inv.cluster.control_dir != contract.CONTROL_DIR
    check_sourced(files, inv)
    for slot in SLOTS:
        again = accepted(with_value(slot, benign_value(slot)))
        assert again is not None and again.model_dump() == inv.model_dump(), slot.name
        check_render(slot, again)


@pytest.mark.parametrize("slot", SLOTS, ids=[s.name for s in SLOTS])
@SETTINGS
@given(data=st.data())
def test_no_accepted_value_adds_a_line_token_or_section(slot: Slot, data: st.DataObject) -> None:
    value = data.draw(values(slot), label=slot.name)
    inv = accepted(with_value(slot, value))
    event("accepted" if inv is not None else "rejected")
    if inv is not None:
        assume(slot.applies(inv))
        check_render(slot, inv)


LINE_BREAKS = ("\n", "\r", "\r\n", "\x00", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029")


@pytest.mark.parametrize("slot", SLOTS, ids=[s.name for s in SLOTS])
def test_no_line_break_around_a_value_gets_through(slot: Slot) -> None:
    """Issue 11's own cases for every slot, every time: each line break (and NUL) before or
    after the benign value is rejected, or passes the oracle."""
    benign = benign_text(slot)
    for char in LINE_BREAKS:
        for value in (benign + char, char + benign):
            inv = accepted(with_value(slot, value))
            if inv is not None and slot.applies(inv):
                check_render(slot, inv)


SFDISK_LINE = st.text(
    st.one_of(st.sampled_from("label: dos,2GiB,SL*\t"), st.sampled_from(HOSTILE)), max_size=16
)


@SETTINGS
@given(lines=st.lists(SFDISK_LINE, min_size=1, max_size=4))
def test_sfdisk_script_is_written_as_its_own_file_only(lines: list[str]) -> None:
    """The sfdisk script is the one multi-line value: it is written as sfdisk-LAYOUT, verbatim,
    each line printable ASCII and tabs; every other file stays as it was."""
    script = "\n".join(lines)
    slot = Slot(SFDISK, ((*LAYOUT, "sfdisk"),), "", lambda i: "")
    inv = accepted(with_value(slot, script))
    if inv is None:
        return
    check_render(slot, inv)
    text = render(inv)[f"{inv.cluster.control_dir}/sfdisk-benignlayout"][1]
    assert text == (script if script.endswith("\n") else script + "\n")  # printable: check_render


LITERALS: dict[tuple[Step, ...], tuple[str, ...]] = {
    ("cluster", "dhcp_server"): ("isc", "kea", "dnsmasq"),
    ("cluster", "nfs_server"): ("kernel", "ganesha"),
    ("cluster", "transport"): ("nfs", "rsync"),
    (*IMAGE, "transport"): ("nfs", "rsync"),
    (*LAYOUT, "partitions", 2, "fs"): ("ext4", "ext3", "ext2"),
}


@pytest.mark.parametrize("path", list(LITERALS), ids=[".".join(map(str, p)) for p in LITERALS])
@SETTINGS
@given(data=st.data())
def test_choices_accept_exactly_their_words(path: tuple[Step, ...], data: st.DataObject) -> None:
    choices = LITERALS[path]
    word = data.draw(st.sampled_from(choices))
    value = data.draw(
        st.one_of(
            st.tuples(st.integers(0, len(word)), st.sampled_from(HOSTILE)).map(
                lambda c: word[: c[0]] + c[1] + word[c[0] :]
            ),
            st.sampled_from(HOSTILE).map(lambda c: word + c),
            st.just(word.upper()),
        )
    )
    data_ = copy.deepcopy(BENIGN)
    _set(data_, path, value)
    inv = accepted(data_)
    assert inv is None, f"{value!r} accepted"


def _leaf_types(annotation: Any) -> set[Any]:
    """The types an annotation is made of (through Annotated, unions, lists and dicts)."""
    if get_origin(annotation) is Literal:
        return {Literal}
    if get_origin(annotation) is Annotated:
        return _leaf_types(get_args(annotation)[0])
    args = get_args(annotation)
    if not args:
        return {annotation}
    return set().union(*(_leaf_types(a) for a in args))


def test_slots_cover_every_string_field() -> None:
    """Every field of a string, address or number type in the model has a slot (or is the
    sfdisk script, or names what a slot renames): a new field cannot slip past this test."""
    fields: set[str] = set()

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            types = _leaf_types(info.annotation)
            for sub in types:
                if isinstance(sub, type) and issubclass(sub, BaseModel):
                    walk(sub, f"{prefix}{name}.")
            if types & {str, IPv4Address, IPv4Network, int}:
                fields.add(f"{prefix}{name}")

    walk(Inventory, "")
    references = {
        "images": "image name",  # the keys
        "disk_layouts": "layout name",
        "default_image": "image name",
        "images.disk_layout": "layout name",
        "nodes.image": "image name",
        "nodes.disk_layout": "layout name",
        "update_node.image": "image name",
        "update_node.node": "update node's name",
        "cluster.dhcp_interface": "cluster.master.interface",
    }
    covered = {slot.name for slot in SLOTS} | {SFDISK}
    assert "cluster.domain" in fields and "disk_layouts.partitions.mount" in fields
    assert {f for f in fields if references.get(f, f) not in covered} == set()
