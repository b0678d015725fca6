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
The scratch directory (TMPDIR/clustcontrol-rehearse-*) is locked while the rehearsal runs and
removed afterwards; one left by a rehearsal that was killed is removed by the next
(clustcontrol.scratchdir).
The engine runs in a private mount and PID namespace whose first process is node/rehearse.sh:
its mounts and the rsync daemon end with it, whatever happens, and never appear on the host.
What the node did comes from the engine's sync record on the disk, its variables and its log.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
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
from clustcontrol.scratchdir import scratch_dir

NODE_DIR = Path(__file__).resolve().parent / "node"
ENGINE_DIR = NODE_DIR / "engine"
DRIVER = NODE_DIR / "rehearse.sh"
# Each rehearsal's scratch directory in the temp directory (scratchdir.py: one that a killed
# rehearsal left is removed by the next).
SCRATCH_PREFIX = "clustcontrol-rehearse-"
# A new disk file without --size: the smallest of 4, 8, 16 ... 1024 GiB that the node's layout
# fits (sparse: its size costs nothing until written).
DEFAULT_SIZES = tuple((4 << 30) << n for n in range(9))
# --size: from 1 MiB to 1024 TiB (and no more than the file system of the disk file allows).
MIN_SIZE = 1 << 20
MAX_SIZE = 1 << 50
SIZE_SYNTAX = "digits (bytes), optionally with K, M, G or T (binary) and iB after them"
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
# --size: digits ([0-9], not \d: that takes other scripts' digits too), then K, M, G or T with an
# optional iB (4G, 4GiB); fullmatch, so no blank or line break around it.
_SIZE = re.compile(r"([0-9]+)(?:([KMGT])(?:iB)?)?")
_ASSIGNMENT = re.compile(r"(?:export\s+)?(CC_[A-Z0-9_]+)=(.*)")
_LITERAL = re.compile(r"'([^']*)'|\"([^\"$`\\]*)\"|([A-Za-z0-9._,:/=+@-]*)")


@dataclass(frozen=True)
class Plan:
    """A checked rehearsal (plan_rehearsal), ready for rehearse.

    `disk` is the disk image file (absolute), `create` whether it does not exist yet, `size`
    the bytes to create it with (None when it exists), `sfdisk`
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
    """A disk size as `--size` takes it: a whole number of bytes, or of K, M, G or T (binary
    units: 4G = 4 GiB) optionally followed by iB ("1048576", "512M", "4GiB"); nothing else, no
    blank or line break around it. Returns bytes.

    Raises:
        ValueError: not such a size, less than MIN_SIZE (1 MiB) or more than MAX_SIZE
            (1024 TiB); the message says which (the value is for the caller to name)."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"is not a size: {SIZE_SYNTAX}, e.g. 512M, 4GiB")
    digits = match[1].lstrip("0") or "0"
    shift = 10 * " KMGT".index(match[2] or " ")
    # int() of thousands of digits is refused (and slow): anything that long is too large.
    size = int(digits) << shift if len(digits) <= 20 else MAX_SIZE + 1
    if size < MIN_SIZE:
        raise ValueError("is less than 1 MiB")
    if size > MAX_SIZE:
        raise ValueError(f"is more than {MAX_SIZE >> 40} TiB")
    return size


