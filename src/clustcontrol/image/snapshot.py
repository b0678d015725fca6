"""Generation trees: the immutable copy of the standard that each generation is.

`image commit` copies the working tree (the standard the administrator and the update node edit)
into STATE_DIR/images/NAME/roots/SEQ-HASH, as rsnapshot does: a regular file whose manifest
entry is unchanged since the previous generation (same size, mtime, ctime, owner, mode, extended
attributes and hard-link group) becomes a hard link to the previous tree's file; everything else
is copied, holes kept (SEEK_DATA/SEEK_HOLE, lseek(2)), and hashed while it is copied. A file
fully allocated in the working tree (no hole: dense.fully_allocated) is written in full, zero
bytes included: the generation keeps the working tree's allocation, and the commit lists those
with zero blocks for the nodes (dense.py). Owner, mode, extended attributes (file capabilities
and POSIX ACLs included) and times are set explicitly, in that order: chown(2) clears set-id
bits and capabilities. Directory times are set last, deepest first. The manifest returned
describes the tree as written, so the generation is what its manifest says even when the working
tree changed during the copy.

The working tree is read through generation.walk, which never leaves it however the update node
changes it meanwhile: a directory swapped for a symbolic link is an error, not a way out, and a
file is read only when it is still a regular file (open_file: never a link, a device or a
FIFO). Symbolic links are copied as links, never followed.

Nodes read only these trees (over the rsync module and the NFS export of roots/); nothing in
them changes after the commit that made them. The generation's secrets (image/secrets.py) are
written into a tree of their own instead, outside roots/, with the directories they are in."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from clustcontrol.errors import ClustcontrolError
from clustcontrol.image import secrets as secret
from clustcontrol.image.dense import dense_tag, fully_allocated, zero_block
from clustcontrol.image.generation import (
    Entry,
    InodeGroups,
    Manifest,
    entry_of,
    open_file,
    unchanged,
    walk,
    with_links,
    xattr_digest,
    xattrs_of,
)

_CHUNK = 1 << 20
_ZEROS = bytes(_CHUNK)


@dataclass(frozen=True)
class BuiltTree:
    """What build_tree wrote: the manifest of the tree, what building it did (`stats`), the
    secret paths (`hidden`, written apart) and the dense files among the others (`dense`:
    path -> the largest aligned zero block of a fully allocated file, dense.py; files without
    one are left out)."""

    manifest: Manifest
    stats: TreeStats
    hidden: frozenset[str]
    dense: dict[str, int]


@dataclass
class TreeStats:
    """What building one tree did: files hard-linked to the previous generation, files copied,
    and the bytes of file data copied (holes not counted)."""

    linked: int = 0
    copied: int = 0
    bytes_copied: int = 0


def _extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(offset, length) of the data of an open file, holes left out (lseek(2) SEEK_DATA and
    SEEK_HOLE; a file system without them reports one extent)."""
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole after offset
                return
            raise
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, min(end, size) - start
        offset = end


def copy_sparse(source: str, dest: str, shown: str | None = None) -> tuple[str, int, int]:
    """Copy a regular file's content to a new file `dest` (mode 0600, must not exist), holes
    kept, and hash it on the way. A source fully allocated (dense.fully_allocated: unwritten
    extents from fallocate(2) count) is written in full, zero bytes included, and looked
    through for aligned zero blocks (dense.zero_block). `source` is opened with
    generation.open_file (never a link or a device); `shown` names it in messages (default:
    source).

    Returns (sha256 hex digest of the whole content, holes read as zeros; bytes of data copied;
    the largest aligned zero block of a fully allocated file, dense.BLOCK_SIZES, else 0).
    Raises OSError when either file cannot be used, and ClustcontrolError when source is no
    longer a regular file or changed size while it was copied."""
    digest = hashlib.sha256()
    copied = zero = 0
    src = open_file(source, shown or source)
    try:
        st = os.fstat(src)
        size = st.st_size
        extents = list(_extents(src, size))
        # Data from end to end, its blocks allocated: dense without asking more. lseek(2) sees
        # an unwritten extent (fallocate) as a hole: only then is the allocation asked for.
        dense = (size == 0 or extents == [(0, size)]) and st.st_blocks * 512 >= size
        if not dense and fully_allocated(src, size):
            dense, extents = True, [(0, size)]
        dst = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            position = 0
            for start, length in extents:
                _hash_zeros(digest, start - position)
                end = start + length
                offset = start
                while offset < end:
                    chunk = os.pread(src, min(_CHUNK, end - offset), offset)
                    if not chunk:
                        raise ClustcontrolError(f"{shown or source}: shrank while it was copied")
                    os.pwrite(dst, chunk, offset)
                    digest.update(chunk)
                    if dense:
                        zero = zero_block(chunk, offset, size, zero)
                    offset += len(chunk)
                copied += length
                position = end
            _hash_zeros(digest, size - position)
            os.ftruncate(dst, size)
        finally:
            os.close(dst)
    finally:
        os.close(src)
    return digest.hexdigest(), copied, zero


