"""What the oracle (test_oracle.py) compares: a file tree described on every property a node
must reproduce, and the rules that say where a node may legitimately differ from the generation
it recorded.

A tree is described by `describe` (symlinks never followed, nothing outside the tree read):
for every path its type, mode, owner, size (regular files), mtime (every type), content hash
(regular files) or target (symlinks), every extended attribute (user.*, trusted.*, security.*
with file capabilities, system.posix_acl_* for POSIX ACLs), device number, and, outside the
comparison, its inode (hard-link groups), allocated blocks and holes (sparseness: a sparse
file stays sparse, a fully allocated one stays fully allocated, image/dense.py) and inode flags
(immutable, append-only).

The exceptions (`NodeRules`), and nothing else:
  - the contract's sync exclusions (contract.exclusions(sync=True): pseudo file systems'
    contents, the node's identity, state and logs, the control directory, the deltas and the
    attribute archive) and the data partitions' mount points' contents;
  - the node files the engine rewrites at every boot that are not exclusions (etc/hosts,
    etc/network/interfaces: nodefiles.sh);
  - persistent paths the node owns: compared with the node's own copy instead (byte-identical,
    every property above); the persistent paths share no inode with a file outside them (a
    hard-link group of the standard across their boundary is split on the node);
  - directories that hold any of those (their direct parents): their mtime moves when the node
    writes its files; and directories the node needs for them where the generation has none,
    or has something else (the standard removed /var/lib or made it a symlink while the node
    keeps /var/lib/keep and its state in /var/lib): they are the node's, compared on nothing
    but being directories;
  - a fully allocated file whose name the list of dense files cannot hold (deltas.unlistable)
    may have holes on the node: the copy makes them (image/dense.py)."""

from __future__ import annotations

import array
import errno
import fcntl
import hashlib
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from clustcontrol.contract import CONTROL_DIR, SECRET_PATTERNS, exclusions
from clustcontrol.image import secrets
from clustcontrol.image.deltas import unlistable
from clustcontrol.image.dense import fully_allocated

FS_IOC_GETFLAGS = 0x80086601
FLAG_IMMUTABLE = 0x10
FLAG_APPEND = 0x20


@dataclass(frozen=True)
class Item:
    """One path of a described tree. Equal items are equal on everything a node must
    reproduce; `ino`, `nlink`, `blocks`, `holes` and `flags` are not part of the equality.
    `holes`: a regular file has a range no extent covers (dense.fully_allocated: FIEMAP)."""

    kind: str  # f d l c b p s
    mode: int
    uid: int
    gid: int
    size: int  # regular files only, else 0
    mtime_ns: int
    digest: str  # sha256 of a regular file's content, a symlink's target
    xattrs: tuple[tuple[str, bytes], ...]
    rdev: int
    ino: int = field(compare=False, default=0)
    nlink: int = field(compare=False, default=1)
    blocks: int = field(compare=False, default=0)
    holes: bool = field(compare=False, default=False)
    flags: int = field(compare=False, default=0)


Tree = dict[str, Item]


def _kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISREG, "f"),
        (stat.S_ISDIR, "d"),
        (stat.S_ISLNK, "l"),
        (stat.S_ISCHR, "c"),
        (stat.S_ISBLK, "b"),
        (stat.S_ISFIFO, "p"),
    ):
        if test(mode):
            return kind
    return "s"


def _xattrs(path: str) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return ()
        raise
    return tuple(sorted((n, os.getxattr(path, n, follow_symlinks=False)) for n in names))


def _content(path: str) -> tuple[str, bool]:
    """The sha256 of a regular file's content and whether it has holes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        holes = not fully_allocated(f.fileno(), os.fstat(f.fileno()).st_size)
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest(), holes


def inode_flags(path: str, kind: str) -> int:
    """The inode flags (chattr) of a regular file or directory; 0 for other types (opening a
    device node or a fifo to ask could have effects)."""
    if kind not in ("f", "d"):
        return 0
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        buf = array.array("l", [0])
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf, True)
        return int(buf[0])
    except OSError:
        return 0
    finally:
        os.close(fd)


def describe_path(path: str) -> Item:
    st = os.lstat(path)
    kind = _kind(st.st_mode)
    digest, holes = "", False
    if kind == "f":
        digest, holes = _content(path)
    elif kind == "l":
        digest = os.fsdecode(os.readlink(path))
    return Item(
        kind,
        stat.S_IMODE(st.st_mode),
        st.st_uid,
        st.st_gid,
        st.st_size if kind == "f" else 0,
        st.st_mtime_ns,
        digest,
        _xattrs(path),
        st.st_rdev if kind in ("c", "b") else 0,
        st.st_ino,
        st.st_nlink,
        st.st_blocks,
        holes,
        inode_flags(path, kind),
    )


def describe(root: Path) -> Tree:
    """Every path under root ("" is root itself), relative, symlinks not followed; directories
    on other file systems are described, not entered."""
    tree: Tree = {"": describe_path(str(root))}
    device = os.lstat(root).st_dev
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        with os.scandir(os.path.join(root, rel_dir) if rel_dir else root) as entries:
            for entry in entries:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                item = describe_path(entry.path)
                tree[rel] = item
                if item.kind == "d" and os.lstat(entry.path).st_dev == device:
                    stack.append(rel)
    return tree


def under(rel: str, top: str) -> bool:
    """Whether rel is top or inside it."""
    return rel == top or rel.startswith(top + "/")


def subtree(tree: Tree, top: str) -> Tree:
    """The entries of tree at and under top, keys relative to tree's root."""
    return {rel: item for rel, item in tree.items() if under(rel, top)}


