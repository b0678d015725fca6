"""The changed standard of the `incremental` metric: 1% of the files edited, added or deleted.

`plan_changes` picks the change set from the tree's seed; `ensure_changed_tree` applies it to a
copy of the synthetic standard, commits it (the next generation) and publishes the master's
delta for nodes at the previous generation, with the master's own code; the result is cached
next to the standard.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.synthetic import (
    Tree,
    cache_dir,
    generation_id,
    read_generation,
    tree_key,
    write_generation,
)
from bench.synthetic_plan import BASE_MTIME, BULK_CAP, GEN_VERSION, SIGMA
from clustcontrol.contract import DELTAS_DIR, GENERATION_FILE

CHANGES_VERSION = (
    4  # of the changed standard (incompressible change bytes, the master's delta and batch)
)
EDIT_MTIME_SHIFT = 86_400  # an edited file's mtime moves one day forward


@dataclass(frozen=True)
class ChangeSet:
    """What the change turns the standard into its next generation with (paths relative to the
    root): edited files with the merged (offset, length) byte ranges rewritten, added files
    with their size in bytes, deleted files."""

    edited: list[tuple[str, list[tuple[int, int]]]]  # path, merged (offset, length) ranges
    added: list[tuple[str, int]]
    deleted: list[str]

    @property
    def changed_bytes(self) -> int:
        """Bytes the node must get: added files + changed ranges (deletions are free)."""
        return sum(s for _p, s in self.added) + sum(
            n for _p, ranges in self.edited for _o, n in ranges
        )

    def as_dict(self) -> dict[str, int]:
        """File counts and byte counts of the change set, for the results' parameters."""
        return {
            "edited_files": len(self.edited),
            "added_files": len(self.added),
            "deleted_files": len(self.deleted),
            "added_bytes": sum(s for _p, s in self.added),
            "edited_bytes": self.changed_bytes - sum(s for _p, s in self.added),
            "changed_bytes": self.changed_bytes,
        }


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for off, n in sorted(ranges):
        if out and off <= out[-1][0] + out[-1][1]:
            last_off, last_n = out[-1]
            out[-1] = (last_off, max(last_off + last_n, off + n) - last_off)
        else:
            out.append((off, n))
    return out


def plan_changes(tree: Tree, fraction: float = 0.01) -> ChangeSet:
    """fraction of the tree's single-name files (at least 4) changed, deterministic from the
    tree's seed: half edits (mostly small ranges inside large files), a quarter added files, a
    quarter deleted files; plus the generation file rewritten (the next generation)."""
    r = random.Random(f"changes:{tree.seed}:{tree.preset.name}:{GEN_VERSION}")
    files = sorted(f for f in tree.single_files if f[0] != GENERATION_FILE)
    n = max(4, round(len(files) * fraction))
    n_edit, n_add = n // 2, n // 4
    n_del = n - n_edit - n_add
    big = [f for f in files if f[1] >= 256 * 1024]
    small = [f for f in files if 0 < f[1] < 256 * 1024]
    picked: set[str] = set()
    edited: list[tuple[str, list[tuple[int, int]]]] = []
    while len(edited) < n_edit:
        path, size = r.choice(big if big and r.random() < 0.6 else small)
        if path in picked:
            continue
        picked.add(path)
        ranges = []
        for _ in range(r.randint(1, 4)):
            length = min(size, r.randint(16, 4096))
            ranges.append((r.randrange(size - length + 1), length))
        edited.append((path, _merge(ranges)))
    deleted: list[str] = []
    while len(deleted) < n_del:
        path, _size = r.choice(files)
        if path not in picked:
            picked.add(path)
            deleted.append(path)
    dirs = sorted({p.rsplit("/", 1)[0] for p, _s in files})
    added: list[tuple[str, int]] = []
    for i in range(n_add):
        d = r.choice(dirs)
        size = min(BULK_CAP, int(r.lognormvariate(math.log(6_000), SIGMA)))
        added.append((f"{d}/bench-added-{i:05d}", size))
    # The changed standard is committed again: a new generation the node must fetch.
    size = len(generation_id(tree.seed, tree.preset.name, 2)) + 1
    edited.append((GENERATION_FILE, [(0, size)]))
    return ChangeSet(sorted(edited), sorted(added), sorted(deleted))


