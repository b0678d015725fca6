"""`clustcontrol image commit NAME` and the per-image part of `clustcontrol status`.

A commit turns the working tree (images.NAME.root, which the administrator and the update node
edit) into an immutable generation: a tree under STATE_DIR/images/NAME/roots (image/snapshot.py)
with its manifest, its generation file and its deltas, and its secrets archived apart
(image/secrets.py), published by rewriting roots/current last. Nodes read only generation
trees, never the working tree."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from clustcontrol.contract import (
    DELTAS_DIR,
    DENSE_LIST,
    GENERATION_FILE,
    SECRET_PATTERNS,
    SECRETS_LIST,
    SECRETS_SUFFIX,
    XATTRS_FILE,
    images_state,
)
from clustcontrol.errors import ClustcontrolError, InvalidInputError
from clustcontrol.fsutil import atomic_write, exclusive_lock
from clustcontrol.image import dense
from clustcontrol.image import secrets as secret
from clustcontrol.image.batches import excluded_paths, write_batches
from clustcontrol.image.common import extraction_order, image_tree, write_entries_archive
from clustcontrol.image.deltas import KEEP, Delta, write_deltas
from clustcontrol.image.generation import (
    STAGING,
    XATTRS_STAGING,
    Difference,
    GenerationStore,
    Manifest,
    TreeUsage,
    compare,
    content_hash,
    next_generation,
    scan,
)
from clustcontrol.image.snapshot import TreeStats, build_tree
from clustcontrol.inventory.checks import places, resolved_overlaps
from clustcontrol.inventory.model import Inventory
from clustcontrol.rootdir import RootDir


@dataclass(frozen=True)
class CommitResult:
    """What `image commit` did: the generation now current (SEQ-HASH) and the one before it
    (None on the first commit), the difference between their manifests, whether a generation
    was made (`created`), the number of manifest entries (`files`), the time taken (`seconds`,
    wall clock), the deltas, how the tree was built (`tree`: files linked to the previous
    generation and copied), the generations whose trees were removed (`pruned`) and those
    whose nodes can replay a batch (`batches`)."""

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
    batches: tuple[str, ...] = ()  # the earlier generations with a batch (batches.py)
    secrets: int = 0  # secret paths of the generation (image/secrets.py)
    secrets_archived: int = 0  # of them in its secrets archive (nodes take them)
    tainted: tuple[str, ...] = ()  # trees removed: they held paths now secret
    dense: int = 0  # files listed to stay fully allocated on the nodes (image/dense.py)
    dense_unlisted: tuple[str, ...] = ()  # dense files the list cannot hold (deltas.unlistable)


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
    problem: str | None = None  # why the image could not be looked at (a missing root ...)

    @property
    def warning(self) -> str | None:
        """What the administrator must act on, or None: the image could not be looked at, no
        commit yet, a current generation whose tree is missing, or changes made to the working
        tree since the last commit."""
        if self.problem is not None:
            return f"image {self.image}: {self.problem}"
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


def _previous_manifest(store: GenerationStore, current: str | None, control_dir: str) -> Manifest:
    """The manifest of the current generation; when it is missing or damaged, the one of its
    tree, scanned again (every file read), and recorded; {} when there is neither."""
    if current is None:
        return {}
    try:
        return store.manifest(current)
    except (ClustcontrolError, OSError, EOFError, ValueError, zlib.error):
        tree = store.tree(current)
        if not tree.is_dir():
            return {}
        manifest = scan(tree, control_dir=control_dir)
        store.record(current, manifest)
        return manifest


def check_places_apart(inv: Inventory, root_prefix: Path) -> None:
    """The directories the inventory's checks keep apart by their paths as written (checks.places:
    the state and control directories, the TFTP root, every image root) must be apart where
    they lead under `root_prefix` too, symbolic links followed inside it (RootDir.realpath):
    a link must not put the generation trees into the TFTP tree or a working tree.

    Raises InvalidInputError, one line per overlapping pair (checks.resolved_overlaps);
    UnsafePathError when a path cannot be resolved (a file on the way, a loop)."""
    with RootDir(root_prefix) as tree:
        resolved = {field: tree.realpath(path) for field, path in places(inv).items()}
    problems = resolved_overlaps(inv, resolved, str(root_prefix))
    if problems:
        raise InvalidInputError(
            problems,
            hint="change the link, or the inventory's path, so that neither holds the other",
        )


def _recorded_secrets(store: GenerationStore, generation: str | None) -> frozenset[str]:
    """The secret paths a generation's tree lists (none for a tree committed before secrets
    were kept apart, or no generation)."""
    if generation is None:
        return frozenset()
    return secret.read_list(store.tree(generation) / SECRETS_LIST) or frozenset()


def secret_changes(
    old: Manifest, new: Manifest, recorded: frozenset[str], now: frozenset[str]
) -> tuple[str, ...]:
    """The paths in both manifests whose secret-ness differs between `recorded` (the last
    generation's) and `now`, sorted: each is a change even when its entry is not."""
    return tuple(sorted(p for p in recorded ^ now if p in old and p in new))


def _with_changed(difference: Difference, extra: Iterable[str]) -> Difference:
    changed = tuple(sorted(set(difference.changed) | set(extra)))
    return replace(difference, changed=changed)


def _remove_tainted(
    store: GenerationStore, keep: str, patterns: tuple[str, ...], control_dir: str
) -> tuple[str, ...]:
    """Remove every kept tree but `keep` that holds a path secret under `patterns` (its manifest,
    else its tree, says so) that its list does not name: committed before secrets were kept
    apart, or before a pattern was added, it serves that file (maybe in its batches or
    attribute archive too). Returns their generations. Raises OSError."""
    tainted = []
    for generation in store.trees():
        if generation == keep:
            continue
        try:
            manifest = store.manifest(generation)
        except ClustcontrolError:
            manifest = scan(store.tree(generation), hash_files=False, control_dir=control_dir)
        now = secret.secret_paths(manifest, patterns)
        if not now <= _recorded_secrets(store, generation):
            store.discard(store.tree(generation))
            tainted.append(generation)
    return tuple(tainted)


def _check_apart(root: Path, store: GenerationStore) -> None:
    """The working tree and the store must not contain each other once symlinks are resolved
    (the inventory checks compare the paths as written): a commit would copy its own output.
    Raises ClustcontrolError."""
    tree, base = root.resolve(), store.base.resolve()
    if tree == base or tree in base.parents or base in tree.parents:
        raise ClustcontrolError(
            f"the working tree {root} ({tree}) and the generation store {store.base} ({base}) "
            "overlap",
            hint="move cluster.state_dir or the image root so that neither holds the other",
        )


def syncfs(path: Path) -> None:
    """Flush the file system holding path to disk (syncfs(2)): a whole generation tree at once,
    not every file system of the master (sync(2)). Raises OSError when it fails."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)


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
    excluded: re.Pattern[str],
    hidden: frozenset[str],
    dense_files: dict[str, int],
) -> tuple[tuple[Delta, ...], tuple[str, ...]]:
    """Write the extended attributes' archive, the deltas, the list of secret paths, the list of
    dense files (`dense_files`, image/dense.py) and the generation file into a built tree, give its
    etc back the working tree's times (they are not part of the manifest, the directory's mtime
    is), then the batches (batches.py: they replay the finished tree). The archive is made
    first, outside the tree (roots/XATTRS_STAGING), while every directory still has its
    manifest's times (it records some). The secret paths (`hidden`, not in the tree) are in none
    of them but their list. A tree without a real etc directory gets none of them (nor secrets:
    commit_tree refuses those). Returns the deltas and the sources of the batches."""
    etc = _etc(manifest)
    if etc is None:
        return (), ()
    served = {rel: entry for rel, entry in manifest.items() if rel not in hidden}
    staged = store.roots / XATTRS_STAGING
    staged.unlink(missing_ok=True)
    held = write_xattrs_archive(
        tree, served, staged, owned=lambda rel: excluded.fullmatch(rel) is not None
    )
    written = write_deltas(
        store, tree / DELTAS_DIR, generation, manifest, keep=deltas, hidden=hidden
    )
    if held:
        staged.rename(tree / XATTRS_FILE)
    secret.write_list(tree / SECRETS_LIST, generation, hidden)
    dense.write_list(tree / DENSE_LIST, generation, dense_files)
    atomic_write(tree / GENERATION_FILE, f"{generation}\n".encode(), mode=0o644)
    mtime = manifest[etc].mtime_ns
    os.utime(tree / etc, ns=(mtime, mtime), follow_symlinks=False)
    # A batch from the previous generation only: most nodes are one behind, and each batch
    # holds about the changed data again (compressed).
    sources = [d.source for d in written if d.skipped is None][-1:]
    return written, write_batches(store, tree, manifest, sources, excluded)


def xattrs_archive_names(
    manifest: Manifest, owned: Callable[[str], bool] = lambda rel: False
) -> list[str]:
    """What the attribute archive holds, in order: the entries that have extended attributes
    and the directory each of them is in ("." for the root), in common.extraction_order; then
    the names a node leaves out of its sync (`owned`: batches.excluded_paths) with their
    directories again, in the same order. Extracting a file replaces it, which moves its
    directory's mtime on the node; the directory's entry after it sets it back (GNU tar sets a
    directory's times once everything in it is extracted). Of the names of one hard-linked
    file, tar stores the data with the first and links the others to it: a name a node leaves
    out of its extraction must not be that first one, or the others would be linked to the
    node's own file."""

    def with_dirs(names: set[str]) -> list[str]:
        parents = {rel.rpartition("/")[0] or "." for rel in names}
        dirs = {p for p in parents if p == "." or (p in manifest and manifest[p].kind == "d")}
        return extraction_order(names | dirs)

    names = {rel for rel, entry in manifest.items() if entry.xattrs}
    theirs = {rel for rel in names if owned(rel)}
    return with_dirs(names - theirs) + (with_dirs(theirs) if theirs else [])


def write_xattrs_archive(
    tree: Path,
    manifest: Manifest,
    archive: Path | None = None,
    owned: Callable[[str], bool] = lambda rel: False,
) -> int:
    """Write the attribute archive of a built tree (default: tree/XATTRS_FILE) with the entries
    of xattrs_archive_names, each with its attributes, as GNU tar writes them (pax headers:
    --xattrs --xattrs-include='*' --acls, numeric owners, names "./PATH", no recursion).
    Returns how many entries it holds; when none has extended attributes, no file is written.
    Raises CommandError when tar fails."""
    if not any(entry.xattrs for entry in manifest.values()):
        return 0
    names = xattrs_archive_names(manifest, owned)
    write_entries_archive(tree, names, archive or tree / XATTRS_FILE)
    return len(names)


def private_images_dir(inv: Inventory, root_prefix: Path = Path("/")) -> Path:
    """Create STATE_DIR/images (cluster.state_dir, links followed inside the prefix) when
    missing and make it 0700 whatever it was, so that no local user of the master reaches any
    image's store (GenerationStore.make_private says why). Returns it. Raises UnsafePathError
    when a component is not a directory or links loop, OSError."""
    with RootDir(root_prefix) as tree:
        where = tree.realpath(images_state(inv.cluster.state_dir))
    images = root_prefix / where.lstrip("/")
    images.mkdir(mode=0o700, parents=True, exist_ok=True)
    images.chmod(0o700)
    return images


def commit_image(
    inv: Inventory, name: str, root_prefix: Path = Path("/"), *, deltas: int = KEEP
) -> CommitResult:
    """Make a new generation of image `name`'s working tree when it changed since the last one
    (commit_tree), keeping images.NAME.keep_generations trees.

    `name` is an image of the inventory, its working tree taken under `root_prefix`; the store is
    PREFIX/STATE_DIR/images/NAME (cluster.state_dir), links followed inside the prefix; it and
    STATE_DIR/images are made 0700 (private_images_dir, GenerationStore.make_private). Raises
    InvalidInputError for an unknown image or for places that overlap once links are followed
    (check_places_apart), ClustcontrolError when its root is not a directory, and what
    commit_tree raises."""
    tree = image_tree(inv, name, root_prefix)
    check_places_apart(inv, root_prefix)
    store = GenerationStore.for_image(root_prefix, name, inv.cluster.state_dir)
    private_images_dir(inv, root_prefix)
    image = inv.images[name]
    layout = inv.disk_layouts.get(image.disk_layout)
    mounts = [p.mount for p in (layout.partitions if layout else ()) if p.use == "data" and p.mount]
    return commit_tree(
        name,
        tree.root,
        store,
        control_dir=inv.cluster.control_dir,
        keep=image.keep_generations,
        deltas=deltas,
        node_excluded=(*image.persistent, *mounts),
        secrets=inv.secrets_of(name),
    )


def commit_tree(
    name: str,
    root: Path,
    store: GenerationStore,
    *,
    control_dir: str,
    keep: int,
    deltas: int = KEEP,
    node_excluded: tuple[str, ...] = (),
    secrets: tuple[str, ...] = SECRET_PATTERNS,
) -> CommitResult:
    """Make a new generation of the working tree `root` in `store` when it changed since the
    last one: its tree (built in roots/.new, renamed into place), its manifest, the deltas from
    the last `deltas` earlier generations and its generation file inside the tree, its secrets
    archive (secrets/SEQ-HASH.tar: the files matching `secrets`, relative patterns, default the
    contract's; image/secrets.py), then roots/current; then remove all but `keep` trees (and
    manifests older than the deltas need), and every tree that holds a file now secret.
    A change of which paths are secret alone makes a new generation too. The store is made
    0700 and its manifests 0600 first (GenerationStore.make_private), an existing one too.

    `name` names the image in the result; `control_dir` is cluster.control_dir (left out of the
    generation; its mount point is made in roots/); `node_excluded` the absolute paths the
    image's nodes leave alone besides the contract's exclusions (persistent paths, data
    partition mount points: batches.py lists paths as those nodes do). The store is held under
    its lock while committing. When nothing changed and the current tree exists, nothing is
    written (created is False). Raises ClustcontrolError when a file changes while it is
    copied or a secret path cannot be listed for the nodes (secrets.unprotectable), or the tree
    has secrets but no etc directory for their list, LockedError when another commit of the
    image holds the lock, CommandError when tar or rsync fails, and OSError when the tree
    cannot be read or the store written."""
    start = time.monotonic()
    _check_apart(root, store)
    store.make_private()
    with exclusive_lock(store.base / "lock"):
        current = store.current()
        previous = _previous_manifest(store, current, control_dir)
        served = current is not None and store.tree(current).is_dir()
        recorded = _recorded_secrets(store, current)
        if served:
            now = scan(root, previous, control_dir=control_dir)
            difference = compare(previous, now)
            moved = secret_changes(previous, now, recorded, secret.secret_paths(now, secrets))
            if difference.empty and not moved:
                assert current is not None
                if any(now[p].ctime_ns != previous[p].ctime_ns for p in now):
                    # Rewritten with the same bytes (a reinstalled package, chmod to the same
                    # mode): the content is the generation's; the manifest keeps the new ctimes
                    # so that `status` stops reporting them.
                    store.record(current, now)
                return CommitResult(
                    name, current, current, difference, False, len(now), time.monotonic() - start
                )
        store.make_secrets_dir()
        store.tidy()  # what an interrupted commit left
        staging = store.roots / STAGING
        secrets_staging = store.secrets / STAGING
        (store.roots / control_dir.lstrip("/")).mkdir(parents=True, exist_ok=True)
        built = build_tree(
            root,
            staging,
            previous,
            store.tree(current) if served and current else None,
            control_dir=control_dir,
            secrets=secrets,
            secrets_dest=secrets_staging,
            previous_dense=dense.read_list(store.tree(current) / DENSE_LIST) if current else None,
        )
        manifest, stats, hidden = built.manifest, built.stats, built.hidden
        secret.check_protectable(name, hidden)
        if hidden and _etc(manifest) is None:
            raise ClustcontrolError(
                f"image {name}: the working tree has secrets but no etc directory for their "
                f"list ({SECRETS_LIST})",
                hint="nodes could not keep them; make etc a directory of the standard",
            )
        difference = _with_changed(
            compare(previous, manifest), secret_changes(previous, manifest, recorded, hidden)
        )
        generation = next_generation(current, content_hash(manifest, hidden))
        store.record(generation, manifest)
        excluded = excluded_paths(control_dir, node_excluded)
        listed = dense.listable(built.dense)
        written, batched = _finish_tree(
            store, staging, generation, manifest, deltas, excluded, hidden, listed
        )
        # No node takes the paths of the contract's exclusions (the SSH host keys): not archived.
        never = excluded_paths(control_dir, ())
        archived = [p for p in hidden if not never.fullmatch(p)]
        staged_archive = store.secrets / f"{STAGING}{SECRETS_SUFFIX}"
        if archived:
            secret.write_archive(secrets_staging, archived, staged_archive)
        shutil.rmtree(secrets_staging)
        syncfs(staging)  # the tree and its secrets are on disk before any node is told
        staging.rename(store.tree(generation))
        if archived:
            staged_archive.rename(store.secrets_archive(generation))
        store.publish(generation)
        pruned = store.prune(keep, max(deltas, 1) + 1)
        tainted = _remove_tainted(store, generation, secrets, control_dir)
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
        batched,
        len(hidden),
        len(archived),
        tainted,
        len(listed),
        tuple(sorted(built.dense.keys() - listed.keys())),
    )


def image_status(
    inv: Inventory, name: str, root_prefix: Path = Path("/"), *, usage: bool = False
) -> ImageStatus:
    """Compare the working tree with its last committed manifest by metadata (no file is
    read), and which paths are secret (images.NAME.secrets) with the last generation's list;
    with `usage`, measure the space of every kept generation tree too.

    Takes no lock and writes nothing. Raises InvalidInputError for an unknown image,
    ClustcontrolError when its root is not a directory or the last manifest is missing, and
    OSError when the tree cannot be scanned."""
    tree = image_tree(inv, name, root_prefix)
    store = GenerationStore.for_image(root_prefix, name, inv.cluster.state_dir)
    current = store.current()
    uncommitted = None
    if current is not None:
        now = scan(tree.root, hash_files=False, control_dir=inv.cluster.control_dir)
        committed = store.manifest(current)
        moved = secret_changes(
            committed,
            now,
            _recorded_secrets(store, current),
            secret.secret_paths(now, inv.secrets_of(name)),
        )
        uncommitted = _with_changed(compare(committed, now, by_content=False), moved)
    served = current is not None and store.tree(current).is_dir()
    generations = tuple(store.usage()) if usage else ()
    return ImageStatus(name, tree.image.root, current, served, uncommitted, generations)