def parents(rel: str) -> list[str]:
    """The directories above rel, nearest first, ending with the root ("")."""
    out = []
    while rel:
        rel = rel.rpartition("/")[0]
        out.append(rel)
    return out


def link_groups(
    tree: Tree, paths: Iterable[str], boundaries: tuple[str, ...] = ()
) -> set[frozenset[str]]:
    """The hard-link groups (two or more names of one regular file) among paths; with
    boundaries, a group is split into its names inside the boundaries and those outside."""
    by_inode: dict[tuple[int, bool], set[str]] = {}
    for rel in paths:
        item = tree[rel]
        if item.kind == "f" and item.nlink > 1:
            inside = any(under(rel, b) for b in boundaries)
            by_inode.setdefault((item.ino, inside), set()).add(rel)
    return {frozenset(g) for g in by_inode.values() if len(g) > 1}


def _fmt(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def differences(
    want: Tree,
    have: Tree,
    *,
    skip_mtime: frozenset[str] = frozenset(),
    content_only: frozenset[str] = frozenset(),
    link_boundaries: tuple[str, ...] = (),
    what: tuple[str, str] = ("generation", "node"),
    holes_allowed: Callable[[str], bool] = lambda rel: False,
) -> list[str]:
    """What differs between two described trees (each restricted to the paths compared), as
    lines for a failure message; hard-link groups (want's split at link_boundaries) and
    sparseness included. Paths in content_only compare on type, size and content alone; a path
    for which holes_allowed is true may have holes in `have` where `want` has none."""
    problems = []
    for rel in sorted(want.keys() | have.keys()):
        w, h = want.get(rel), have.get(rel)
        if w is None:
            assert h is not None
            problems.append(f"{rel!r}: only on the {what[1]} ({h.kind})")
            continue
        if h is None:
            problems.append(f"{rel!r}: missing on the {what[1]} ({w.kind})")
            continue
        fields = ["kind", "mode", "uid", "gid", "size", "mtime_ns", "digest", "xattrs", "rdev"]
        if rel in skip_mtime:
            fields.remove("mtime_ns")
        if rel in content_only:
            fields = ["kind", "size", "digest"]
        for name in fields:
            a, b = getattr(w, name), getattr(h, name)
            if a != b:
                problems.append(
                    f"{rel!r}: {name} {_fmt(a)} on the {what[0]}, {_fmt(b)} on the {what[1]}"
                )
        # Holes stay holes: never more than the source allocates (plus a little for the
        # different block sizes of the two file systems); and a file without holes gets none.
        if w.kind == h.kind == "f" and h.blocks * 512 > w.blocks * 512 + 64 * 1024:
            problems.append(
                f"{rel!r}: {h.blocks * 512} bytes allocated on the {what[1]}, "
                f"{w.blocks * 512} on the {what[0]} (holes filled)"
            )
        if w.kind == h.kind == "f" and not w.holes and h.holes and not holes_allowed(rel):
            problems.append(
                f"{rel!r}: fully allocated on the {what[0]}, holes on the {what[1]} "
                f"({h.blocks * 512} bytes allocated of {h.size})"
            )
    common = want.keys() & have.keys()
    a, b = link_groups(want, common, link_boundaries), link_groups(have, common)
    for group in sorted(a - b, key=sorted):
        problems.append(f"hard-link group {sorted(group)!r} of the {what[0]} not on the {what[1]}")
    for group in sorted(b - a, key=sorted):
        problems.append(f"hard-link group {sorted(group)!r} on the {what[1]} only")
    return problems


@dataclass(frozen=True)
class Exclusions:
    """A list of (path pattern, contents only) as contract.exclusions yields them: `*` matches
    within one name."""

    rows: tuple[tuple[str, bool], ...]

    def excluded(self, rel: str) -> bool:
        parts = rel.split("/") if rel else []
        for pattern, contents in self.rows:
            pat = pattern.split("/")
            if len(parts) < len(pat) + (1 if contents else 0):
                continue
            if all(fnmatchcase(p, q) for p, q in zip(parts, pat, strict=False)):
                return True
        return False

    def anchors(self, tree: Tree) -> list[str]:
        """The paths of tree that an exclusion names itself (not the contents of a kept
        directory): what the node keeps of its own."""
        found = []
        for rel in tree:
            parts = rel.split("/") if rel else []
            for pattern, contents in self.rows:
                pat = pattern.split("/")
                if contents or len(parts) != len(pat):
                    continue
                if all(fnmatchcase(p, q) for p, q in zip(parts, pat, strict=True)):
                    found.append(rel)
        return found


def manifest_exclusions(control_dir: str = CONTROL_DIR) -> Exclusions:
    """What a generation leaves out of the working tree."""
    return Exclusions(tuple(exclusions({"CC_CONTROL_DIR": control_dir}, manifest=True)))


@dataclass(frozen=True)
class NodeRules:
    """Where a node may differ from its generation (see the module docstring)."""

    exclusions: Exclusions
    node_written: tuple[str, ...]  # rewritten at every boot, not exclusions
    persistent: tuple[str, ...]  # relative paths

    @classmethod
    def of(
        cls,
        persistent: Iterable[str],
        mounts: Iterable[str],
        *,
        control_dir: str = CONTROL_DIR,
        state_dir: str = "/var/lib/clustcontrol-node",
        log_dir: str = "/var/log/clustcontrol",
    ) -> NodeRules:
        values = {"CC_CONTROL_DIR": control_dir, "CC_STATE_DIR": state_dir, "CC_LOG_DIR": log_dir}
        rows = [*exclusions(values, sync=True)]
        rows += [(m.strip("/"), True) for m in mounts]
        return cls(
            Exclusions(tuple(rows)),
            ("etc/hosts", "etc/network/interfaces"),
            tuple(p.strip("/") for p in persistent),
        )

    def check(self, generation: Tree, node: Tree, kept: dict[str, Tree]) -> list[str]:
        """Compare a node's root with the generation it recorded. `kept` holds, for each
        persistent path the node owns, the node's own copy (paths relative to the root)."""
        owned = tuple(kept)

        def ignored(rel: str) -> bool:
            return (
                self.exclusions.excluded(rel)
                or rel in self.node_written
                or any(under(rel, p) for p in owned)
            )

        want = {r: i for r, i in generation.items() if not ignored(r)}
        have = {r: i for r, i in node.items() if not ignored(r)}
        # What the node keeps of its own, and the directories holding it.
        anchors = [a for a in self.exclusions.anchors(node) if a]
        anchors += [w for w in self.node_written if w in node]
        anchors += [p for p in owned if p in node]
        skip_mtime: set[str] = set()
        loose: set[str] = set()
        for anchor in anchors:
            created = False
            for n, d in enumerate(parents(anchor)):
                if n == 0 or created:
                    skip_mtime.add(d)
                g = generation.get(d)
                created = g is None or g.kind != "d"
                if created and d:
                    loose.add(d)
        problems = []
        for d in sorted(loose):
            if node.get(d) is None or node[d].kind != "d":
                problems.append(f"{d!r}: holds the node's own files but is not a directory")
            want.pop(d, None)
            have.pop(d, None)
        # A persistent path shares no inode with anything outside it (the seed separates them).
        # A fully allocated file whose name the list of dense files cannot hold (a line break,
        # a leading # or ;, not UTF-8: image/dense.py) keeps the holes the copy makes.
        problems += differences(
            want,
            have,
            skip_mtime=frozenset(skip_mtime),
            link_boundaries=self.persistent,
            holes_allowed=lambda rel: unlistable(rel) is not None,
        )
        for p, mine in kept.items():
            problems += [
                f"persistent {p!r}: {line}"
                for line in differences(
                    mine,
                    subtree(node, p),
                    what=("node before the boot", "node after it"),
                )
            ]
        for rel, item in node.items():
            if item.flags & (FLAG_IMMUTABLE | FLAG_APPEND) and not self.exclusions.excluded(rel):
                problems.append(f"{rel!r}: immutable or append-only on the node")
        return problems


def check_generation(working: Tree, generation: Tree, control_dir: str = CONTROL_DIR) -> list[str]:
    """Compare a generation's tree with the working tree it was committed from: equal but for
    the manifest's exclusions, sockets (made by the process that listens: no part of a
    generation), the secrets (served apart: image/secrets.py) and what the commit adds
    (generation file, deltas, attribute archive, batches); no inode flags in the generation."""
    excl = manifest_exclusions(control_dir)
    groups: dict[int, list[str]] = {}
    for r, i in working.items():
        if i.kind == "f" and i.nlink > 1:
            groups.setdefault(i.ino, []).append(r)
    hidden = secrets.select(
        ((r, i.kind == "d") for r, i in working.items()), groups.values(), SECRET_PATTERNS
    )
    want = {
        r: i
        for r, i in working.items()
        if not excl.excluded(r) and i.kind != "s" and r not in hidden
    }
    have = {r: i for r, i in generation.items() if not excl.excluded(r)}
    problems = differences(want, have, what=("working tree", "generation"))
    problems += [
        f"{r!r}: inode flags {i.flags:#x} in the generation"
        for r, i in have.items()
        if i.flags & (FLAG_IMMUTABLE | FLAG_APPEND)
    ]
    return problems
