"""`clustcontrol node rehearse`: one node's boot sync, rehearsed on the master.

The real node engine (this package's node/engine: the modules `image prepare` puts into the
initramfs) runs under busybox sh against a disk image file, with what the node would get:

    kernel command line  the PXELINUX label the master renders for the node (its own
                         pxelinux.cfg/HEXIP file, else `default`) and BOOTIF for its MAC
    control directory    rendered from the inventory into a scratch directory, as `apply`
                         would install it (no applied master needed; a note says when the
                         copy installed under the prefix differs)
    the standard         the image's generation roots under PREFIX/STATE_DIR with the control
                         directory where the master bind-mounts its own (one read-only
                         overlay): over NFS bind-mounted read-only onto the node's mount point
                         (the engine's CC_NFS_MOUNT hook, which checks the export the node
                         asks for), over rsync served by a private daemon on 127.0.0.1 and a
                         free port, which the command line names (clustcontrol.server=,
                         clustcontrol.rsyncport=)
    settings             the engine's defaults and the settings of the standard's conf.d files
                         (of the current generation) that decide what a boot copies; no
                         waiting: CC_RETRY_BASE=0, CC_WARN_PAUSE=0, CC_DISK_WAIT=2

The disk file is attached to a loop device with partitions (losetup -P) and detached afterwards.
The engine runs in a private mount and PID namespace whose first process is node/rehearse.sh:
its mounts and the rsync daemon end with it, whatever happens, and never appear on the host.
What the node did comes from the engine's sync record on the disk, its variables and its log.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from posixpath import join as pjoin

from clustcontrol.contract import CONFD_FILE, CONFD_LOCAL, params, switch
from clustcontrol.errors import ClustcontrolError, CommandError, InvalidInputError, LockedError
from clustcontrol.image.generation import GenerationStore
from clustcontrol.inventory.model import Inventory, Node
from clustcontrol.render import render_all
from clustcontrol.render.base import RenderContext, RenderedTree
from clustcontrol.render.view import ClusterView
from clustcontrol.rootdir import RootDir
from clustcontrol.run import require, run

NODE_DIR = Path(__file__).resolve().parent / "node"
ENGINE_DIR = NODE_DIR / "engine"
DRIVER = NODE_DIR / "rehearse.sh"
# A new disk file without --size: the smallest of 4, 8, 16 ... 1024 GiB that the node's layout
# fits (sparse: its size costs nothing until written).
DEFAULT_SIZES = tuple((4 << 30) << n for n in range(9))
MIN_SIZE = 1 << 20
# Applets the Debian initramfs takes from busybox (first in PATH, as there; the node tests use
# the same list); the other tools (rsync, sfdisk, mke2fs, blkid, e2fsck, GNU tar) are the
# master's.
APPLETS = (
    "awk", "basename", "blockdev", "cat", "chroot", "cksum", "cmp", "cp", "cut", "date", "dd",
    "dirname", "find", "grep", "head", "ln", "ls", "mkdir", "mount", "mv", "od", "rm", "rmdir",
    "sed", "sha256sum", "sleep", "stat", "sync", "tail", "touch", "tr", "umount", "wc",
)  # fmt: skip
# The master's tools after the applets, as the initramfs has its own after busybox's.
_SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def applets_dir(directory: Path, busybox: str) -> Path:
    """`directory` (created when missing) holding a link to `busybox` for each of APPLETS, to
    put first in the engine's PATH. Returns `directory`. Raises OSError."""
    directory.mkdir(parents=True, exist_ok=True)
    for applet in APPLETS:
        link = directory / applet
        if not link.is_symlink():
            link.symlink_to(busybox)
    return directory


def engine_environment(
    applets: Path, run_dir: Path, settings: Mapping[str, str] = {}
) -> dict[str, str]:
    """The environment the node engine runs in on the master, the one way into it (`node
    rehearse`, the node tests and the benchmarks all start it so): the busybox applets of
    `applets` (applets_dir) first in PATH, then the master's tools; CC_ENGINE_DIR, this
    package's engine; CC_RUN_DIR `run_dir` (the initramfs' /run/clustcontrol); the C locale;
    then `settings` (CC_* names: conf.d settings, test hooks), which win."""
    return {
        "PATH": f"{applets}:{_SYSTEM_PATH}",
        "HOME": "/root",
        "LC_ALL": "C",
        "CC_ENGINE_DIR": str(ENGINE_DIR),
        "CC_RUN_DIR": str(run_dir),
        **settings,
    }


