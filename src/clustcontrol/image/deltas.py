"""Generation deltas: the paths a node holding an older generation has to sync.

For each of the last K generations before the one being committed, `image commit` writes
etc/clustcontrol-deltas/FROM into the new generation's tree (UTF-8, LF line ends):

    # clustcontrol-delta 1 FROM TO
    PATH        one per line, relative to the image root, sorted, no duplicates: to copy
    # removed
    PATH        the same: to delete
    # end

The paths to copy are those added or changed since FROM (by content) and the other names of
every hard-linked file among them (rsync -H links only names in its list). The paths to delete
are those removed since FROM, the topmost ones only: a removed path whose parent was removed
too, or is no longer a directory, goes with its parent (the node deletes a removed directory
with its contents; rsync --force replaces a directory that became a file or a symlink, and a
listed child would make rsync follow that symlink). The node passes the paths to copy to
`rsync -aH --files-from=LIST --force` and deletes the others itself: rsync's own
--delete-missing-args fails with "invalid file mode 00" in the rsync of Debian 12 and other
releases with the flist.c hardening of recent security updates (RsyncProject/rsync#910). The
`# end` line tells the node the file is complete. When a path cannot be written in such a list
(a line break, a leading `#` or `;` that rsync reads as a comment, or bytes that are not UTF-8),
or the manifest of FROM cannot be read, there is no file for that FROM: its nodes sync the whole
tree. Every other file in the directory is removed: deltas always lead to the generation being
committed."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

from clustcontrol.contract import DELTA_FORMAT
from clustcontrol.errors import ClustcontrolError
from clustcontrol.fsutil import atomic_write
from clustcontrol.image.generation import (
    Difference,
    GenerationStore,
    Manifest,
    compare,
    differing_entries,
    manifest_lines,
    sequence,
)

KEEP = 8  # deltas from this many earlier generations


@dataclass(frozen=True)
class Delta:
    """The delta from one earlier generation: how many paths it lists (or would), and why it was
    not written (`skipped`)."""

    source: str
    paths: int
    skipped: str | None = None


def delta_paths(
    difference: Difference, new: Manifest, partners: dict[str, list[str]]
) -> tuple[list[str], list[str]]:
    """What a node must copy and delete to get from an older generation to `new`, given the
    difference between them (see the module docstring); `partners` maps each hard-linked name of
    `new` to every name of its inode."""
    copy = set(difference.added) | set(difference.changed)
    for path in (*difference.added, *difference.changed):
        copy.update(partners.get(path, ()))
    delete = [
        path
        for path in difference.removed
        if not (parent := path.rpartition("/")[0]) or (parent in new and new[parent].kind == "d")
    ]
    return sorted(copy), sorted(delete)


def unlistable(path: str) -> str | None:
    """Why path cannot be a line of an rsync --files-from list, or None.

    rsync(1) --files-from reads one name per line and skips lines starting with `#` or `;`;
    `path` is relative to the image root (str; a name that is not UTF-8 holds the surrogate
    escapes os.scandir decodes it with)."""
    if "\n" in path or "\r" in path:
        return f"{path!r} contains a line break"
    if path.startswith(("#", ";")):
        return f"{path!r} starts with {path[0]} (a comment for rsync --files-from)"
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return f"{path!r} is not valid UTF-8"
    return None


def render(source: str, target: str, copy: list[str], delete: list[str]) -> bytes:
    """The delta file from generation `source` to `target`, in the format of the module
    docstring: header, paths to copy, `# removed`, paths to delete, `# end` (UTF-8 bytes).

    The paths must pass `unlistable`; UnicodeEncodeError otherwise."""
    lines = [f"# {DELTA_FORMAT} {source} {target}", *copy, "# removed", *delete]
    return ("\n".join([*lines, "# end"]) + "\n").encode()


def write_deltas(
    store: GenerationStore,
    directory: Path,
    target: str,
    manifest: Manifest,
    *,
    keep: int = KEEP,
    hidden: frozenset[str] = frozenset(),
) -> tuple[Delta, ...]:
    """Write directory/FROM for each of the last `keep` recorded generations before `target`,
    then remove every other file of directory. Old manifests are compared as text lines: only
    the entries that differ are parsed (nothing is read from the tree). The target's secret
    paths (`hidden`, image/secrets.py: not in its tree) are never listed to copy; the node
    installs them apart.

    `manifest` is the new generation's (its `link` fields give the hard-link groups). Returns one
    Delta per earlier generation, oldest first; a generation whose manifest cannot be read or
    whose paths cannot be listed is skipped with the reason, never raised. Raises OSError when
    a delta file cannot be written or a stale one removed."""
    earlier = [g for g in store.recorded() if sequence(g) < sequence(target)]
    sources = earlier[max(len(earlier) - keep, 0) :]
    groups: dict[str, list[str]] = {}
    for entry in manifest.values():
        if entry.link:
            groups.setdefault(entry.link, []).append(entry.path)
    partners = {path: group for group in groups.values() for path in group}
    lines = set(manifest_lines(manifest)) if sources else set()
    deltas: list[Delta] = []
    for source in sources:
        try:
            difference = compare(*differing_entries(store.lines(source), lines))
        except (ClustcontrolError, OSError, EOFError, ValueError, zlib.error) as exc:
            # Deltas only save time: an unreadable old manifest must not block the commit.
            deltas.append(Delta(source, 0, f"its manifest is unreadable ({exc})"))
            continue
        copy, delete = delta_paths(difference, manifest, partners)
        copy = [p for p in copy if p not in hidden]
        reason = next((r for r in map(unlistable, copy + delete) if r is not None), None)
        if reason is None:
            atomic_write(directory / source, render(source, target, copy, delete))
        deltas.append(Delta(source, len(copy) + len(delete), reason))
    written = {d.source for d in deltas if d.skipped is None}
    if directory.is_dir():
        for stale in directory.iterdir():
            if stale.name not in written and not stale.is_dir():
                stale.unlink()
    return tuple(deltas)