def _hash_zeros(digest: hashlib._Hash, count: int) -> None:
    while count > 0:
        step = min(count, _CHUNK)
        digest.update(_ZEROS[:step])
        count -= step


def set_metadata(path: str, st: os.stat_result, attrs: list[tuple[str, bytes]]) -> None:
    """Give path (not followed when a symlink) the owner, mode, extended attributes and times of
    st, in that order. A symlink's mode is left (Linux has none to set). Raises OSError."""
    os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(path, stat.S_IMODE(st.st_mode))
    for name, value in attrs:
        os.setxattr(path, name, value, follow_symlinks=False)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _same_group(
    rel: str, group: list[str], previous: Manifest, previous_groups: dict[str, list[str]]
) -> bool:
    """Whether the hard-link group of rel (all names of its inode in the working tree) is the
    same group in the previous generation."""
    members = sorted(group) if group else [rel]
    if len(members) == 1:
        return not (old := previous.get(rel)) or not old.link
    return previous_groups.get(members[0]) == members


def build_tree(
    source: Path,
    dest: Path,
    previous: Manifest,
    previous_tree: Path | None,
    *,
    control_dir: str,
    secrets: tuple[str, ...] = (),
    secrets_dest: Path | None = None,
    previous_dense: Mapping[str, int] | None = None,
) -> BuiltTree:
    """Copy the working tree `source` into the new directory `dest` (created, must not exist)
    and return the manifest of what was written, with what building it did, the secret paths
    and the dense files (BuiltTree).

    `previous` is the manifest of `previous_tree`, the last generation's tree (None or missing:
    everything is copied). A file linked to the previous tree is dense as `previous_dense` (that
    tree's list, dense.read_list) says; without one (a tree of an earlier version), the working
    tree's file is read to know, and one that is dense with zero blocks is copied anew when the
    previous tree's file is not fully allocated. Paths the manifest leaves out
    (generation.manifest_exclusions) are not copied; excluded directories are created empty. The
    secret paths (secrets.select of the patterns `secrets`) are in the manifest but copied into
    the new directory `secrets_dest` (created 0700, must not exist; required when there are any)
    instead of `dest`, with the directories they are in (the root's metadata included); never
    linked to an earlier file. The working tree is walked twice (hard-link groups, then the
    copy), each time confined to it (generation.walk). Raises OSError when the tree cannot be
    read or written, and ClustcontrolError when a file or directory changes while it is copied."""
    # The root itself may be reached through a symlink (an image root on another disk): its
    # metadata is the directory's, never the link's (a link has no mode: the tree kept mkdir's
    # 0700, and so did every node's root).
    src_root, dst_root = os.path.realpath(source), str(dest)
    prev_root = str(previous_tree) if previous_tree is not None and previous_tree.is_dir() else None
    previous_groups: dict[str, list[str]] = {}
    for entry in previous.values():
        if entry.link:
            previous_groups.setdefault(entry.link, []).append(entry.path)
    for group in previous_groups.values():
        group.sort()

    # The working tree's hard-link groups first (a walk of its own: walk's access paths last
    # only while it stands on them): a group is linked from the previous tree only when it is
    # the same group there.
    work_groups: InodeGroups = {}
    kinds: list[tuple[str, bool]] = []  # (path, is a directory): for secret.select
    symlinks: dict[str, str] = {}  # link -> target: what a secret's link leads to is secret
    for rel, st, path in walk(src_root, control_dir):
        kinds.append((rel, stat.S_ISDIR(st.st_mode)))
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            work_groups.setdefault((st.st_dev, st.st_ino), []).append(rel)
        elif stat.S_ISLNK(st.st_mode):
            symlinks[rel] = os.readlink(path)

    hidden = secret.select(kinds, work_groups.values(), secrets, symlinks)
    secret_root = str(secrets_dest) if secrets_dest is not None else None
    secret_dirs = secret.parent_dirs(hidden)
    if hidden and secret_root is None:
        raise ValueError("build_tree: secrets found and no secrets_dest")

    stats = TreeStats()
    manifest: Manifest = {}
    dense: dict[str, int] = {}
    links: InodeGroups = {}
    first_name: dict[tuple[int, int], str] = {}
    directories: list[tuple[str, os.stat_result, list[tuple[str, bytes]]]] = []
    os.mkdir(dst_root, 0o700)
    top = os.lstat(src_root)
    if secret_root is not None:
        os.mkdir(secret_root, 0o700)
    for rel, st, path in walk(src_root, control_dir):
        is_secret = rel in hidden
        root = secret_root if is_secret and secret_root is not None else dst_root
        target = os.path.join(root, rel)
        attrs = xattrs_of(path)
        kind_mode = stat.S_IFMT(st.st_mode)
        digest = ""
        zero = 0
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(target, 0o700)
            directories.append((target, st, attrs))
            if rel in secret_dirs and secret_root is not None:
                os.mkdir(os.path.join(secret_root, rel), 0o700)
                directories.append((os.path.join(secret_root, rel), st, attrs))
        elif stat.S_ISLNK(st.st_mode):
            digest = os.readlink(path)
            os.symlink(digest, target)
            set_metadata(target, st, attrs)
        elif stat.S_ISREG(st.st_mode):
            inode = (st.st_dev, st.st_ino)
            group = work_groups.get(inode, [])
            if inode in first_name:
                os.link(os.path.join(root, first_name[inode]), target)
                digest = manifest[first_name[inode]].digest
                zero = dense.get(first_name[inode], 0)
            else:
                first_name[inode] = rel
                reuse = _reusable(rel, st, attrs, group, previous, previous_groups)
                if is_secret:
                    reuse = None  # never linked to a served tree's file
                shown = os.path.join(src_root, rel)
                known = _known_dense(rel, path, shown, reuse, prev_root, previous_dense)
                if known is None:
                    reuse = None  # dense here, not in the previous tree: copied in full
                digest, copied, zero = _link_or_copy(
                    rel, path, shown, target, reuse, prev_root, stats
                )
                if copied:
                    set_metadata(target, st, attrs)
                else:
                    zero = known or 0
                if not _unchanged_source(path, st):
                    raise ClustcontrolError(
                        f"{shown}: changed while it was copied into the new generation",
                        hint="commit again when nothing writes to the standard",
                    )
        else:
            os.mknod(target, kind_mode | 0o600, st.st_rdev)
            set_metadata(target, st, attrs)
        if len(work_groups.get((st.st_dev, st.st_ino), [])) > 1:
            links.setdefault((st.st_dev, st.st_ino), []).append(rel)
        manifest[rel] = entry_of(rel, st, digest, xattr_digest(attrs))
        if stat.S_ISREG(st.st_mode) and zero and not is_secret:
            dense[rel] = zero
    for target, st, attrs in reversed(directories):
        set_metadata(target, st, attrs)
    set_metadata(dst_root, top, xattrs_of(src_root))
    if secret_root is not None:
        set_metadata(secret_root, top, xattrs_of(src_root))
    return BuiltTree(with_links(manifest, links), stats, hidden, dense)