def engine_command(busybox: str, body: str) -> list[str]:
    """The command that runs the shell code `body` under busybox sh with the engine sourced
    (engine.sh and its modules, from CC_ENGINE_DIR of engine_environment) and `set -u`, as the
    initramfs scripts source it."""
    return [busybox, "sh", "-c", f'set -u\n. "${{CC_ENGINE_DIR}}/engine.sh" || exit 3\n{body}']


# Settings the rehearsal sets itself: where things are on the master, and no waiting.
REHEARSAL_SETTINGS = {"CC_RETRY_BASE": "0", "CC_WARN_PAUSE": "0", "CC_DISK_WAIT": "2"}
_OWN_SETTINGS = {
    *REHEARSAL_SETTINGS,
    "CC_ENGINE_DIR", "CC_RUN_DIR", "CC_BAKED_CONTROL", "CC_NFS_OPTS", "CC_NFS_TIMEOUT",
    "CC_RSYNC", "CC_TAR",
}  # fmt: skip
# What the node's tools need beside busybox (program, Debian package).
TOOLS = (
    ("busybox", "busybox"),
    ("unshare", "util-linux"),
    ("losetup", "mount"),
    ("rsync", "rsync"),
    ("sfdisk", "fdisk"),
    ("mkfs.ext4", "e2fsprogs"),
    ("e2fsck", "e2fsprogs"),
    ("partx", "util-linux"),
)
_LAYOUT_LINE = re.compile(r"clustcontrol: disk \S+: layout (\w+)")
_SIZE = re.compile(r"(\d+)([KMGT]?)(?:i?B)?", re.IGNORECASE)
_ASSIGNMENT = re.compile(r"(?:export\s+)?(CC_[A-Z0-9_]+)=(.*)")
_LITERAL = re.compile(r"'([^']*)'|\"([^\"$`\\]*)\"|([A-Za-z0-9._,:/=+@-]*)")


@dataclass(frozen=True)
class Plan:
    """A checked rehearsal (plan_rehearsal), ready for rehearse.

    `disk` is the disk image file (absolute), `create` whether it does not exist yet, `size`
    the bytes to create it with (None: the smallest of DEFAULT_SIZES the layout fits), `sfdisk`
    the node's layout's sfdisk script. `cmdline` is the node's kernel command line for
    `transport` (rehearse adds the rsync daemon's address and port). `roots` is the image's
    generation roots on this machine, `generation` its current generation. `control` maps each
    control file's path relative to cluster.control_dir (`control_dir`) to its content.
    `settings` are engine settings (CC_KEY -> value) taken from the standard's conf.d files;
    `ip` is the node's address (what DHCP would tell it); `spec` is SERVER:PATH of the NFS
    export the node must mount, `secrets_path` the PATH of the image's secrets export (the
    node mounts it whatever the transport)."""

    node: str
    image: str
    transport: str
    disk: Path
    create: bool
    size: int | None
    sfdisk: str
    cmdline: str
    roots: Path
    generation: str
    control_dir: str
    control: Mapping[str, bytes]
    settings: Mapping[str, str]
    ip: str
    spec: str
    secrets_path: str
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Rehearsal:
    """What the node did in one rehearsed boot.

    `layout` is the disk's layout before the boot (blank, same, changed; empty when the boot
    stopped earlier) and `layout_action` what the engine did about it (partitioned,
    reformatted: the root file system was re-made, kept). `method` is the copy: tar, delta,
    tree or skip (empty when none ran), `mode` normal or full (contents compared).
    `bytes_moved` is what went over the wire or pipe (bytes), `files` the regular files
    transferred and `file_bytes` their size (bytes), all 0 unless this boot copied; a tar
    stream counts no files (None). `seconds` is the boot's wall time (cc_run's), `sync_seconds`
    the copy's from the sync record's time stamps (whole seconds, so +-1 s; None when this boot
    did not copy). `result` is the engine's: synced, skipped (clustcontrol.sync=skip),
    old-copy (the master was unusable: the earlier copy boots) or failed; `status` is cc_run's
    return code. `current_generation` is what the master served, `generation` what the disk's
    sync record holds afterwards (None: no record). `console` holds the engine's console
    lines."""

    node: str
    image: str
    transport: str
    disk: str
    cmdline: str
    layout: str
    layout_action: str
    method: str
    mode: str
    bytes_moved: int
    files: int | None
    file_bytes: int | None
    seconds: float
    sync_seconds: int | None
    result: str
    status: int
    current_generation: str
    generation: str | None
    notes: tuple[str, ...]
    console: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when the node synced (or skipped the copy, or the sync by request)."""
        return self.result in ("synced", "skipped")

    def as_dict(self) -> dict[str, object]:
        """All fields as JSON-ready values (tuples become lists)."""
        data = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


def parse_size(text: str) -> int:
    """A disk size: a number of bytes, or with K, M, G, T (binary: 4G = 4 GiB), optionally
    followed by B or iB ("512M", "4GiB"). Returns bytes.

    Raises:
        ValueError: not such a size, or less than 1 MiB (the message says which)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError("is not a size (bytes, or a number with K, M, G or T)")
    size = int(match[1]) << (10 * " KMGT".index(match[2].upper() or " "))
    if size < MIN_SIZE:
        raise ValueError("is less than 1 MiB")
    return size


