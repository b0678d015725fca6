"""Dense files: the regular files of a standard that must stay fully allocated on the nodes.

A node copies a generation with rsync --sparse or GNU tar --sparse (--hole-detection=raw), and
both write nothing where a file holds a run of zero bytes: a block of the node's file system
that lies wholly in such a run becomes a hole, whatever the standard's file was. Holes are
right for a sparse file (/var/log/lastlog), wrong for a file that is fully allocated in the
working tree: a swap file (made with dd from /dev/zero or fallocate(1), then mkswap(8)) fails
swapon(8) with holes ("swapfile has holes", "has unallocated extents"), and a preallocated
database or VM image loses its preallocation.

`image commit` therefore lists, in each generation's tree (contract.DENSE_LIST), the files that
are fully allocated in the working tree (fully_allocated: FIEMAP, unwritten extents from
fallocate(2) count as allocated) and hold an aligned all-zero block (zero_block), with the
largest such block size of 1024, 2048 and 4096 bytes: a node whose root has blocks of that size
or smaller would get a hole there. The generation's own copy of such a file is written in full
(snapshot.copy_sparse), zero bytes included, so the tree and its attribute archive keep the
working tree's allocation too. The node allocates each listed file its copy wrote again
(fallocate, node/engine/dense.sh) before it records the sync.

The list, UTF-8, LF line ends:

    # clustcontrol-dense 1 GENERATION
    SIZE PATH   one per file, sorted by PATH: SIZE 1024, 2048 or 4096, PATH relative to the root
    # end

A path an rsync --files-from list cannot hold (deltas.unlistable) is left out: its file keeps
the holes the copy gives it, as before this list existed."""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from collections.abc import Mapping
from pathlib import Path

from clustcontrol.contract import DENSE_FORMAT
from clustcontrol.fsutil import atomic_write, read_bytes_or_none
from clustcontrol.image.deltas import unlistable

#: The block sizes a list records, largest first: the file systems a node root may have use
#: blocks of 1024 bytes or more (ext2/3/4: 1024-65536; mke2fs(8) picks 1024 below 512 MiB).
BLOCK_SIZES = (4096, 2048, 1024)
_ZEROS = bytes(BLOCK_SIZES[0])
_RUN = _ZEROS[: BLOCK_SIZES[-1]]

# linux/fs.h FS_IOC_FIEMAP = _IOWR('f', 11, struct fiemap); linux/fiemap.h, and
# Documentation/filesystems/fiemap.rst: struct fiemap (fm_start, fm_length, fm_flags,
# fm_mapped_extents, fm_extent_count, fm_reserved), then fm_extent_count struct fiemap_extent
# (fe_logical, fe_physical, fe_length, fe_reserved64[2], fe_flags, fe_reserved[3]).
FS_IOC_FIEMAP = 0xC020660B
FIEMAP_EXTENT_LAST = 0x1
_FIEMAP = struct.Struct("=QQIIII")
_EXTENT = struct.Struct("=QQQ16xI12x")
_EXTENTS_PER_CALL = 128
_WHOLE = 0xFFFFFFFFFFFFFFFF  # FIEMAP_MAX_OFFSET


def fully_allocated(fd: int, size: int) -> bool:
    """Whether every byte of the open regular file `fd` (of `size` bytes) lies in allocated
    space: written data, delayed allocation or unwritten extents (fallocate(2) allocates those;
    swapon accepts them, fs/iomap/swapfile.c), no hole. Asked with the FIEMAP ioctl
    (Documentation/filesystems/fiemap.rst); a file system without it (tmpfs, NFS) answers by
    lseek(2) SEEK_HOLE and the allocated blocks (st_blocks), which see an unwritten extent as a
    hole. An empty file is fully allocated. Raises OSError when the file cannot be asked."""
    covered = 0  # the bytes from 0 known to be allocated
    while covered < size:
        buf = bytearray(_FIEMAP.size + _EXTENTS_PER_CALL * _EXTENT.size)
        _FIEMAP.pack_into(buf, 0, covered, _WHOLE, 0, 0, _EXTENTS_PER_CALL, 0)
        try:
            fcntl.ioctl(fd, FS_IOC_FIEMAP, buf)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.ENOTTY):
                return _no_hole_seen(fd, size)
            raise
        mapped = _FIEMAP.unpack_from(buf)[3]
        before = covered
        for i in range(mapped):
            logical, _physical, length, flags = _EXTENT.unpack_from(
                buf, _FIEMAP.size + i * _EXTENT.size
            )
            if logical > covered:
                return False  # a hole before this extent
            covered = max(covered, int(logical) + int(length))
            if flags & FIEMAP_EXTENT_LAST:
                return covered >= size
        if covered == before:
            return False  # nothing mapped from `covered` on: a hole to the end
    return True


