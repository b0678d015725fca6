"""Fuzz the command line over inventories and arguments (issue 11, last case).

The generator: the inventory of tests.conftest with one to three fields (cluster.*, images.*.*,
nodes[i].*, update_node.*, whole sections) set to random values (text with line breaks, NUL,
control and Unicode characters; huge integers; bools; floats; nulls; lists; mappings), written as
YAML (JSON is YAML) or with random characters put into the YAML text; then one verb with random
arguments: validate, render, node add/set/remove, update-node set/clear/show, image show, node list.

The oracle, for every run (in process, through the same boundary as the `clustcontrol` script):
- exit 0 or 2 (1 would be a failure of a program or a lock; none of these verbs has one here),
  and no exception but SystemExit gets out (an exception is a traceback for the user);
- on 2: nothing on stdout; every stderr line is `clustcontrol: error: WHERE: ...` (WHERE names a
  field, an option or the inventory file) or a hint, printable (no raw line break or control
  character of a value); the inventory is byte-identical and `render` created no directory;
- on 0: a verb that only reads left the inventory byte-identical; an edit left one that validates.

Accepted inventories pass the real checkers (a `daemon` test, beside tests/daemons/test_checkers.py)
and the kills of `apply` are tests/test_apply_kills.py. Bounded: under 10 s for the file."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, assume, event, given, settings
from hypothesis import strategies as st

from clustcontrol.cli import main
from clustcontrol.inventory.store import parse_inventory
from clustcontrol.render import RenderContext, render_all
from tests.conftest import inventory_data
from tests.daemons.conftest import Netns, in_netns, must, run
from tests.daemons.test_checkers import checks
from tests.test_render_injection import SLOTS, accepted, with_value
from tests.test_render_injection import values as slot_values

EXAMPLES = 300  # a few milliseconds each
CHECKED_EXAMPLES = 15  # accepted inventories through the real checkers (0.1-0.4 s each)

SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

HOSTILE = "\n\r\x00\x0b\x0c\x1b\x7f\x85\u2028\u2029\t \"';{}[]#$`\\:,=-./"
NEAR = (
    "",
    "node01",
    "node03",
    "node-9",
    "default",
    "gpu",
    "rostclust",
    "192.168.0.13",
    "192.168.0.300",
    "10.0.0.1",
    "192.168.0.0/24",
    "52:54:00:00:00:09",
    "52:54:00:00:00:01",
    "/srv/nfs4/x",
    "relative/x",
    "-x",
    "--help",
    "eth0",
    "ttyS0,115200",
    "isc",
    "kea",
    "rsync",
    "quiet",
)

text = st.one_of(
    st.sampled_from(NEAR),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=24),
    st.text(HOSTILE + "abz09", max_size=16),
    st.builds(lambda a, b: a + b, st.sampled_from(NEAR), st.text(HOSTILE, min_size=1, max_size=3)),
)
scalars = st.one_of(
    text,
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)

# Where a value goes: a path of keys and indexes into inventory_data().
PATHS: tuple[tuple[str | int, ...], ...] = (
    *(
        ("cluster", key)
        for key in (
            "domain",
            "network",
            "master",
            "gateway",
            "dns_forwarders",
            "tftp_root",
            "boot_dir",
            "control_dir",
            "state_dir",
            "dhcp_server",
            "dhcp_interface",
            "nfs_server",
            "transport",
            "rsync_port",
            "rsync_max_connections",
            "serial_console",
            "sync_retries",
            "firewall",
            "ganesha_shared_file_systems",
            "no_such_key",
        )
    ),
    ("cluster", "master", "name"),
    ("cluster", "master", "ip"),
    ("cluster", "master", "interface"),
    *(
        ("images", "default", key)
        for key in (
            "root",
            "kernel",
            "initrd",
            "kernel_args",
            "disk_layout",
            "persistent",
            "secrets",
            "boot_interface",
            "transport",
            "verify_every",
            "keep_generations",
        )
    ),
    ("images", "default"),
    ("images",),
    ("default_image",),
    ("disk_layouts",),
    ("nodes",),
    ("nodes", 1),
    *(("nodes", i, key) for i in (0, 1) for key in ("name", "mac", "ip", "image", "kernel_args")),
    *(("update_node", key) for key in ("node", "ip", "image")),
    ("update_node",),
)


def put(data: Any, path: tuple[str | int, ...], value: object) -> None:
    """Set data[path] = value, making mappings on the way (a section the base lacks); nothing
    when an earlier change left no list or no such index on the way."""
    for step in (*path[:-1], None):
        last = path[-1] if step is None else step
        if isinstance(last, str) and isinstance(data, dict):
            if step is None:
                data[last] = value
            elif not isinstance(data.get(last), dict | list):
                data[last] = {}
        elif not (isinstance(last, int) and isinstance(data, list) and last < len(data)):
            return
        elif step is None:
            data[last] = value
        if step is not None:
            data = data[last]


@st.composite
def inventories(draw: st.DrawFn) -> str:
    """The text of an inventory: the base with random fields, or the base's text changed."""
    data: dict[str, Any] = inventory_data()
    changes = draw(st.sampled_from((0, 0, 1, 1, 1, 2, 3)))  # a third left valid or near it
    for _ in range(changes):
        put(data, draw(st.sampled_from(PATHS)), draw(values))
    document = json.dumps(data, indent=2, ensure_ascii=draw(st.booleans()))
    if draw(st.integers(0, 4)) == 0:  # characters put into the YAML text itself
        position = draw(st.integers(0, len(document)))
        document = document[:position] + draw(text) + document[position:]
    return document