def show_size(size: int) -> str:
    """A size in bytes for messages: whole GiB or MiB when it is one ("32 GiB", "46 MiB"),
    else bytes."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20)):
        if size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return f"{size} bytes"


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
    return f"{append} BOOTIF=01-{node.mac[0].replace(':', '-')}"


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


def _disk_path(given: str, problems: list[str]) -> Path | None:
    """The absolute path of --disk `given` (the value as typed); None, with a problem naming it,
    when it names no file ("", a trailing "/", "." or "..")."""
    if given.rpartition("/")[2] in ("", ".", "..") or "\0" in given:
        problems.append(f"--disk: {given!r} does not name a file")
        return None
    return Path(given).absolute()


def _check_disk(given: str, disk: Path, size: int | None, problems: list[str]) -> bool:
    """Whether `disk` (the absolute path of --disk `given`) is to be created (it does not
    exist); problems appended, naming the value as given."""
    try:
        st = disk.stat()
    except FileNotFoundError:
        if disk.is_symlink() or not disk.parent.is_dir():
            problems.append(f"--disk: {given!r}: no such directory or a dangling link")
        return True
    if not disk.is_file():
        problems.append(f"--disk: {given!r} is not a regular file (a rehearsal writes to an image)")
    elif size is not None and st.st_size != size:
        problems.append(
            f"--size: {size} bytes, but {given!r} exists with {st.st_size} bytes "
            "(remove it to rehearse on a new disk)"
        )
    return False


@contextmanager
def _trial_disk(directory: Path) -> Iterator[tuple[int, Path]]:
    """An unnamed file in `directory` (tempfile.TemporaryFile: O_TMPFILE where the file system
    has it) to try sizes on a file system's own limits: its descriptor and a path that opens it
    for another program (/proc/PID/fd/N). Nothing stays behind. Raises OSError."""
    with tempfile.TemporaryFile(dir=directory) as trial:
        yield trial.fileno(), Path(f"/proc/{os.getpid()}/fd/{trial.fileno()}")


def _layout_fits(sfdisk: str, program: str, trial: tuple[int, Path], size: int) -> bool:
    """Whether `program` (sfdisk) makes the partition table of the sfdisk script `sfdisk` on a
    disk of `size` bytes: the trial file (_trial_disk) emptied and made that size, sparse.
    Raises OSError when the file cannot be that large (EFBIG)."""
    fd, path = trial
    os.ftruncate(fd, 0)
    os.ftruncate(fd, size)
    argv: list[str | Path] = [program, "--no-reread", "--no-tell-kernel", "-q", path]
    return run(argv, check=False, input=sfdisk.encode()).returncode == 0


def fitting_size(sfdisk: str, program: str, scratch: Path) -> int | None:
    """The first of DEFAULT_SIZES (bytes) on which the sfdisk script `sfdisk` makes its
    partition table, tried by `program` (sfdisk) on an unnamed sparse file in the directory
    `scratch`; None when none fits. Raises OSError when no such file can be made there."""
    with _trial_disk(scratch) as trial:
        return next((n for n in DEFAULT_SIZES if _layout_fits(sfdisk, program, trial, n)), None)


def _minimum_size(sfdisk: str, program: str, trial: tuple[int, Path], fits: int) -> int:
    """The smallest whole number of MiB (in bytes) the layout `sfdisk` fits, by bisection below
    `fits` (bytes, a size it fits); a layout that fits a disk fits every larger one."""
    low, high = 0, fits >> 20  # in MiB: low does not fit, high does
    while high - low > 1:
        middle = (low + high) // 2
        if _layout_fits(sfdisk, program, trial, middle << 20):
            high = middle
        else:
            low = middle
    return high << 20


def _new_disk_size(
    sfdisk: str, where: str, disk: Path, given: str | None, size: int | None, problems: list[str]
) -> int | None:
    """The size (bytes) of the new disk file `disk`: `size` (of --size `given`) or, without it,
    the first of DEFAULT_SIZES the node's layout (`sfdisk`, named `where` in messages) fits.
    Tried on an unnamed file beside `disk` (nothing stays): None, with one problem appended,
    when the layout does not fit that size (the minimum it needs named), when no file that
    large fits the directory's file system (or the process's file size limit), or when no
    file can be made there. Raises CommandError when sfdisk is not installed."""
    program = require("sfdisk", "fdisk")
    shown = repr(given) if given is not None else show_size(DEFAULT_SIZES[-1])
    try:
        with _trial_disk(disk.parent) as trial:
            if size is not None and _layout_fits(sfdisk, program, trial, size):
                return size
            fits = next((n for n in DEFAULT_SIZES if _layout_fits(sfdisk, program, trial, n)), None)
            if size is None and fits is None:
                problems.append(
                    f"{where}: the layout fits no disk of up to {show_size(DEFAULT_SIZES[-1])} "
                    "(sfdisk): give a larger --size"
                )
            elif size is None:
                return fits
            else:
                need = "more than " + show_size(max(size, DEFAULT_SIZES[-1]))
                if fits is not None:
                    need = "at least " + show_size(_minimum_size(sfdisk, program, trial, fits))
                problems.append(
                    f"--size: {given!r} ({show_size(size)}) is too small for {where}: it needs "
                    f"{need}"
                )
            return None
    except OSError as exc:
        if exc.errno == errno.EFBIG:
            problems.append(
                f"--size: {shown} is more than a file in '{disk.parent}' can hold here "
                f"({exc.strerror})"
            )
        else:
            problems.append(f"--disk: cannot make a file in '{disk.parent}': {exc.strerror}")
        return None


def plan_rehearsal(
    inv: Inventory,
    name: str,
    disk: str | os.PathLike[str],
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
        disk: the disk image file, as given (messages name it so); a missing one is created
            by rehearse (its directory must exist), an existing one must be a regular file.
        root_prefix: where the generation store (cluster.state_dir) and the installed control
            directory are found.
        size: the new disk file's size (parse_size), default the smallest of 4, 8, 16 ...
            GiB the node's layout fits; for an existing file it must be the file's size. A
            new file's size is tried beside it (an unnamed sparse file): the layout must fit
            it and the file system take it.
        transport: nfs or rsync; None: the image's.
    Returns:
        the Plan.
    Raises:
        InvalidInputError: one line per problem (unknown node, the update node, a disk that is
            not a regular file, a bad size or one the node's layout or the file system does
            not fit, an image without a committed generation).
        ClustcontrolError: the PXELINUX files cannot be rendered (pxelinux not installed).
        CommandError: sfdisk is not installed (a new disk file's size is tried with it).
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
    given = os.fspath(disk)
    path = _disk_path(given, problems)
    root_prefix = root_prefix.absolute()
    found = len(problems)
    create = path is not None and _check_disk(given, path, size_bytes, problems)
    store = generation = None
    disk_ok = len(problems) == found and (size is None or size_bytes is not None)
    if node is not None and path is not None and create and disk_ok:
        layout = inv.layout_of(node)
        where = f"disk_layouts.{layout} (node {node.name})"
        sfdisk = inv.disk_layouts[layout].sfdisk
        size_bytes = _new_disk_size(sfdisk, where, path, size, size_bytes, problems)
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
    assert path is not None and (size_bytes is not None or not create)
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
        disk=path,
        create=create,
        size=size_bytes if create else None,
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


@contextmanager
def _locked_disk(disk: Path, size: int | None) -> Iterator[None]:
    """The disk file, created sparse when `size` is given, under an exclusive flock (another
    rehearsal of the same file fails at once) and attached to no loop device yet. A file it
    created is removed again when it cannot be made that size (OSError raised)."""
    flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT | os.O_EXCL if size is not None else 0)
    fd = os.open(disk, flags, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(f"another rehearsal uses {disk}") from None
        if size is not None:
            try:
                os.ftruncate(fd, size)
            except BaseException:  # EFBIG, a full disk, an interruption: no empty file stays
                disk.unlink(missing_ok=True)
                raise
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
    with scratch_dir(SCRATCH_PREFIX) as (tmp, stale):
        control = _scratch(plan, tmp, tools["busybox"])
        size = plan.size if plan.create else None
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
        notes = [f"removed {p}, left by a rehearsal that was killed" for p in stale]
        if size is not None:
            notes.insert(0, f"new disk file {plan.disk}: {show_size(size)}, sparse")
        return replace(result, notes=(*notes, *result.notes))
