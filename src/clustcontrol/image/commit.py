"""`clustcontrol image commit NAME` and the per-image part of `clustcontrol status`.

A commit turns the working tree (images.NAME.root, which the administrator and the update node
edit) into an immutable generation: a tree under STATE_DIR/images/NAME/roots (image/snapshot.py)
with its manifest, its generation file and its deltas, published by rewriting roots/current
last. Nodes read only generation trees, never the working tree."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from clustcontrol.contract import DELTAS_DIR, GENERATION_FILE, XATTRS_FILE, exclusions, params
from clustcontrol.fsutil import atomic_write, exclusive_lock
from clustcontrol.image.common import image_tree
from clustcontrol.image.deltas import KEEP, Delta, write_deltas
from clustcontrol.image.generation import (
    Difference,
    GenerationStore,
    Manifest,
    TreeUsage,
    compare,
    content_hash,
    next_generation,
    scan,
)
from clustcontrol.image.snapshot import TreeStats, build_tree, remove_tree
from clustcontrol.inventory.model import Inventory
from clustcontrol.run import require, run

STAGING = (
    ".new"  # roots/.new: the tree being built (a killed commit leaves it; the next removes it)
)
XATTRS_STAGING = ".new-xattrs.tar"  # roots/.new-xattrs.tar: its attribute archive, until done


@dataclass(frozen=True)
class CommitResult:
    """What `image commit` did: the generation now current (SEQ-HASH) and the one before it
    (None on the first commit), the difference between their manifests, whether a generation
    was made (`created`), the number of manifest entries (`files`), the time taken (`seconds`,
    wall clock), the deltas, how the tree was built (`tree`: files linked to the previous
    generation and copied) and the generations whose trees were removed (`pruned`)."""

    image: str
    generation: str
    previous: str | None
    difference: Difference
    created: bool
    files: int
    seconds: float
    deltas: tuple[Delta, ...] = ()  # written, or skipped with the reason
    tree: TreeStats | None = None
    pruned: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageStatus:
    """One image's line in `clustcontrol status`: `root` is its working tree's inventory path,
    the other fields compare the last commit with it (see the field comments)."""

    image: str
    root: str
    committed: str | None  # the generation nodes sync to
    served: bool  # its tree exists (nodes can sync it)
    uncommitted: Difference | None  # None when nothing was ever committed
    generations: tuple[TreeUsage, ...] = ()

    @property
    def warning(self) -> str | None:
        """What the administrator must act on, or None: no commit yet, a current generation
        whose tree is missing, or changes made to the working tree since the last commit."""
        if self.committed is None:
            return (
                f"image {self.image}: no generation committed; nodes cannot sync it "
                f"(clustcontrol image commit {self.image})"
            )
        if not self.served:
            return (
                f"image {self.image}: the tree of generation {self.committed} is missing; "
                f"nodes cannot sync it (clustcontrol image commit {self.image})"
            )
        if self.uncommitted is not None and not self.uncommitted.empty:
            return (
                f"image {self.image}: UNCOMMITTED CHANGES since generation {self.committed} "
                f"({self.uncommitted.summary()}): nodes will not get them "
                f"until: clustcontrol image commit {self.image}"
            )
        return None


def _etc(manifest: Manifest) -> str | None:
    """The directory of the generation file and the deltas (etc) when the tree has it as a real
    directory: a symlink there would lead the writes out of the tree."""
    parent = GENERATION_FILE.rpartition("/")[0]
    entry = manifest.get(parent)
    return parent if entry is not None and entry.kind == "d" else None


def _finish_tree(
    store: GenerationStore,
    tree: Path,
    generation: str,
    manifest: Manifest,
    deltas: int,
    owned: Callable[[str], bool],
) -> tuple[Delta, ...]:
    """Write the attribute archive, the deltas and the generation file into a built tree, then
    give its etc back the working tree's times (they are not part of the manifest, the
    directory's mtime is). The archive is made first, outside the tree, while every directory
    still has its manifest's times (it records some). A tree without a real etc directory gets
    none of them."""
    etc = _etc(manifest)
    if etc is None:
        return ()
    staged = store.roots / XATTRS_STAGING
    staged.unlink(missing_ok=True)
    held = write_xattrs_archive(tree, manifest, staged, owned)
    written = write_deltas(store, tree / DELTAS_DIR, generation, manifest, keep=deltas)
    if held:
        staged.rename(tree / XATTRS_FILE)
    atomic_write(tree / GENERATION_FILE, f"{generation}\n".encode(), mode=0o644)
    mtime = manifest[etc].mtime_ns
    os.utime(tree / etc, ns=(mtime, mtime), follow_symlinks=False)
    return written


def node_owned(control_dir: str, persistent: Iterable[str] = ()) -> Callable[[str], bool]:
    """Whether a path of a generation may be one that a node keeps as its own and leaves out of
    its sync: a sync exclusion (contract.EXCLUSIONS, the engine's default state and log
    directories) or one of the image's persistent paths, or inside one."""
    values = {"CC_CONTROL_DIR": control_dir}
    values |= {p.key: p.default or "" for p in params("conf.d") if p.key in _NODE_DIRS}
    rows = [path.split("/") for path, contents in exclusions(values, sync=True) if not contents]
    rows += [p.strip("/").split("/") for p in persistent]

    def owned(rel: str) -> bool:
        parts = rel.split("/")
        return any(len(parts) >= len(row) and all(map(fnmatchcase, parts, row)) for row in rows)

    return owned


