"""`clustcontrol image commit NAME` and the per-image part of `clustcontrol status`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from clustcontrol.fsutil import atomic_write, exclusive_lock
from clustcontrol.image.common import image_tree
from clustcontrol.image.deltas import KEEP, Delta, write_deltas
from clustcontrol.image.generation import (
    DELTAS_DIR,
    GENERATION_FILE,
    Difference,
    GenerationStore,
    InodeGroups,
    compare,
    content_hash,
    next_generation,
    scan,
)
from clustcontrol.inventory.model import Inventory


@dataclass(frozen=True)
class CommitResult:
    """What `image commit` did: the generation now current (SEQ-HASH) and the one before it
    (None on the first commit), the difference between their manifests, whether a generation
    file was written (`created`), the number of manifest entries (`files`), the time taken
    (`seconds`, wall clock) and the deltas."""

    image: str
    generation: str
    previous: str | None
    difference: Difference
    created: bool
    files: int
    seconds: float
    deltas: tuple[Delta, ...] = ()  # written, or skipped with the reason


@dataclass(frozen=True)
class ImageStatus:
    """One image's line in `clustcontrol status`: `root` is its inventory path, the other
    fields compare the last commit with the standard root (see the field comments)."""

    image: str
    root: str
    committed: str | None  # the last recorded generation
    in_root: str | None  # what the standard's etc/clustcontrol-generation says (nodes read it)
    uncommitted: Difference | None  # None when nothing was ever committed

    @property
    def warning(self) -> str | None:
        """What the administrator must act on, or None: no commit yet, a generation file that
        does not match the last commit, or changes made to the standard since the last commit.
        """
        if self.committed is None:
            return (
                f"image {self.image}: no generation committed; nodes sync the whole tree at "
                f"every boot (clustcontrol image commit {self.image})"
            )
        if self.in_root != self.committed:
            return (
                f"image {self.image}: {GENERATION_FILE} says {self.in_root!r}, the last commit "
                f"is {self.committed!r} (clustcontrol image commit {self.image})"
            )
        if self.uncommitted is not None and not self.uncommitted.empty:
            return (
                f"image {self.image}: UNCOMMITTED CHANGES since generation {self.committed} "
                f"({self.uncommitted.summary()}): nodes at that generation will not get them "
                f"until: clustcontrol image commit {self.image}"
            )
        return None


def _read_generation(root: Path) -> str | None:
    try:
        return (root / GENERATION_FILE).read_text().strip() or None
    except (FileNotFoundError, NotADirectoryError):
        return None


def commit_image(
    inv: Inventory, name: str, root_prefix: Path = Path("/"), *, deltas: int = KEEP
) -> CommitResult:
    """Record a new generation of the standard when its content changed since the last one,
    with the deltas from the last `deltas` earlier generations (written before the generation
    file, so a node never sees a generation without its deltas).

    `name` is an image of the inventory, its root taken under `root_prefix`; the generation
    store is PREFIX/var/lib/clustcontrol/images/NAME, held under its lock while committing.
    When nothing changed and the generation file is current, nothing is written (created is
    False). Raises InvalidInputError for an unknown image, ClustcontrolError when its root is
    not a directory, LockedError when another commit of the image holds the lock, and OSError
    when the tree cannot be read or the store written."""
    start = time.monotonic()
    tree = image_tree(inv, name, root_prefix)
    store = GenerationStore.for_image(root_prefix, name)
    with exclusive_lock(store.base / "lock"):
        current = store.current()
        previous = store.manifest(current) if current else {}
        links: InodeGroups = {}
        manifest = scan(tree.root, previous, links=links, control_dir=inv.cluster.control_dir)
        difference = compare(previous, manifest)
        unchanged = current is not None and difference.empty
        if unchanged and _read_generation(tree.root) == current:
            assert current is not None
            return CommitResult(
                name, current, current, difference, False, len(manifest), time.monotonic() - start
            )
        generation = (
            current if unchanged and current else next_generation(current, content_hash(manifest))
        )
        store.record(generation, manifest)
        written = write_deltas(
            store,
            tree.live(DELTAS_DIR),
            generation,
            manifest,
            links,
            keep=deltas,
        )
        atomic_write(tree.live(GENERATION_FILE), f"{generation}\n".encode())
    seconds = time.monotonic() - start
    return CommitResult(
        name, generation, current, difference, True, len(manifest), seconds, written
    )


def image_status(inv: Inventory, name: str, root_prefix: Path = Path("/")) -> ImageStatus:
    """Compare the standard with its last committed manifest by metadata (no file is read).

    Takes no lock and writes nothing. Raises InvalidInputError for an unknown image,
    ClustcontrolError when its root is not a directory or the last manifest is missing, and
    OSError when the tree cannot be scanned."""
    tree = image_tree(inv, name, root_prefix)
    store = GenerationStore.for_image(root_prefix, name)
    current = store.current()
    uncommitted = None
    if current is not None:
        now = scan(tree.root, hash_files=False, control_dir=inv.cluster.control_dir)
        uncommitted = compare(store.manifest(current), now, by_content=False)
    return ImageStatus(name, tree.image.root, current, _read_generation(tree.root), uncommitted)
