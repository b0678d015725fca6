"""A reproducible synthetic standard root, shaped like a Debian root file system, on disk.

`bench.synthetic_plan` decides from (preset, seed) what the tree holds; this module writes it.
File contents are slices of one random pool written with os.write (no per-byte randomness), so
2 GB are written in seconds. Generated trees are cached under cache/bench/ keyed on
(seed, preset, generator version); `ensure_tree` builds a tree once and reuses it afterwards.
The tree is a committed standard: it carries the generation file `clustcontrol image commit`
writes, so a faithful copy is byte-for-byte comparable with the source.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.synthetic_plan import BASE_MTIME, GEN_VERSION, MIB, POOL_SIZE, Plan, Preset, plan_tree
from bench.tree_compare import walk
from clustcontrol.contract import GENERATION_FILE

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "cache" / "bench"


def generation_id(seed: int, preset: str, sequence: int) -> str:
    """The generation the standard of (seed, preset) holds after its sequence-th commit:
    SEQ-HASH, as `clustcontrol image commit` writes it to the generation file (nodes holding
    the standard's generation skip the transfer)."""
    digest = hashlib.sha256(f"{seed}:{preset}:{sequence}:{GEN_VERSION}".encode()).hexdigest()
    return f"{sequence}-{digest[:12]}"


@dataclass(frozen=True)
class Tree:
    """A generated tree and its manifest (paths relative to root)."""

    root: Path
    preset: Preset
    seed: int
    manifest: dict[str, list[list[Any]]]

    @property
    def single_files(self) -> list[tuple[str, int]]:
        """Regular files with one name (candidates for edits and deletions)."""
        return [(str(e[0]), int(e[1])) for e in self.manifest["single"]]

    @property
    def total_bytes(self) -> int:
        """Bytes of the regular files, each inode once."""
        return sum(int(e[1]) for e in self.manifest["single"] + self.manifest["linked"])

    def counts(self) -> dict[str, int]:
        """Entries per manifest kind: single, linked (inodes), symlinks, dirs."""
        return {k: len(v) for k, v in self.manifest.items()}


def random_pool(seed: int | str, size: int = POOL_SIZE) -> bytes:
    """size bytes of seeded random data: the slices every file's content is cut from."""
    return random.Random(f"pool:{seed}").randbytes(size)


def write_span(fd: int, pool: memoryview, offset: int, size: int) -> None:
    """Write size bytes of the pool to the open file fd, starting at offset bytes into the
    pool (wrapping around at its end). Raises OSError if the write fails."""
    n = len(pool)
    while size > 0:
        chunk = min(size, n - offset, 4 * MIB)
        done = os.write(fd, pool[offset : offset + chunk])
        size -= done
        offset = (offset + done) % n


def write_plan(plan: Plan, root: Path, seed: int) -> None:
    """Create root (which must not exist) and write the plan into it: directories, files with
    their content from the seed's pool, hard links, symlinks, then every mode and mtime. Raises
    OSError (FileExistsError if root or a planned path exists already)."""
    pool = memoryview(random_pool(seed))
    root.mkdir(parents=True)
    for d in plan.dirs:
        (root / d).mkdir()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    for path, size, offset, mode, mtime in plan.files:
        fd = os.open(root / path, flags, mode)
        try:
            write_span(fd, pool, offset, size)
            os.fchmod(fd, mode)  # the umask does not apply
            os.utime(fd, (mtime, mtime))
        finally:
            os.close(fd)
    for new, existing in plan.hardlinks:
        os.link(root / existing, root / new)
    for path, target in plan.symlinks:
        os.symlink(target, root / path)
        os.utime(root / path, (BASE_MTIME, BASE_MTIME), follow_symlinks=False)
    for d in reversed(plan.dirs):  # deepest first: a directory's time is set after its entries
        os.utime(root / d, (BASE_MTIME, BASE_MTIME))
    os.utime(root, (BASE_MTIME, BASE_MTIME))


# What a real standard carries besides file data, each kind a few times: a file capability
# (struct vfs_cap_data revision 2, effective, cap_net_raw: linux/capability.h), a POSIX ACL
# (system.posix_acl_access: version 2, user::rw- user:1234:r-- group::r-- mask::r-- other::r--,
# linux/posix_acl_xattr.h), a trusted and a user attribute, and sparse files (a 64 MiB
# /var/log/lastlog-like file holding 4 KiB).
CAPABILITY = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)
_NO_ID = 0xFFFFFFFF
ACL_ACCESS = struct.pack("<I", 2) + b"".join(
    struct.pack("<HHI", tag, perm, uid)
    for tag, perm, uid in (
        (1, 6, _NO_ID),
        (2, 4, 1234),
        (4, 4, _NO_ID),
        (0x10, 4, _NO_ID),
        (0x20, 4, _NO_ID),
    )
)
EXTRAS_DIR = "var/lib/bench-extras"
SPARSE_SIZE = 64 * MIB