def _pxelinux(text: str) -> tuple[str | None, dict[str, str]]:
    """(DEFAULT label, {label: APPEND words}) of one PXELINUX config file."""
    default = None
    labels: dict[str, str] = {}
    label = None
    for line in text.splitlines():
        keyword, _, rest = line.strip().partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "DEFAULT":
            default = rest
        elif keyword == "LABEL":
            label = rest
        elif keyword == "APPEND" and label is not None:
            labels[label] = rest
    return default, labels


def kernel_cmdline(inv: Inventory, tree: RenderedTree, node: Node) -> str:
    """The kernel command line PXELINUX gives `node`: the APPEND words of the DEFAULT label of
    the node's pxelinux.cfg file as rendered in `tree` (render_all's output), which is its
    own HEXIP file when there is one, else `default` (the labels of pxelinux-common included),
    then BOOTIF=01-MAC (IPAPPEND 2).

    Raises:
        ClustcontrolError: the rendered files name no such label (a renderer's bug)."""
    view = ClusterView(inv)
    host = next(h for h in view.hosts if h.name == node.name)
    config_dir = pjoin(view.boot_root, "pxelinux.cfg")
    path = pjoin(config_dir, host.hex_ip)
    if path not in tree.outputs:
        path = pjoin(config_dir, "default")
    default, labels = _pxelinux(tree[path].data().decode())
    _, common = _pxelinux(tree[pjoin(view.boot_root, "pxelinux-common")].data().decode())
    append = labels.get(default or "") or common.get(default or "")
    if append is None:
        raise ClustcontrolError(f"{path}: no label {default!r} to boot node {node.name}")
    return f"{append} BOOTIF=01-{node.mac.replace(':', '-')}"


def set_switches(cmdline: str, values: Mapping[str, str]) -> str:
    """`cmdline` with each NAME=VALUE of `values` (switch name -> value) in place of the word
    NAME=... it has, or appended in the order given."""
    words = cmdline.split()
    for name, value in values.items():
        word = f"{name}={value}"
        found = [i for i, w in enumerate(words) if w.startswith(f"{name}=")]
        for i in found:
            words[i] = word
        if not found:
            words.append(word)
    return " ".join(words)


def standard_settings(tree: Path) -> tuple[dict[str, str], list[str]]:
    """The engine settings of the standard's conf.d files (CONFD_FILE, then CONFD_LOCAL, the
    later winning) in the generation tree `tree`, as the initramfs built from it would source
    them: CC_KEY=value lines of the conf.d settings, values literal ('...', "..." without $,
    backquote or backslash, or bare words). The settings the rehearsal sets itself are left out.

    Returns:
        ({CC_KEY: value}, notes): a note names each line of such a setting that is not taken.
    Raises:
        UnsafePathError: a conf.d file is a symbolic link or not a regular file."""
    wanted = {p.key for p in params("conf.d")} - _OWN_SETTINGS
    settings: dict[str, str] = {}
    notes: list[str] = []
    with RootDir(tree) as files:
        for rel in (CONFD_FILE, CONFD_LOCAL):
            data = files.read(f"/{rel}")
            for number, line in enumerate((data or b"").decode(errors="replace").splitlines(), 1):
                match = _ASSIGNMENT.fullmatch(line.strip())
                if match is None or match[1] not in wanted:
                    continue
                literal = _LITERAL.fullmatch(match[2].strip())
                if literal is None:
                    notes.append(f"/{rel}:{number}: {match[1]} is not a literal value: not used")
                    continue
                settings[match[1]] = next(g for g in literal.groups() if g is not None)
    return settings, notes