@st.composite
def verbs(draw: st.DrawFn) -> tuple[list[str], bool]:
    """(arguments after --config and its path, whether the verb edits the inventory).

    Half the time option values are given as `--flag=VALUE` and the name after `--`, so that
    click takes them as values whatever they hold (the library's checks see them); else as
    separate words, so that click's own usage errors are fuzzed too. {live} and {out} stand
    for scratch paths."""
    quoted = draw(st.booleans())
    name = draw(text)
    maybe = st.none() | text

    def option(flag: str, value: str | None) -> list[str]:
        if value is None:
            return []
        return [f"{flag}={value}"] if quoted else [flag, value]

    def named(*words: str) -> list[str]:
        return [*words, "--", name] if quoted else [*words, name]

    choices: list[tuple[list[str], bool]] = [
        (["validate"], False),
        (["render", "--out", "{out}", "--root", "{live}"], False),
        (
            named(
                "node",
                "add",
                *option("--mac", draw(text)),
                *option("--ip", draw(text)),
                *option("--image", draw(maybe)),
            ),
            True,
        ),
        (
            named(
                "node",
                "set",
                *option("--mac", draw(maybe)),
                *option("--ip", draw(maybe)),
                *option("--image", draw(maybe)),
                *option("--layout", draw(maybe)),
            ),
            True,
        ),
        (named("node", "remove"), True),
        (named("update-node", "set", *option("--image", draw(maybe))), True),
        (["update-node", "clear"], True),
        (["update-node", "show", *option("--output", draw(st.just("json") | text))], False),
        (named("image", "show", "--root", "{live}"), False),
        (["node", "list", *option("--output", draw(st.just("json") | text))], False),
    ]
    return draw(st.sampled_from(choices))


@dataclass
class Run:
    code: int
    out: str
    err: str


@contextlib.contextmanager
def argv(args: list[str]) -> Iterator[None]:
    saved = sys.argv
    sys.argv = ["clustcontrol", *args]
    try:
        yield
    finally:
        sys.argv = saved