def write_extras(root: Path) -> list[str]:
    """Add EXTRAS_DIR to a written tree: per kind of attribute four files carrying it, and four
    sparse files; the paths written (relative). Raises OSError, e.g. when the file system has no
    extended attributes of a namespace."""
    extras = root / EXTRAS_DIR
    extras.mkdir(parents=True)
    written = []
    attrs = (
        ("capability", "security.capability", CAPABILITY),
        ("acl", "system.posix_acl_access", ACL_ACCESS),
        ("trusted", "trusted.bench", b"\x00trusted\xff"),
        ("user", "user.bench", b"user value"),
    )
    for kind, name, value in attrs:
        for i in range(4):
            path = extras / f"{kind}-{i}"
            path.write_bytes(f"{kind} {i}\n".encode())
            path.chmod(0o644)
            os.setxattr(path, name, value)
            written.append(f"{EXTRAS_DIR}/{path.name}")
    for i in range(4):
        path = extras / f"sparse-{i}"
        with path.open("wb") as f:
            f.truncate(SPARSE_SIZE)
            f.seek(SPARSE_SIZE // 2)
            f.write(os.urandom(4096))
        written.append(f"{EXTRAS_DIR}/{path.name}")
    for rel in written:
        os.utime(root / rel, (BASE_MTIME, BASE_MTIME))
    os.utime(extras, (BASE_MTIME, BASE_MTIME))
    return written


def write_generation(root: Path, generation: str, mtime: int = BASE_MTIME) -> None:
    """Commit the tree at root: write generation to its generation file, with mtime (seconds
    since the epoch)."""
    path = root / GENERATION_FILE
    path.write_text(generation + "\n")
    os.utime(path, (mtime, mtime))


def read_generation(root: Path) -> str:
    """The generation the tree at root was committed with. Raises OSError if it has none."""
    return (root / GENERATION_FILE).read_text().strip()


def scan_manifest(root: Path) -> dict[str, list[list[Any]]]:
    """The manifest of the tree at root (paths relative to it, sorted): single: [path, size in
    bytes] of regular files with one name; linked: [path, size in bytes, nlink], one entry per
    inode; symlinks: [path, target]; dirs: [path]."""
    single: list[list[Any]] = []
    linked: list[list[Any]] = []
    symlinks: list[list[Any]] = []
    dirs: list[list[Any]] = []
    seen: set[int] = set()
    for rel, st in walk(root):
        if stat.S_ISDIR(st.st_mode):
            dirs.append([rel])
        elif stat.S_ISLNK(st.st_mode):
            symlinks.append([rel, os.readlink(root / rel)])
        elif st.st_nlink == 1:
            single.append([rel, st.st_size])
        elif st.st_ino not in seen:  # one entry per inode: sizes count once
            seen.add(st.st_ino)
            linked.append([rel, st.st_size, st.st_nlink])
    return {"single": single, "linked": linked, "symlinks": symlinks, "dirs": dirs}


def cache_dir() -> Path:
    """Where generated standards are cached: $CC_BENCH_CACHE, else cache/bench/ in the repo."""
    return Path(os.environ.get("CC_BENCH_CACHE", str(CACHE)))


def tree_key(preset: Preset, seed: int) -> str:
    """The cache name of the standard of (preset, seed) for this generator version."""
    return f"std-{preset.name}-{preset.files}f-{preset.total_bytes}b-s{seed}-v{GEN_VERSION}"


def ensure_tree(preset: Preset, seed: int, cache: Path | None = None) -> Tree:
    """The generated tree for (seed, preset): from the cache (default: cache_dir()), else
    generated into it first (seconds for MBs, about a minute for 2 GB). Raises OSError if the
    cache cannot be written."""
    cache = cache or cache_dir()
    key = tree_key(preset, seed)
    root = cache / key
    stamp = cache / f"{key}.json"
    if root.is_dir() and stamp.is_file():
        return Tree(root, preset, seed, json.loads(stamp.read_text()))
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f"{key}.tmp"
    for stale in (tmp, root):
        if stale.exists():
            shutil.rmtree(stale)
    write_plan(plan_tree(preset, seed), tmp, seed)
    write_extras(tmp)
    for parent in ("var/lib", "var"):
        os.utime(tmp / parent, (BASE_MTIME, BASE_MTIME))
    write_generation(tmp, generation_id(seed, preset.name, 1))  # a committed standard
    os.utime(tmp / "etc", (BASE_MTIME, BASE_MTIME))
    tmp.rename(root)
    manifest = scan_manifest(root)
    stamp.write_text(json.dumps(manifest))
    return Tree(root, preset, seed, manifest)