_NODE_DIRS = ("CC_STATE_DIR", "CC_LOG_DIR")


def xattrs_archive_names(
    manifest: Manifest, owned: Callable[[str], bool] = lambda rel: False
) -> list[str]:
    """What the attribute archive holds, in order: the entries that have extended attributes
    and the directory each of them is in ("." for the root); the names a node may own (`owned`)
    last. Extracting a file replaces it, which moves its directory's mtime on the node; the
    directory's own entry, extracted after its contents, sets it back. Of the names of one
    hard-linked file, tar stores the data with the first and links the others to it: a name a
    node leaves out of its extraction must not be that first one, or the others would be
    linked to the node's own file."""
    names = {rel for rel, entry in manifest.items() if entry.xattrs}
    names |= {rel.rpartition("/")[0] or "." for rel in names}
    return sorted(names, key=lambda rel: (owned(rel), rel))


def write_xattrs_archive(
    tree: Path,
    manifest: Manifest,
    archive: Path | None = None,
    owned: Callable[[str], bool] = lambda rel: False,
) -> int:
    """Write the attribute archive of a built tree (default: tree/XATTRS_FILE) with the entries
    of xattrs_archive_names, each with its attributes, as GNU tar writes them (pax headers:
    --xattrs --xattrs-include='*' --acls, numeric owners, names "./PATH", no recursion).
    Returns how many entries it holds; when none has attributes, no file is written. Raises
    CommandError when tar fails."""
    if not any(entry.xattrs for entry in manifest.values()):
        return 0
    names = xattrs_archive_names(manifest, owned)
    listing = b"".join((b"." if rel == "." else b"./" + os.fsencode(rel)) + b"\0" for rel in names)
    archive = archive or tree / XATTRS_FILE
    run(
        [
            require("tar", "tar"),
            "--create",
            f"--file={archive}",
            f"--directory={tree}",
            "--format=pax",
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "--acls",
            "--sparse",
            "--no-recursion",
            "--null",
            "--verbatim-files-from",
            "--files-from=-",
        ],
        input=listing,
    )
    archive.chmod(0o600)
    return len(names)