def clustcontrol(*args: str | Path) -> Run:
    """Run the `clustcontrol` script's entry point in this process (its error boundary included).

    Any exception but SystemExit propagates: the user would see a traceback."""
    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    with (
        argv([str(a) for a in args]),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            main()
        except SystemExit as exc:
            code = exc.code
    assert isinstance(code, int | None), code
    return Run(code or 0, out.getvalue(), err.getvalue())


# WHERE: a field ("nodes.node01.mac"), an option ("--mac") or the inventory ("PATH:LINE").
ERROR_LINE = re.compile(r"clustcontrol: (error: \S.*?: \S.*|hint: \S.*)")


def check_rejection(result: Run) -> None:
    """Exit 2 as the CLI promises it: one printable line per problem, each naming where."""
    assert result.out == "", result.out
    lines = result.err.splitlines()
    assert lines, "exit 2 without a message"
    assert result.err.endswith("\n") and "\n\n" not in result.err, result.err
    for line in lines:
        assert "Traceback" not in line, result.err
        assert line.isprintable(), f"unprintable: {line!r}"
        assert ERROR_LINE.fullmatch(line), f"names no field or option: {line!r}"


@SETTINGS
@given(document=inventories(), verb=verbs())
def test_every_verb_accepts_or_rejects_cleanly(document: str, verb: tuple[list[str], bool]) -> None:
    args, edits = verb
    with tempfile.TemporaryDirectory(prefix="fuzz-cli-") as scratch:
        config = Path(scratch, "cluster.yaml")
        config.write_text(document, encoding="utf-8")
        before = config.read_bytes()
        out = Path(scratch, "out")
        live = Path(scratch, "live")
        args = [a.replace("{out}", str(out)).replace("{live}", str(live)) for a in args]
        result = clustcontrol("--config", config, *args)
        event(f"{args[0]} exit {result.code}")
        assert result.code in (0, 2), (result.code, result.err)
        if result.code == 2:
            check_rejection(result)
            assert config.read_bytes() == before, "an invalid input changed the inventory"
            assert not out.exists() and not live.exists()
        elif edits and "--help" not in args:  # --help edits nothing: the document may be bad
            again = clustcontrol("--config", config, "validate")
            assert again.code == 0, again.err
        else:
            assert config.read_bytes() == before


def test_oracle_sees_a_rejection_and_an_edit(tmp_path: Path) -> None:
    """The oracle's two sides on fixed input, so that the fuzz cannot pass by never reaching
    them: a node name with a line break is refused on one line, a valid edit validates."""
    config = tmp_path / "cluster.yaml"
    config.write_text(json.dumps(inventory_data()))
    before = config.read_bytes()
    bad = clustcontrol(
        "--config", config, "node", "add", "--mac=52:54:00:00:00:09", "--ip=x", "--", "a\nb"
    )
    assert bad.code == 2
    check_rejection(bad)
    assert len(bad.err.splitlines()) == 2  # the name and the address
    assert config.read_bytes() == before
    good = clustcontrol(
        "--config", config, "node", "add", "--mac=52:54:00:00:00:09", "--ip=192.168.0.19", "n9"
    )
    assert good.code == 0, good.err
    assert config.read_bytes() != before
    assert clustcontrol("--config", config, "validate").code == 0
    # Regressions the fuzz found: a name with a character str.splitlines breaks at (here the
    # record separator) printed raw, and click's usage errors on four lines with a blank one.
    unknown = clustcontrol("--config", config, "node", "remove", "--", "x\x1ey")
    assert unknown.err == "clustcontrol: error: nodes.x\\x1ey: no such node\n"
    usage = clustcontrol("--config", config, "node", "add", "-x")
    assert usage.code == 2
    check_rejection(usage)
    assert usage.err.splitlines() == [
        "clustcontrol: error: clustcontrol node add: No such option '-x'.",
        "clustcontrol: hint: try 'clustcontrol node add --help'",
    ]
    with pytest.raises(AssertionError):  # a traceback-like line fails the oracle
        check_rejection(Run(2, "", "Traceback (most recent call last):\n"))


# --- accepted inventories pass the real checkers ------------------------------------------------


@pytest.mark.daemon
@settings(
    max_examples=CHECKED_EXAMPLES,
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_accepted_inventories_pass_the_real_checkers(data: st.DataObject) -> None:
    """A slot of tests/test_render_injection.py set to one of its generated values; when the
    inventory is accepted, `render --out` writes it and every checker of
    tests/daemons/test_checkers.py passes on the files (kea in a namespace holding the
    interfaces the inventory names, as `kea-dhcp4 -t` insists they exist)."""
    if os.geteuid() != 0:
        pytest.skip("the checkers need root (kea-dhcp4 -t runs in a network namespace)")
    slot = data.draw(st.sampled_from(SLOTS), label="slot")
    value = data.draw(slot_values(slot), label=slot.name)
    inventory = with_value(slot, value)
    inv = accepted(inventory)
    assume(inv is not None)
    assert inv is not None
    event(f"checked {slot.name}")
    with tempfile.TemporaryDirectory(prefix="fuzz-check-") as scratch:
        config = Path(scratch, "cluster.yaml")
        config.write_text(json.dumps(inventory))
        root = Path(scratch, "tree")
        rendered = clustcontrol("--config", config, "render", "--out", root)
        assert rendered.code == 0, rendered.err
        tree = render_all(RenderContext(parse_inventory(inventory)))
        work = Path(scratch, "work")
        work.mkdir()
        netns = Netns()
        try:
            ns = netns.create("fuzz")
            named = (inv.cluster.master_interface, inv.cluster.dhcp_interface)
            # The devices: an address label (eth1:0) is the device's (eth1).
            devices = {n.partition(":")[0] for n in named if n}
            for number, interface in enumerate(sorted(devices)):
                peer = f"fuzzpeer{number}"
                must(
                    ["ip", "-n", ns, "link", "add", interface, "type", "veth", "peer", "name", peer]
                )
            failures = []
            ran = checks(root, tree, work)
            assert len(ran) >= 7  # dhcpd, kea, dnsmasq, named-checkconf (3), a zone or more
            for check in ran:
                proc = run([*in_netns(ns), *check.argv], env=check.env)
                if proc.returncode != 0:
                    failures.append(f"{check.what}:\n{proc.stdout}{proc.stderr}")
            assert not failures, "\n\n".join(failures)
        finally:
            netns.delete_all()
