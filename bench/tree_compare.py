"""Walking a tree and comparing a copy with its source: is the copy faithful?

Compared per path: type, mode, size, mtime (regular files), link count, symlink target, and
which paths share an inode (hard-link groups). Links are never followed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from clustcontrol.image.generation import xattr_digest, xattrs_of


def walk(root: Path, prefix: str = "") -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) of every entry below root, sorted by name, depth first, without
    following links. prefix: the relative path (ending in "/") of the directory to list, empty
    for root itself. Raises OSError if a directory cannot be read."""
    with os.scandir(root / prefix if prefix else root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        rel = f"{prefix}{e.name}"
        st = e.stat(follow_symlinks=False)
        yield rel, st
        if stat.S_ISDIR(st.st_mode):
            yield from walk(root, rel + "/")


def signature(
    root: Path, ignore: tuple[str, ...] = (), *, exact: bool = True
) -> dict[str, tuple[object, ...]]:
    """Per path: type, mode, owner, every extended attribute (capabilities and ACLs included),
    size in bytes and mtime in whole seconds (files), nlink, symlink target, the hard-link group
    (the first path of the inode), and whether a file is sparse (fewer blocks than its size
    needs), for comparing a copy with its source; without `exact`, the names, types, modes,
    sizes, times and links only (what a plain tar | tar keeps). Paths in ignore (relative, and
    everything below them) are left out."""
    sig: dict[str, tuple[object, ...]] = {}
    first_of_inode: dict[int, str] = {}
    for rel, st in walk(root):
        if any(rel == i or rel.startswith(i + "/") for i in ignore):
            continue
        owner = (st.st_uid, st.st_gid, xattr_digest(xattrs_of(str(root / rel)))) if exact else ()
        if stat.S_ISLNK(st.st_mode):
            sig[rel] = ("l", os.readlink(root / rel), *owner)
        elif stat.S_ISDIR(st.st_mode):
            sig[rel] = ("d", stat.S_IMODE(st.st_mode), *owner)
        elif stat.S_ISREG(st.st_mode):
            group = first_of_inode.setdefault(st.st_ino, rel)
            sig[rel] = (
                "f",
                stat.S_IMODE(st.st_mode),
                st.st_size,
                int(st.st_mtime),
                st.st_nlink,
                group,
                exact and st.st_blocks * 512 + 65536 < st.st_size,  # sparse
                *owner,
            )
        else:
            sig[rel] = ("?", st.st_mode, *owner)
    return sig


def compare_trees(
    source: Path, copy: Path, ignore: tuple[str, ...] = (), *, exact: bool = True
) -> list[str]:
    """Differences between source and copy (empty: a faithful copy; see signature for `exact`).
    `ignore` lists relative paths (and everything below them) compared on neither side, such as
    the engine's state on the copy or the master's deltas in the source."""
    a = signature(source, ignore, exact=exact)
    b = signature(copy, ignore, exact=exact)
    problems = [f"missing on the copy: {p}" for p in sorted(a.keys() - b.keys())]
    problems += [f"extra on the copy: {p}" for p in sorted(b.keys() - a.keys())]
    problems += [
        f"differs: {p}: {a[p]} != {b[p]}" for p in sorted(a.keys() & b.keys()) if a[p] != b[p]
    ]
    return problems