def _known_dense(
    rel: str,
    path: str,
    shown: str,
    reuse: Entry | None,
    prev_root: str | None,
    previous_dense: Mapping[str, int] | None,
) -> int | None:
    """What is known of a file about to be linked to the previous tree (`reuse` given): its
    entry in `previous_dense`; without that list, what reading the working tree's file tells
    (dense.dense_tag), or None when it is dense with zero blocks and the previous tree's file
    is not fully allocated (it must be copied). 0 for a file that will be copied."""
    if reuse is None or prev_root is None:
        return 0
    if previous_dense is not None:
        return previous_dense.get(rel, 0)
    fd = open_file(path, shown)
    try:
        tag = dense_tag(fd)
    finally:
        os.close(fd)
    if not tag:
        return 0
    try:
        fd = os.open(os.path.join(prev_root, rel), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return tag  # the previous tree lost it: copied anyway
    try:
        return tag if fully_allocated(fd, os.fstat(fd).st_size) else None
    finally:
        os.close(fd)


def _unchanged_source(path: str, st: os.stat_result) -> bool:
    try:
        now = os.lstat(path)
    except FileNotFoundError:
        return False
    return (now.st_size, now.st_mtime_ns, now.st_ctime_ns) == (
        st.st_size,
        st.st_mtime_ns,
        st.st_ctime_ns,
    )


def _reusable(
    rel: str,
    st: os.stat_result,
    attrs: list[tuple[str, bytes]],
    group: list[str],
    previous: Manifest,
    previous_groups: dict[str, list[str]],
) -> Entry | None:
    """The previous generation's entry of a regular file when the file is unchanged since
    (content by size, mtime and ctime; owner, mode, extended attributes, hard-link group)."""
    old = previous.get(rel)
    if (
        old is not None
        and unchanged(old, st)
        and (old.mode, old.uid, old.gid) == (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
        and old.xattrs == xattr_digest(attrs)
        and _same_group(rel, group, previous, previous_groups)
    ):
        return old
    return None


def _link_or_copy(
    rel: str,
    path: str,
    shown: str,
    target: str,
    reuse: Entry | None,
    prev_root: str | None,
    stats: TreeStats,
) -> tuple[str, bool, int]:
    """Hard-link target to the previous tree's file when `reuse` (its unchanged entry) is given,
    else copy the working tree's `path` (walk's access path; `shown` for messages): (the
    file's digest, whether it was copied, its zero block when copied (copy_sparse), else 0)."""
    if reuse is not None and prev_root is not None:
        try:
            os.link(os.path.join(prev_root, rel), target)
        except OSError:
            pass  # the previous tree lost it: copy
        else:
            stats.linked += 1
            return reuse.digest, False, 0
    digest, copied, zero = copy_sparse(path, target, shown)
    stats.copied += 1
    stats.bytes_copied += copied
    return digest, True, zero