def _control_files(inv: Inventory, tree: RenderedTree) -> dict[str, bytes]:
    base = inv.cluster.control_dir
    return {o.path.removeprefix(base).lstrip("/"): o.data() for o in tree if o.service == "control"}


def _installed_control_differs(prefix: Path, control_dir: str, files: Mapping[str, bytes]) -> bool:
    with RootDir(prefix) as root:
        if root.read(pjoin(control_dir, "default")) is None:
            return False
        return any(root.read(pjoin(control_dir, rel)) != data for rel, data in files.items())


def _check_disk(disk: Path, size: int | None, problems: list[str]) -> bool:
    """Whether `disk` is to be created (it does not exist); problems appended."""
    try:
        st = disk.stat()
    except FileNotFoundError:
        if disk.is_symlink() or not disk.parent.is_dir():
            problems.append(f"--disk: '{disk}': no such directory or a dangling link")
        return True
    if not disk.is_file():
        problems.append(f"--disk: '{disk}' is not a regular file (a rehearsal writes to an image)")
    elif size is not None and st.st_size != size:
        problems.append(
            f"--size: {size} bytes, but '{disk}' exists with {st.st_size} bytes "
            "(remove it to rehearse on a new disk)"
        )
    return False


def plan_rehearsal(
    inv: Inventory,
    name: str,
    disk: Path,
    *,
    root_prefix: Path = Path("/"),
    size: str | None = None,
    transport: str | None = None,
) -> Plan:
    """Check a rehearsal of node `name` on the disk image file `disk` and gather what it needs;
    nothing is written.

    Args:
        inv: the inventory.
        name: a node of the inventory (not the update node, which does not sync).
        disk: the disk image file; a missing one is created by rehearse (its directory must
            exist), an existing one must be a regular file.
        root_prefix: where the generation store (cluster.state_dir) and the installed control
            directory are found.
        size: the new disk file's size (parse_size), default the smallest of 4, 8, 16 ...
            GiB the node's layout fits; for an existing file it must be the file's size.
        transport: nfs or rsync; None: the image's.
    Returns:
        the Plan.
    Raises:
        InvalidInputError: one line per problem (unknown node, the update node, a disk that is
            not a regular file, a bad size, an image without a committed generation).
        ClustcontrolError: the PXELINUX files cannot be rendered (pxelinux not installed).
        UnsafePathError: a conf.d file of the standard is a symbolic link."""
    problems: list[str] = []
    node = inv.node(name)
    if node is None:
        problems.append(f"nodes.{name}: no such node")
    elif inv.update_node_entry is node:
        node = None  # nothing more to check
        problems.append(
            f"nodes.{name}: the update node boots image {inv.update_image_name} read-write "
            "over NFS, without a sync: nothing to rehearse (clustcontrol update-node clear first)"
        )
    size_bytes = None
    if size is not None:
        try:
            size_bytes = parse_size(size)
        except ValueError as exc:
            problems.append(f"--size: {size!r} {exc}")
    disk = disk.absolute()
    root_prefix = root_prefix.absolute()
    create = _check_disk(disk, size_bytes, problems)
    store = generation = None
    if node is not None:
        image = inv.image_of(node)
        store = GenerationStore.for_image(root_prefix, image, inv.cluster.state_dir)
        generation = store.current()
        if generation is None or not store.tree(generation).is_dir():
            problems.append(
                f"images.{image}: no committed generation in {store.roots} "
                f"(clustcontrol image commit {image})"
            )
    if problems:
        raise InvalidInputError(problems)
    assert node is not None and store is not None and generation is not None
    image = inv.image_of(node)
    chosen = transport or inv.transport_of(image)
    tree = render_all(RenderContext(inventory=inv))
    cmdline = set_switches(kernel_cmdline(inv, tree, node), {switch("CC_ARG_TRANSPORT"): chosen})
    control = _control_files(inv, tree)
    settings, notes = standard_settings(store.tree(generation))
    if settings:
        shown = " ".join(f"{k}={v}" for k, v in sorted(settings.items()))
        notes.append(f"settings from the standard's conf.d: {shown}")
    if chosen != inv.transport_of(image):
        notes.append(f"transport {chosen}, not the image's {inv.transport_of(image)}")
    if _installed_control_differs(root_prefix, inv.cluster.control_dir, control):
        notes.append(
            f"the control directory installed in {root_prefix / inv.cluster.control_dir[1:]} "
            "differs from the inventory's, which the rehearsal used: run clustcontrol apply"
        )
    return Plan(
        node=node.name,
        image=image,
        transport=chosen,
        disk=disk,
        create=create,
        size=size_bytes,
        sfdisk=inv.disk_layouts[inv.layout_of(node)].sfdisk,
        cmdline=cmdline,
        roots=store.roots,
        generation=generation,
        control_dir=inv.cluster.control_dir,
        control=control,
        settings=settings,
        ip=str(node.ip),
        spec=f"{inv.cluster.master.ip}:{inv.generation_roots(image)}",
        secrets_path=inv.secrets_root(image),
        notes=tuple(notes),
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rsyncd_conf(module: str, path: Path) -> str:
    """One read-only module serving `path`, with the options of the master's rsyncd.conf."""
    return (
        "uid = root\ngid = root\nuse chroot = yes\nnumeric ids = yes\nreverse lookup = no\n"
        "refuse options = delete-excluded\n\n"
        f"[{module}]\n    path = {path}\n    read only = yes\n    list = yes\n"
        "    hosts allow = 127.0.0.1\n    hosts deny = *\n"
    )


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt meanwhile (as Ctrl-C does): the child is killed and
    every cleanup runs; the earlier handler comes back afterwards."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _backing_loops(disk: Path) -> list[str]:
    """The loop devices whose backing file is `disk`, whatever path names it (the same file by
    device and inode, from /sys/block and each loop's backing file)."""
    found = []
    try:
        want = disk.stat()
    except OSError:
        return []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        with suppress(OSError):
            st = Path(backing.read_text().strip()).stat()
            if (st.st_dev, st.st_ino) == (want.st_dev, want.st_ino):
                found.append(f"/dev/{backing.parent.parent.name}")
    return sorted(found)


def fitting_size(sfdisk: str, program: str, scratch: Path) -> int:
    """The first of DEFAULT_SIZES (bytes) on which the sfdisk script `sfdisk` makes its
    partition table, tried by `program` (sfdisk) on a sparse file in the directory `scratch`;
    the largest when none fits (the engine then says why)."""
    trial = scratch / "layout-trial.img"
    try:
        for size in DEFAULT_SIZES:
            with trial.open("wb") as f:
                f.truncate(size)
            argv: list[str | Path] = [program, "--no-reread", "--no-tell-kernel", "-q", trial]
            if run(argv, check=False, input=sfdisk.encode()).returncode == 0:
                return size
    finally:
        trial.unlink(missing_ok=True)
    return DEFAULT_SIZES[-1]


@contextmanager
def _locked_disk(disk: Path, size: int | None) -> Iterator[None]:
    """The disk file, created sparse when `size` is given, under an exclusive flock (another
    rehearsal of the same file fails at once) and attached to no loop device yet."""
    flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT | os.O_EXCL if size is not None else 0)
    fd = os.open(disk, flags, 0o644)
    try:
        if size is not None:
            os.ftruncate(fd, size)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(f"another rehearsal uses {disk}") from None
        loops = _backing_loops(disk)
        if loops:
            raise ClustcontrolError(
                f"{disk} is attached to {', '.join(loops)} already",
                hint=f"detach it first (losetup -d {loops[0]}) if nothing uses it",
            )
        yield
    finally:
        os.close(fd)