def commit_image(
    inv: Inventory, name: str, root_prefix: Path = Path("/"), *, deltas: int = KEEP
) -> CommitResult:
    """Make a new generation of image `name`'s working tree when it changed since the last one
    (commit_tree), keeping images.NAME.keep_generations trees.

    `name` is an image of the inventory, its working tree taken under `root_prefix`; the store is
    PREFIX/STATE_DIR/images/NAME (cluster.state_dir). Raises InvalidInputError for an unknown
    image, ClustcontrolError when its root is not a directory, and what commit_tree raises."""
    tree = image_tree(inv, name, root_prefix)
    store = GenerationStore.for_image(root_prefix, name, inv.cluster.state_dir)
    return commit_tree(
        name,
        tree.root,
        store,
        control_dir=inv.cluster.control_dir,
        keep=inv.images[name].keep_generations,
        deltas=deltas,
        persistent=tuple(inv.images[name].persistent),
    )


def commit_tree(
    name: str,
    root: Path,
    store: GenerationStore,
    *,
    control_dir: str,
    keep: int,
    deltas: int = KEEP,
    persistent: tuple[str, ...] = (),
) -> CommitResult:
    """Make a new generation of the working tree `root` in `store` when it changed since the
    last one: its tree (built in roots/.new, renamed into place), its manifest, the deltas from
    the last `deltas` earlier generations and its generation file inside the tree, then
    roots/current; then remove all but `keep` trees (and manifests older than the deltas need).

    `name` names the image in the result; `control_dir` is cluster.control_dir (left out of the
    generation; its mount point is made in roots/); `persistent` the image's persistent paths
    (the attribute archive orders the names nodes may own last). The store is held under its
    lock while committing. When nothing changed and the current tree exists, nothing is written
    (created is False). Raises ClustcontrolError when a file changes while it is copied, LockedError
    when another commit of the image holds the lock, and OSError when the tree cannot be read
    or the store written."""
    start = time.monotonic()
    with exclusive_lock(store.base / "lock"):
        current = store.current()
        previous = store.manifest(current) if current else {}
        served = current is not None and store.tree(current).is_dir()
        if served:
            now = scan(root, previous, control_dir=control_dir)
            difference = compare(previous, now)
            if difference.empty:
                assert current is not None
                return CommitResult(
                    name, current, current, difference, False, len(now), time.monotonic() - start
                )
        staging = store.roots / STAGING
        remove_tree(staging)
        (store.roots / XATTRS_STAGING).unlink(missing_ok=True)
        (store.roots / control_dir.lstrip("/")).mkdir(parents=True, exist_ok=True)
        manifest, stats = build_tree(
            root,
            staging,
            previous,
            store.tree(current) if served and current else None,
            control_dir=control_dir,
        )
        difference = compare(previous, manifest)
        generation = next_generation(current, content_hash(manifest))
        store.record(generation, manifest)
        owned = node_owned(control_dir, persistent)
        written = _finish_tree(store, staging, generation, manifest, deltas, owned)
        staging.rename(store.tree(generation))
        store.publish(generation)
        pruned = store.prune(keep, max(deltas, 1) + 1)
    seconds = time.monotonic() - start
    return CommitResult(
        name,
        generation,
        current,
        difference,
        True,
        len(manifest),
        seconds,
        written,
        stats,
        tuple(pruned),
    )


def image_status(
    inv: Inventory, name: str, root_prefix: Path = Path("/"), *, usage: bool = False
) -> ImageStatus:
    """Compare the working tree with its last committed manifest by metadata (no file is
    read); with `usage`, measure the space of every kept generation tree too.

    Takes no lock and writes nothing. Raises InvalidInputError for an unknown image,
    ClustcontrolError when its root is not a directory or the last manifest is missing, and
    OSError when the tree cannot be scanned."""
    tree = image_tree(inv, name, root_prefix)
    store = GenerationStore.for_image(root_prefix, name, inv.cluster.state_dir)
    current = store.current()
    uncommitted = None
    if current is not None:
        now = scan(tree.root, hash_files=False, control_dir=inv.cluster.control_dir)
        uncommitted = compare(store.manifest(current), now, by_content=False)
    served = current is not None and store.tree(current).is_dir()
    generations = tuple(store.usage()) if usage else ()
    return ImageStatus(name, tree.image.root, current, served, uncommitted, generations)