def _no_hole_seen(fd: int, size: int) -> bool:
    try:
        hole = os.lseek(fd, 0, os.SEEK_HOLE)
    except OSError:
        hole = size  # no SEEK_HOLE: the blocks alone tell
    return bool(hole >= size and os.fstat(fd).st_blocks * 512 >= size)


def zero_block(chunk: bytes, offset: int, size: int, found: int = 0) -> int:
    """The largest of BLOCK_SIZES larger than `found` for which `chunk`, the bytes at `offset`
    of a file of `size` bytes, holds an all-zero block of that size at a multiple of it (the
    file's last block, cut at its end, counts); `found` when there is none. Feed every chunk of
    a file in order, each with the last answer, to get the file's (0: it has no such block);
    chunks that start at multiples of 4096 see every block whole."""
    if found >= BLOCK_SIZES[0]:
        return found
    # A whole zero block of any size holds a run of 1024 zero bytes, a last one ends in a zero
    # byte: one search and one look rule most chunks out.
    last = offset + len(chunk) == size and chunk[-1:] == b"\0"
    runs = _RUN in chunk
    if not (runs or last):
        return found
    for block in BLOCK_SIZES:
        if block <= found:
            break
        if (runs and _aligned_zeros(chunk, offset, block)) or (
            last and _zero_tail(chunk, offset, block)
        ):
            return block
    return found


def _aligned_zeros(chunk: bytes, offset: int, block: int) -> bool:
    zeros = _ZEROS[:block]
    i = chunk.find(zeros)
    while i >= 0:
        aligned = -(-(offset + i) // block) * block - offset  # the first boundary in the run
        if chunk[aligned : aligned + block] == zeros:
            return True
        # The run from i ends before aligned + block: the next one starts after aligned.
        i = chunk.find(zeros, aligned + 1)
    return False


def _zero_tail(chunk: bytes, offset: int, block: int) -> bool:
    """Whether the file's last block (it ends the chunk) is all zero and shorter than `block`."""
    end = offset + len(chunk)
    start = end // block * block - offset
    if end % block == 0 or not 0 <= start < len(chunk):
        return False
    tail = chunk[start:]
    return tail == _ZEROS[: len(tail)]


def dense_tag(fd: int, chunk_size: int = 1 << 20) -> int:
    """What the list records of the open regular file `fd`: the largest block size of
    BLOCK_SIZES it holds an aligned zero block of (zero_block, reading it whole), when it is
    fully allocated (fully_allocated); 0 otherwise. Raises OSError."""
    size = os.fstat(fd).st_size
    if not fully_allocated(fd, size):
        return 0
    found = offset = 0
    while found < BLOCK_SIZES[0] and (chunk := os.pread(fd, chunk_size, offset)):
        found = zero_block(chunk, offset, size, found)
        offset += len(chunk)
    return found


def listable(tags: Mapping[str, int]) -> dict[str, int]:
    """The entries of `tags` (path -> block size) a list can hold (deltas.unlistable)."""
    return {path: size for path, size in tags.items() if unlistable(path) is None}


def render_list(generation: str, tags: Mapping[str, int]) -> bytes:
    """The DENSE_LIST file of `generation`: the header, one "SIZE PATH" line per entry of `tags`
    (path -> block size; every path listable), sorted by path, "# end" (UTF-8 bytes)."""
    lines = [f"# {DENSE_FORMAT} {generation}", *(f"{tags[p]} {p}" for p in sorted(tags)), "# end"]
    return ("\n".join(lines) + "\n").encode()


def write_list(path: Path, generation: str, tags: Mapping[str, int]) -> None:
    """Write the DENSE_LIST file (render_list) at `path`, atomically, mode 0644. Raises
    OSError."""
    atomic_write(path, render_list(generation, tags), mode=0o644)


def read_list(path: Path) -> dict[str, int] | None:
    """The entries (path -> block size) of a tree's DENSE_LIST; None when the tree has none
    (committed by an earlier version) or it is not a complete list. Raises OSError when it
    exists but cannot be read."""
    data = read_bytes_or_none(path)
    if data is None:
        return None
    lines = data.decode("utf-8", "surrogateescape").split("\n")
    if len(lines) < 3 or lines[-2:] != ["# end", ""]:
        return None
    if not lines[0].startswith(f"# {DENSE_FORMAT} "):
        return None
    tags: dict[str, int] = {}
    for line in lines[1:-2]:
        size, _, rel = line.partition(" ")
        if not size.isdigit() or int(size) not in BLOCK_SIZES or not rel:
            return None
        tags[rel] = int(size)
    return tags
