"""The oracle's generator (test_oracle.py): random standard trees and random changes to them,
drawn with hypothesis from a small vocabulary so that changes collide with each other, with the
node's own paths and with the persistent paths.

Covered: regular files (empty, small, large-ish, sparse, dense with runs of zero bytes,
preallocated with fallocate), directories, hard links across
directories, relative, absolute and dangling symlinks, fifos, sockets, character and block
devices; setuid, setgid and sticky bits; numeric owners missing from passwd; xattrs in the user,
trusted and security namespaces, POSIX ACLs (setfacl, default ACLs too), file capabilities
(setcap); immutable and append-only flags (chattr, on the working tree); names with spaces, line
breaks, tabs, bytes that are not UTF-8, a leading '#', ';' or '-', backslashes and glob
characters. Changes: content (also the same size and mtime), metadata alone, type changes
between directory, file and symlink, renames, removals, and the removal or replacement of the
persistent paths' parents.

Absolute symlink targets stay in a namespace that does not exist on the machine running the
tests (ESCAPE_ROOTS): a node that follows one writes there, and the oracle sees it."""

from __future__ import annotations

import os
import random
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

from hypothesis import note
from hypothesis import strategies as st

# Top-level directories of the random part of the tree; absolute symlinks point into them or
# into ABSENT. None of them exists on the test machine (test_oracle checks that none appears).
TOPS = ("cc-o1", "cc o2", "-cc-o3")
ABSENT = "/cc-oracle-absent"
ESCAPE_ROOTS = (*(f"/{t}" for t in TOPS), ABSENT)

# Names a delta lists (rsync --files-from), and those it cannot: a generation holding one gets
# no delta (its nodes sync the whole tree), so they are drawn less often.
LISTABLE = (
    "a",
    "b",
    "sub",
    "with space",
    "trailing ",
    "-dash",
    "tab\tname",
    "back\\slash",
    "glob*?[x]",
    "caf\u00e9",
    ".hidden",
    "..dots",
    "quote'\"",
    "$(x)",
)
UNLISTABLE = ("#hash", ";semi", "new\nline", "\udcff\udcfebin")  # the bytes ff fe: not UTF-8
NAMES = LISTABLE * 4 + UNLISTABLE
OWNERS = ((0, 0), (1000, 1000), (4242, 4343), (65534, 65534), (3000000, 7))
FILE_MODES = (0o644, 0o600, 0o755, 0o4755, 0o2755, 0o6711, 0o1644, 0o444, 0o000)
DIR_MODES = (0o755, 0o700, 0o1777, 0o2775, 0o555)
MTIMES_NS = (
    1_000_000_000_000_000_000,
    1_600_000_000_123_456_789,
    1_600_000_000_987_654_321,  # the same second, other nanoseconds
    1_700_000_000_000_000_001,
    2_200_000_000_999_999_999,  # after 2038
    86_400_000_000_000,
    0,
)
CAPS = ("cap_net_raw+ep", "cap_net_bind_service,cap_sys_nice=eip", "cap_sys_admin+p")
ACLS = ("u:4242:rwx", "g:4343:r", "u:1000:r,g:65534:rw", "u:3000000:x")

# Paths whose type the generator never changes, and never removes or renames: the tree's
# skeleton and the files the node rewrites (nodefiles.sh).
SKELETON = frozenset(
    {
        "",
        "etc",
        "etc/network",
        "etc/ssh",
        "var",
        "var/log",
        "var/lib/dbus",
        "proc",
        "dev",
        "tmp",
        "run",
        "scratch",
        *TOPS,
    }
)
NODE_FILES = frozenset(
    {
        "etc/hostname",
        "etc/hosts",
        "etc/machine-id",
        "etc/fstab",
        "etc/network/interfaces",
        "etc/ssh/ssh_host_ed25519_key",
    }
)
FIXED = SKELETON | NODE_FILES


def _lchown(path: Path, owner: tuple[int, int]) -> None:
    os.chown(path, *owner, follow_symlinks=False)


def _mtime(path: Path, ns: int) -> None:
    os.utime(path, ns=(ns, ns), follow_symlinks=False)