@contextmanager
def _loop_device(losetup: str, partx: str, disk: Path) -> Iterator[str]:
    """`disk` attached to a free loop device with partitions; detached (and gone) afterwards.
    partx adds the partitions the kernel did not scan (a kernel without that partition table
    type), as a node's kernel finds them at boot; a blank disk has none."""
    loop = run([losetup, "-f", "--show", "-P", disk]).stdout.decode().strip()
    try:
        run([partx, "-u", loop], check=False)
        yield loop
    finally:
        run([losetup, "-d", loop], check=False)
        deadline = time.monotonic() + 10
        while _backing_loops(disk) and time.monotonic() < deadline:
            time.sleep(0.05)  # a busy device detaches on its last close


def _scratch(plan: Plan, tmp: Path, busybox: str) -> Path:
    """The scratch tree node/rehearse.sh expects: busybox applets in bin/, the rendered control
    directory at its place in layer/ (returned), empty run/, roots/, served/ and out/."""
    applets_dir(tmp / "bin", busybox)
    control = tmp / "layer" / plan.control_dir.lstrip("/")
    for rel, data in plan.control.items():
        path = control / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for d in ("run", "roots", "served", "out"):
        (tmp / d).mkdir()
    return control


def _key_values(text: str) -> dict[str, str]:
    """KEY=value or KEY='value' lines (the facts, the sync record) as a dict."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip("'")
    return values


def _number(value: str | None) -> int:
    return int(value) if value and value.isdigit() else 0


def _boot_seconds(facts: Mapping[str, str], wall: float) -> float:
    """cc_run's duration from the facts' /proc/uptime readings, else `wall`."""
    try:
        return float(facts["uptime_end"]) - float(facts["uptime_start"])
    except (KeyError, ValueError):
        return wall


def _result(plan: Plan, cmdline: str, out: Path, console: list[str], seconds: float) -> Rehearsal:
    facts = _key_values((out / "facts").read_text())
    record_file = out / "last-sync"
    record = _key_values(record_file.read_text()) if record_file.is_file() else {}
    copied = facts.get("sync_method", "") != ""
    layouts = [m[1] for line in console if (m := _LAYOUT_LINE.fullmatch(line.strip()))]
    layout = {"different": "changed"}.get(layouts[-1], layouts[-1]) if layouts else ""
    action = facts.get("disk_action", "")
    if action == "kept" and facts.get("root_remade") == "yes":
        action = "reformatted"
    method = facts.get("sync_method") or facts.get("method", "")
    start, end = record.get("CC_SYNC_START"), record.get("CC_SYNC_END")
    files: int | None = _number(record.get("CC_SYNC_FILES")) if copied else 0
    file_bytes: int | None = _number(record.get("CC_SYNC_FILE_BYTES")) if copied else 0
    if method == "tar":  # one stream: the engine counts no files
        files = file_bytes = None
    notes = list(plan.notes)
    if any("does not apply to a disk of" in line for line in console):
        notes.append(f"the disk layout does not fit {plan.disk}: rehearse on a larger new disk")
    return Rehearsal(
        node=plan.node,
        image=plan.image,
        transport=plan.transport,
        disk=str(plan.disk),
        cmdline=cmdline,
        layout=layout,
        layout_action=action,
        method=method,
        mode=facts.get("mode", "") if method else "",
        bytes_moved=_number(record.get("CC_SYNC_BYTES")) if copied else 0,
        files=files,
        file_bytes=file_bytes,
        seconds=round(_boot_seconds(facts, seconds), 2),
        sync_seconds=_number(end) - _number(start) if copied and start and end else None,
        result=facts.get("result", "failed"),
        status=_number(facts.get("status")),
        current_generation=facts.get("offered") or plan.generation,
        generation=record.get("CC_SYNC_GENERATION") or None,
        notes=tuple(notes),
        console=tuple(console),
    )


def rehearse(plan: Plan) -> Rehearsal:
    """Run the plan: the node's boot sync against the disk file (created when plan.create is
    set), in a private mount and PID namespace. See the module docstring.

    Returns:
        the Rehearsal: what the node did, failed boots included.
    Raises:
        ClustcontrolError: not root, or the disk file is attached to a loop device already.
        CommandError: a required program is missing, losetup fails, or the stand-in for the
            master could not be set up (the engine did not run).
        LockedError: another rehearsal uses the disk file.
        OSError: the disk file or the scratch directory cannot be written."""
    if os.geteuid() != 0:
        raise ClustcontrolError(
            "node rehearse needs root (loop devices, mounts)", hint="run it as root"
        )
    tools = {program: require(program, package) for program, package in TOOLS}
    cmdline = plan.cmdline
    port = 0
    if plan.transport == "rsync":
        port = _free_port()
        cmdline = set_switches(
            cmdline, {switch("CC_ARG_SERVER"): "127.0.0.1", switch("CC_ARG_RSYNCPORT"): str(port)}
        )
    tmp = Path(tempfile.mkdtemp(prefix="clustcontrol-rehearse-"))
    try:
        control = _scratch(plan, tmp, tools["busybox"])
        size = None
        if plan.create:
            size = plan.size or fitting_size(plan.sfdisk, tools["sfdisk"], tmp)
        (tmp / "cmdline").write_text(f"{cmdline}\n")
        if port:
            (tmp / "rsyncd.conf").write_text(_rsyncd_conf(plan.image, tmp / "served"))
        with (
            _locked_disk(plan.disk, size),
            _loop_device(tools["losetup"], tools["partx"], plan.disk) as loop,
        ):
            env = engine_environment(
                tmp / "bin",
                tmp / "run",
                {
                    **plan.settings,
                    **REHEARSAL_SETTINGS,
                    "CC_CMDLINE_FILE": str(tmp / "cmdline"),
                    "CC_BAKED_CONTROL": str(control),
                    "CC_DISK_OVERRIDE": loop,
                    "CC_NFS_MOUNT": "cc_rehearse_nfs",
                    "CC_NODE_HOSTNAME": plan.node,
                    "CC_NODE_IP": plan.ip,
                    "CC_NET_CONF_DIR": str(tmp / "no-net-conf"),
                    "CC_REHEARSE_ROOTS": str(plan.roots),
                    "CC_REHEARSE_SCRATCH": str(tmp),
                    "CC_REHEARSE_SPEC": plan.spec,
                    "CC_REHEARSE_SECRETS": str(plan.roots.parent / "secrets"),
                    "CC_REHEARSE_SECRETS_PATH": plan.secrets_path,
                    "CC_REHEARSE_RSYNCD_CONF": str(tmp / "rsyncd.conf") if port else "",
                    "CC_REHEARSE_RSYNC_PORT": str(port),
                },
            )
            # slave: the host's unmounts reach the namespace (a private copy would pin every
            # host mount for the rehearsal's duration), its own mounts never leave it.
            namespace = [tools["unshare"], "--mount", "--propagation", "slave", "--pid"]
            namespace += ["--fork", "--kill-child", "--mount-proc"]
            start = time.monotonic()
            # Killed with this process (--kill-child takes the namespace along); SIGTERM is an
            # interruption: the rehearsal stops and everything is cleaned up.
            with _sigterm_interrupts():
                proc = run(
                    [*namespace, tools["busybox"], "sh", DRIVER],
                    check=False,
                    env=env,
                    die_with_parent=True,
                )
            seconds = time.monotonic() - start
        output = (proc.stdout + proc.stderr).decode(errors="replace").splitlines()
        if not (tmp / "out/facts").is_file():
            tail = " / ".join(output[-5:]) or f"exit status {proc.returncode}"
            raise CommandError(f"the rehearsal of node {plan.node} could not start: {tail}")
        result = _result(plan, cmdline, tmp / "out", output, seconds)
        if size is not None:
            shown = f"{size >> 30} GiB" if size % (1 << 30) == 0 else f"{size >> 20} MiB"
            note = f"new disk file {plan.disk}: {shown}, sparse"
            result = replace(result, notes=(note, *result.notes))
        return result
    finally:
        _remove_scratch(tmp)


def _remove_scratch(tmp: Path) -> None:
    """Remove the scratch directory, unless something is still mounted below it (never: the
    namespace took its mounts along; refusing is the safe side should that ever change)."""
    with Path("/proc/self/mounts").open() as mounts:
        if any(line.split()[1].startswith(f"{tmp}/") for line in mounts):
            raise CommandError(f"{tmp}: something is still mounted below it; left in place")
    shutil.rmtree(tmp, ignore_errors=True)