def apply_changes(root: Path, changes: ChangeSet, seed: int, generation: str) -> None:
    """Apply changes to the tree at root (a copy of the standard) and commit it as generation.

    The change set's bytes are fresh random bytes from seed, not slices of a pool: compression
    (the rsync daemon's -z) must find nothing to gain in them, as in real changed binaries.
    Edited files' mtimes move one day forward. Raises OSError if a path is missing (edits,
    deletions) or exists already (additions)."""
    r = random.Random(f"apply:{seed}")
    for path, ranges in changes.edited:
        if path == GENERATION_FILE:
            write_generation(root, generation, BASE_MTIME + EDIT_MTIME_SHIFT)
            continue
        p = root / path
        st = p.stat()
        fd = os.open(p, os.O_WRONLY | os.O_CLOEXEC)
        try:
            for off, n in ranges:
                os.lseek(fd, off, os.SEEK_SET)
                os.write(fd, r.randbytes(n))
        finally:
            os.close(fd)
        shifted = int(st.st_mtime) + EDIT_MTIME_SHIFT
        os.utime(p, (shifted, shifted))
    for path, size in changes.added:
        fd = os.open(root / path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, r.randbytes(size))
            os.utime(fd, (BASE_MTIME, BASE_MTIME))
        finally:
            os.close(fd)
    for path in changes.deleted:
        (root / path).unlink()


def publish_delta(old: Path, new: Path, store_dir: Path) -> None:
    """What `clustcontrol image commit` publishes in the standard `new` for nodes at the
    generation of `old`: new/etc/clustcontrol-deltas/OLD_GENERATION and the rsync batch beside it
    (OLD_GENERATION.batch, .list, .sums), by the master's own code (both trees scanned and
    hashed, the old manifest recorded in a generation store at store_dir, the old tree standing
    for that generation's kept tree). Raises RuntimeError if the master writes no delta or no
    batch."""
    from clustcontrol.contract import CONTROL_DIR
    from clustcontrol.image.batches import excluded_paths, write_batches
    from clustcontrol.image.deltas import write_deltas
    from clustcontrol.image.generation import GenerationStore, scan

    store = GenerationStore(store_dir)
    store.record(read_generation(old), scan(old))
    manifest = scan(new)
    target = read_generation(new)
    store.record(target, manifest)
    deltas = write_deltas(store, new / DELTAS_DIR, target, manifest)
    if not deltas or deltas[0].skipped:
        raise RuntimeError(f"no delta from {old} to {new}: {deltas}")
    source = read_generation(old)
    store.roots.mkdir(parents=True, exist_ok=True)
    store.tree(source).symlink_to(old.resolve())
    # The bench's node has no persistent paths and no data partitions: the contract's only.
    if not write_batches(store, new, manifest, [source], excluded_paths(CONTROL_DIR, ())):
        raise RuntimeError(f"no batch from {old} to {new}")


def ensure_changed_tree(tree: Tree, cache: Path | None = None) -> tuple[Path, ChangeSet]:
    """A copy of tree with the 1% change set applied and committed: the next generation, with
    the master's delta from the tree's (cached next to the tree, in cache; default
    cache_dir()). Returns the changed tree's root and the change set. Raises OSError or
    subprocess.CalledProcessError if the copy cannot be made, RuntimeError if no delta."""
    cache = cache or cache_dir()
    changes = plan_changes(tree)
    key = tree_key(tree.preset, tree.seed) + f"-changed-v{CHANGES_VERSION}"
    root = cache / key
    stamp = cache / f"{key}.json"
    if root.is_dir() and stamp.is_file():
        return root, changes
    tmp = cache / f"{key}.tmp"
    for stale in (tmp, root):
        if stale.exists():
            shutil.rmtree(stale)
    subprocess.run(["cp", "-a", f"{tree.root}/.", f"{tmp}/"], check=True)
    apply_changes(tmp, changes, tree.seed, generation_id(tree.seed, tree.preset.name, 2))
    store = cache / f"{key}.store"
    if store.exists():
        shutil.rmtree(store)
    publish_delta(tree.root, tmp, store)
    shutil.rmtree(store)
    tmp.rename(root)
    stamp.write_text(json.dumps(changes.as_dict()))
    return root, changes