class Standard:
    """The working tree of the standard and what the generator needs to know about it: the
    paths it froze with chattr (released around every change, the commit sees them)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.frozen: dict[str, str] = {}  # relative path -> chattr flags (+i, +a)

    # --- looking at the tree ----------------------------------------------------------------
    def paths(self) -> list[str]:
        """Every path of the tree (relative, sorted: draws replay)."""
        found = []
        for dirpath, dirs, files in os.walk(self.root):
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir
            for name in dirs + files:
                found.append(f"{rel_dir}/{name}" if rel_dir else name)
        return sorted(found)

    def kind(self, rel: str) -> str:
        mode = os.lstat(self.root / rel).st_mode
        if stat.S_ISDIR(mode):
            return "d"
        if stat.S_ISREG(mode):
            return "f"
        if stat.S_ISLNK(mode):
            return "l"
        return "x"

    def dirs(self) -> list[str]:
        """Directories to create things in (not the pseudo file systems' beyond one level)."""
        return [""] + [p for p in self.paths() if self.kind(p) == "d"]

    def of_kind(self, *kinds: str, changeable: bool = False) -> list[str]:
        return [
            p
            for p in self.paths()
            if self.kind(p) in kinds and not (changeable and (p in FIXED or p.startswith("proc/")))
        ]

    # --- freezing -----------------------------------------------------------------------
    def thaw(self) -> None:
        for rel in sorted(self.frozen, reverse=True):
            path = self.root / rel
            if path.exists() and not path.is_symlink():
                subprocess.run(["chattr", "-i", "-a", str(path)], check=False)

    def refreeze(self) -> None:
        for rel, flags in sorted(self.frozen.items()):
            path = self.root / rel
            if path.is_symlink() or not path.exists() or self.kind(rel) not in ("f", "d"):
                continue
            subprocess.run(["chattr", flags, str(path)], check=True)
        self.frozen = {r: f for r, f in self.frozen.items() if (self.root / r).exists()}


# --- creating -----------------------------------------------------------------------------
# Lengths of the zero runs of a dense file: around the block sizes a node's file system may
# have (image/dense.py), where rsync --sparse and tar --sparse start making holes.
ZERO_RUNS = (512, 1000, 1024, 2048, 3000, 4096, 5000, 8192, 65536)


def content(data: st.DataObject) -> tuple[bytes, list[tuple[int, bytes]], int, bool]:
    """(dense content, extents, size, preallocated): either plain bytes (some with runs of zero
    bytes: a swap file, a database), or a file of `size` bytes holding `extents` (offset,
    data): sparse (holes elsewhere), or preallocated (fallocate: unwritten extents elsewhere,
    fully allocated, as a swap file made with fallocate(1))."""
    how = data.draw(
        st.sampled_from(
            ["empty", "small", "medium", "large", "sparse", "zero blocks", "preallocated"]
        )
    )
    if how == "empty":
        return b"", [], 0, False
    if how == "small":
        return data.draw(st.binary(min_size=1, max_size=300)), [], 0, False
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    if how == "medium":
        return rng.randbytes(data.draw(st.integers(1000, 200_000))), [], 0, False
    if how == "large":
        return rng.randbytes(data.draw(st.integers(1_000_000, 3_000_000))), [], 0, False
    if how == "zero blocks":
        pieces = data.draw(st.lists(st.sampled_from(ZERO_RUNS), min_size=1, max_size=6))
        return (
            b"".join(bytes(n) if i % 2 == 0 else rng.randbytes(n) for i, n in enumerate(pieces)),
            [],
            0,
            False,
        )
    if how == "preallocated":
        size = data.draw(st.integers(4096, 1024 * 1024))
        return b"", [(0, rng.randbytes(rng.randrange(1, 4096)))], size, True
    size = data.draw(st.integers(64 * 1024, 12 * 1024 * 1024))
    extents = [
        (rng.randrange(0, size - 5000), rng.randbytes(rng.randrange(1, 5000)))
        for _ in range(data.draw(st.integers(0, 3)))
    ]
    return b"", extents, size, False


def write_content(path: Path, data: st.DataObject) -> str:
    dense, extents, size, preallocated = content(data)
    with open(path, "wb") as f:
        if preallocated:
            os.posix_fallocate(f.fileno(), 0, size)
        if extents or size:
            for offset, chunk in extents:
                f.seek(offset)
                f.write(chunk)
            f.truncate(size)
            what = "preallocated" if preallocated else "sparse"
            return f"{what} {size} bytes, {len(extents)} extent(s)"
        f.write(dense)
    zeros = " with zero runs" if dense and not all(dense) and len(dense) > 300 else ""
    return f"{len(dense)} bytes{zeros}"


def new_name(std: Standard, data: st.DataObject, parent: str) -> str:
    name = data.draw(st.sampled_from(NAMES))
    rel = f"{parent}/{name}" if parent else name
    base, n = rel, data.draw(st.integers(0, 99))
    while os.path.lexists(std.root / rel):
        rel = f"{base}.{n}"
        n += 1
    return rel


def place(std: Standard, data: st.DataObject) -> str:
    """A new path in a directory of the random part, of the persistent paths or of /etc."""
    homes = [
        d
        for d in std.dirs()
        if d.split("/")[0] in (*TOPS, "usr", "opt", "tmp", "dev")
        or d.startswith(("var/lib/keep", "etc"))
    ] or list(TOPS)
    parent = data.draw(st.sampled_from(homes))
    if not (std.root / parent).is_dir() or (std.root / parent).is_symlink():
        parent = TOPS[0]
    return new_name(std, data, parent)


def set_meta(std: Standard, rel: str, data: st.DataObject, *, directory: bool = False) -> None:
    path = std.root / rel
    _lchown(path, data.draw(st.sampled_from(OWNERS)))
    os.chmod(path, data.draw(st.sampled_from(DIR_MODES if directory else FILE_MODES)))
    if not directory:
        _mtime(path, data.draw(st.sampled_from(MTIMES_NS)))


def make_file(std: Standard, data: st.DataObject) -> str:
    rel = place(std, data)
    what = write_content(std.root / rel, data)
    set_meta(std, rel, data)
    return f"file {rel!r}: {what}"


def make_dir(std: Standard, data: st.DataObject) -> str:
    rel = place(std, data)
    (std.root / rel).mkdir()
    set_meta(std, rel, data, directory=True)
    return f"directory {rel!r}"


def make_hardlink(std: Standard, data: st.DataObject) -> str:
    files = std.of_kind("f", changeable=True)
    if not files:
        return make_file(std, data)
    source = data.draw(st.sampled_from(files))
    rel = place(std, data)
    os.link(std.root / source, std.root / rel)
    return f"hard link {rel!r} -> {source!r}"


def symlink_target(std: Standard, data: st.DataObject, rel: str) -> str:
    how = data.draw(st.sampled_from(["relative", "absolute", "dangling", "dangling-abs"]))
    existing = [p for p in std.paths() if p.split("/")[0] in TOPS]
    if how == "relative" and existing:
        to = data.draw(st.sampled_from(existing))
        return os.path.relpath(to, os.path.dirname(rel) or ".")
    if how == "absolute" and existing:
        return "/" + data.draw(st.sampled_from(existing))
    if how == "dangling-abs":
        return f"{ABSENT}/{data.draw(st.sampled_from(NAMES))}"
    name: str = data.draw(st.sampled_from(NAMES))
    return name + "-missing"


def make_symlink(std: Standard, data: st.DataObject) -> str:
    rel = place(std, data)
    target = symlink_target(std, data, rel)
    os.symlink(target, std.root / rel)
    _lchown(std.root / rel, data.draw(st.sampled_from(OWNERS)))
    _mtime(std.root / rel, data.draw(st.sampled_from(MTIMES_NS)))
    return f"symlink {rel!r} -> {target!r}"


def make_special(std: Standard, data: st.DataObject) -> str:
    rel = place(std, data)
    kind = data.draw(st.sampled_from(["fifo", "socket", "char", "block"]))
    mode = {"fifo": stat.S_IFIFO, "socket": stat.S_IFSOCK, "char": stat.S_IFCHR}.get(
        kind, stat.S_IFBLK
    )
    rdev = os.makedev(data.draw(st.integers(1, 300)), data.draw(st.integers(0, 300)))
    os.mknod(std.root / rel, mode | 0o640, rdev if kind in ("char", "block") else 0)
    _lchown(std.root / rel, data.draw(st.sampled_from(OWNERS)))
    _mtime(std.root / rel, data.draw(st.sampled_from(MTIMES_NS)))
    return f"{kind} {rel!r}"


def add_xattr(std: Standard, data: st.DataObject) -> str:
    """An xattr on anything but a socket (sockets are no part of a generation)."""
    paths = [
        p
        for p in std.of_kind("f", "d", "l", "x", changeable=True)
        if not stat.S_ISSOCK(os.lstat(std.root / p).st_mode)
    ]
    if not paths:
        return "no path for an xattr"
    rel = data.draw(st.sampled_from(paths))
    kind = std.kind(rel)
    spaces = ["trusted", "security"] + (["user"] if kind in ("f", "d") else [])
    name = f"{data.draw(st.sampled_from(spaces))}.cc{data.draw(st.integers(0, 3))}"
    value = data.draw(st.binary(min_size=0, max_size=48))
    os.setxattr(std.root / rel, name, value, follow_symlinks=False)
    return f"xattr {name}={value!r} on {rel!r}"


def remove_xattr(std: Standard, data: st.DataObject) -> str:
    having = [
        (p, n)
        for p in std.of_kind("f", "d", "l", "x", changeable=True)
        for n in os.listxattr(std.root / p, follow_symlinks=False)
    ]
    if not having:
        return add_xattr(std, data)
    rel, name = data.draw(st.sampled_from(having))
    os.removexattr(std.root / rel, name, follow_symlinks=False)
    return f"xattr {name} removed from {rel!r}"


def add_acl(std: Standard, data: st.DataObject) -> str:
    paths = std.of_kind("f", "d", changeable=True)
    if not paths:
        return "no path for an ACL"
    rel = data.draw(st.sampled_from(paths))
    spec = data.draw(st.sampled_from(ACLS))
    default = std.kind(rel) == "d" and data.draw(st.booleans())
    argv = ["setfacl", *(["-d"] if default else []), "-m", spec, str(std.root / rel)]
    subprocess.run(argv, check=True)
    return f"{'default ' if default else ''}ACL {spec} on {rel!r}"


def add_cap(std: Standard, data: st.DataObject) -> str:
    files = std.of_kind("f", changeable=True)
    if not files:
        return "no file for a capability"
    rel = data.draw(st.sampled_from(files))
    cap = data.draw(st.sampled_from([*CAPS, "-r"]))
    argv = (
        ["setcap", "-r", str(std.root / rel)]
        if cap == "-r"
        else ["setcap", cap, str(std.root / rel)]
    )
    subprocess.run(argv, check=False, capture_output=True)  # -r of a file without one fails
    return f"capability {cap} on {rel!r}"


def freeze(std: Standard, data: st.DataObject) -> str:
    paths = std.of_kind("f", "d", changeable=True)
    if not paths:
        return "nothing to freeze"
    rel = data.draw(st.sampled_from(paths))
    flags = data.draw(st.sampled_from(["+i", "+a"]))
    std.frozen[rel] = flags
    return f"chattr {flags} {rel!r} (working tree)"


def unfreeze(std: Standard, data: st.DataObject) -> str:
    if not std.frozen:
        return freeze(std, data)
    rel = data.draw(st.sampled_from(sorted(std.frozen)))
    del std.frozen[rel]
    return f"chattr -i -a {rel!r} (working tree)"


CREATE: tuple[tuple[int, Callable[[Standard, st.DataObject], str]], ...] = (
    (6, make_file),
    (3, make_dir),
    (2, make_hardlink),
    (2, make_symlink),
    (1, make_special),
    (2, add_xattr),
    (1, add_acl),
    (1, add_cap),
    (1, freeze),
)


# --- changing -----------------------------------------------------------------------------
def rewrite(std: Standard, data: st.DataObject) -> str:
    files = std.of_kind("f", changeable=True) + sorted(NODE_FILES)
    rel = data.draw(st.sampled_from(files))
    path = std.root / rel
    if not path.is_file() or path.is_symlink():
        return f"{rel!r} is no file"
    before = os.lstat(path)
    if data.draw(st.booleans()) and before.st_size:
        # Same size, same mtime: only the content (and the ctime) changes.
        with open(path, "r+b") as f:
            f.seek(data.draw(st.integers(0, before.st_size - 1)))
            f.write(data.draw(st.binary(min_size=1, max_size=1)))
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        return f"one byte of {rel!r} changed, size and mtime kept"
    what = write_content(path, data)
    if data.draw(st.booleans()):
        _mtime(path, data.draw(st.sampled_from(MTIMES_NS)))
    return f"{rel!r} rewritten: {what}"


def metadata(std: Standard, data: st.DataObject) -> str:
    paths = std.of_kind("f", "d", "l", "x", changeable=True)
    if not paths:
        return "nothing to change"
    rel = data.draw(st.sampled_from(paths))
    path = std.root / rel
    what = data.draw(st.sampled_from(["chmod", "chown", "touch"]))
    if what == "chmod" and not path.is_symlink():
        modes = DIR_MODES if std.kind(rel) == "d" else FILE_MODES
        mode = data.draw(st.sampled_from(modes))
        os.chmod(path, mode)
        return f"chmod {mode:o} {rel!r}"
    if what == "chown":
        owner = data.draw(st.sampled_from(OWNERS))
        _lchown(path, owner)
        return f"chown {owner} {rel!r}"
    ns = data.draw(st.sampled_from(MTIMES_NS))
    _mtime(path, ns)
    return f"mtime {ns} on {rel!r}"


def remove(std: Standard, data: st.DataObject) -> str:
    paths = std.of_kind("f", "d", "l", "x", changeable=True)
    if not paths:
        return "nothing to remove"
    rel = data.draw(st.sampled_from(paths))
    _remove(std.root / rel)
    return f"removed {rel!r}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def retype(std: Standard, data: st.DataObject) -> str:
    """A directory, file or symlink becomes one of the other two."""
    paths = std.of_kind("f", "d", "l", changeable=True)
    if not paths:
        return "nothing to retype"
    rel = data.draw(st.sampled_from(paths))
    path = std.root / rel
    was = std.kind(rel)
    to = data.draw(st.sampled_from([k for k in ("f", "d", "l") if k != was]))
    _remove(path)
    if to == "f":
        write_content(path, data)
        set_meta(std, rel, data)
    elif to == "d":
        path.mkdir()
        set_meta(std, rel, data, directory=True)
        if data.draw(st.booleans()):
            (path / data.draw(st.sampled_from(NAMES))).write_bytes(b"inside the new directory\n")
    else:
        os.symlink(symlink_target(std, data, rel), path)
    return f"{rel!r}: {was} -> {to}"


def rename(std: Standard, data: st.DataObject) -> str:
    paths = std.of_kind("f", "d", "l", "x", changeable=True)
    if not paths:
        return "nothing to rename"
    rel = data.draw(st.sampled_from(paths))
    to = place(std, data)
    if under(to, rel):
        return f"not renaming {rel!r} into itself"
    os.rename(std.root / rel, std.root / to)
    return f"renamed {rel!r} -> {to!r}"


def under(rel: str, top: str) -> bool:
    return rel == top or rel.startswith(top + "/")


def own_parent(std: Standard, data: st.DataObject) -> str:
    """The persistent paths (/var/lib/keep, /etc/local.conf), the directory above one and the
    node's state (/var/lib), or the directory of the node's SSH host keys (/etc/ssh) removed,
    made a file, a symlink (relative, absolute, dangling) or a directory again."""
    rel = data.draw(st.sampled_from(["var/lib", "var/lib/keep", "etc/local.conf", "etc/ssh"]))
    path = std.root / rel
    parent = path.parent
    if not parent.is_dir() or parent.is_symlink():  # var/lib is gone, a file or a symlink
        if os.path.lexists(parent):
            _remove(parent)
        parent.mkdir()
    if os.path.lexists(path):
        _remove(path)
    to = data.draw(st.sampled_from(["gone", "file", "symlink", "directory"]))
    if to == "file":
        path.write_bytes(b"a file where the node keeps a directory\n")
    elif to == "symlink":
        target = data.draw(st.sampled_from(["../cc-o1", f"{ABSENT}/lib", "missing"]))
        os.symlink(target, path)
        to = f"symlink -> {target}"
    elif to == "directory":
        path.mkdir(parents=True, exist_ok=True)
        (path / "from-the-standard").write_bytes(b"seed\n")
    return f"{rel!r} in the standard: {to}"


CHANGE: tuple[tuple[int, Callable[[Standard, st.DataObject], str]], ...] = (
    *CREATE,
    (5, rewrite),
    (3, metadata),
    (2, remove_xattr),
    (3, remove),
    (3, retype),
    (3, rename),
    (2, own_parent),
    (1, unfreeze),
)


def weighted(
    ops: tuple[tuple[int, Callable[[Standard, st.DataObject], str]], ...],
) -> list[Callable[[Standard, st.DataObject], str]]:
    return [op for weight, op in ops for _ in range(weight)]


def apply(
    std: Standard,
    data: st.DataObject,
    ops: tuple[tuple[int, Callable[[Standard, st.DataObject], str]], ...],
) -> str:
    """One operation drawn from ops, applied with the tree thawed; noted for the report."""
    op = data.draw(st.sampled_from(weighted(ops)))
    std.thaw()
    try:
        what = op(std, data)
    finally:
        std.refreeze()
    note(what)
    return what


def skeleton(root: Path) -> None:
    """The fixed part of every standard: what a Debian root has where the engine writes (node
    files, its state and logs), the persistent paths, and the random part's top directories."""
    for d in (*SKELETON, "var/lib/keep", "usr", "opt", "bin"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "etc/hostname").write_text("updatenode\n")
    (root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\tupdatenode\n")
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (root / "etc/fstab").write_text("master:/home /home nfs defaults 0 0\n")
    (root / "etc/ssh/ssh_host_ed25519_key").write_text("SECRET OF THE UPDATE NODE\n")
    (root / "etc/network/interfaces").write_text("auto eth0\niface eth0 inet dhcp\n")
    (root / "etc/local.conf").write_text("standard version\n")
    (root / "var/lib/keep/state").write_text("standard seed\n")
    (root / "proc/not-copied").write_text("x\n")
    (root / "bin/tool").write_text("#!/bin/sh\necho tool\n")
