"""Secrets: the files of a standard that no served tree holds.

A generation's *secret paths* are its non-directory entries that match one of the image's
secret patterns (contract.SECRETS, then images.NAME.secrets: paths relative to the root, `*`
within one name), or lie below a directory that does, what the symbolic links among them lead
to inside the tree (select), and every other name of a hard-linked file among them (its
content must not be served under another name). `image commit`:

- keeps them in the manifest (a change of /etc/shadow alone is a new generation; `status` sees
  it), but writes them into a staging tree beside the store's secrets archives instead of the
  served generation tree (snapshot.build_tree), so nothing under roots/ ever holds them, not
  even while a commit runs;
- lists them in the generation's tree (contract.SECRETS_LIST): the node protects these paths
  from its sync's deletions;
- leaves them out of the deltas, batches and the attribute archive;
- archives them, the directories they are in included, with GNU tar (pax: numeric owners,
  modes, nanosecond times, extended attributes and ACLs) as STATE_DIR/images/NAME/secrets/
  SEQ-HASH.tar, mode 0600 in a 0700 directory, which the master exports over NFS read-only
  with `secure` (a privileged source port: root on the client) to the addresses of the image's
  nodes alone (render/nfs.py); neither the rsync daemon nor any other export serves it.

Paths the contract's exclusions cover (the SSH host keys: a node makes its own) are secret,
so never served, and not archived either: no node ever takes them."""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from functools import cached_property
from pathlib import Path

from clustcontrol.contract import SECRETS_FORMAT
from clustcontrol.errors import ClustcontrolError
from clustcontrol.fsutil import atomic_write, read_bytes_or_none
from clustcontrol.image.common import extraction_order, write_entries_archive
from clustcontrol.image.generation import Manifest
from clustcontrol.rootdir import MAX_SYMLINKS

# rsync's filter rules treat these as wildcards in a pattern (rsync(1), PATTERN MATCHING RULES).
_WILDCARDS = re.compile(r"[*?\[\\]")


def matches(rel: str, patterns: Iterable[str]) -> bool:
    """Whether `rel` (relative to the root) or one of its parent directories matches one of
    `patterns` (relative, `*` matches within one name: fnmatch on each component)."""
    parts = rel.split("/")
    for pattern in patterns:
        wanted = pattern.split("/")
        if len(wanted) <= len(parts) and all(
            fnmatchcase(part, want) for part, want in zip(parts, wanted, strict=False)
        ):
            return True
    return False


def select(
    entries: Iterable[tuple[str, bool]],
    groups: Iterable[Iterable[str]],
    patterns: Iterable[str],
    links: Mapping[str, str] | None = None,
) -> frozenset[str]:
    """The secret paths among `entries` ((relative path, is a directory) pairs; see the module
    docstring): the non-directories that match `patterns` or lie below a match, what the
    symbolic links among them lead to, and every name of a hard-link group (`groups`: the
    names of each inode) that has one of them.

    `links` maps each symbolic link's path to its target (readlink). A secret's file is what a
    node reads at the secret's path, so the links are followed inside the tree as the image's
    nodes see it (an absolute target starts at the root, '..' stops there; LinkedTree): a
    pattern is matched through the links on its way too (etc/munge -> /srv/munge makes
    srv/munge/munge.key secret for etc/munge/munge.key), and what a secret link leads to is
    secret: the file, or every non-directory below the directory (etc/munge/munge.key ->
    keys/2024.key makes etc/munge/keys/2024.key secret; certbot's live/NAME/privkey.pem ->
    ../../archive/NAME/privkey1.pem). A link that leads nowhere in the tree hides nothing."""
    kinds = dict(entries)
    patterns = tuple(patterns)
    found = {rel for rel, is_dir in kinds.items() if not is_dir and matches(rel, patterns)}
    if links:
        tree = LinkedTree(kinds, links)
        for pattern in patterns:
            for rel in tree.glob(pattern):
                found |= tree.files_at(rel)
        pending = [rel for rel in found if rel in links]
        while pending:
            real = tree.resolve(pending.pop())
            if real is not None:
                new = tree.files_at(real) - found
                found |= new
                pending += [rel for rel in new if rel in links]
    for group in groups:
        names = list(group)
        if found.intersection(names):
            found.update(names)
    return frozenset(found)


class LinkedTree:
    """A tree's entries and its symbolic links, resolved as the image's nodes see them: as if
    the tree were `/` (chroot(2)), every link followed (path_resolution(7): an absolute target
    starts again at the root, '..' never climbs above it, at most MAX_SYMLINKS links).

    `kinds` maps every entry's relative path to whether it is a directory, `links` each
    symbolic link's path to its target."""

    def __init__(self, kinds: Mapping[str, bool], links: Mapping[str, str]) -> None:
        self.kinds = kinds
        self.links = links

    @cached_property
    def _sorted(self) -> list[str]:
        """Every entry, sorted: what is below a directory is one slice of it (made when a
        wildcard or a directory asks for it)."""
        return sorted(self.kinds)

    def is_dir(self, rel: str) -> bool:
        """Whether rel (resolved) is a directory; "" is the root."""
        return rel == "" or self.kinds.get(rel, False)

    def resolve(self, rel: str) -> str | None:
        """Where rel leads in the tree (every link on the way and at its end followed), ""
        for the root; None when it leads to nothing the tree holds, through a file, or loops."""
        parts = rel.split("/")[::-1]
        current: list[str] = []
        hops = 0
        while parts:
            part = parts.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if current:
                    current.pop()
                continue
            path = "/".join([*current, part])
            target = self.links.get(path)
            if target is not None:
                hops += 1
                if hops > MAX_SYMLINKS:
                    return None
                if target.startswith("/"):
                    current = []
                parts.extend(target.split("/")[::-1])
                continue
            if path not in self.kinds or (parts and not self.kinds[path]):
                return None
            current.append(part)
        return "/".join(current)

    def _below(self, directory: str) -> list[str]:
        """Every entry below a directory (all of them for the root)."""
        if directory == "":
            return self._sorted
        start = bisect_left(self._sorted, directory + "/")
        stop = bisect_left(self._sorted, directory + "0")  # "0" follows "/"
        return self._sorted[start:stop]

    def children(self, directory: str, pattern: str) -> list[str]:
        """The names in a (resolved) directory that match one component of a secret pattern
        (fnmatch, `*` within the name)."""
        if "*" not in pattern:
            rel = f"{directory}/{pattern}" if directory else pattern
            return [pattern] if rel in self.kinds else []
        depth = directory.count("/") + 1 if directory else 0
        names = (rel.split("/")[depth] for rel in self._below(directory))
        return sorted({name for name in names if fnmatchcase(name, pattern)})

    def glob(self, pattern: str) -> set[str]:
        """What a secret pattern reaches, links followed on its way: the entries its last
        component matches (a link itself, and where it leads)."""
        frontier = {""}
        reached: set[str] = set()
        parts = pattern.split("/")
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            following: set[str] = set()
            for directory in frontier:
                for name in self.children(directory, part):
                    rel = f"{directory}/{name}" if directory else name
                    real = self.resolve(rel)
                    if last:
                        reached.add(rel)
                        if real is not None:
                            reached.add(real)
                    elif real is not None and self.is_dir(real):
                        following.add(real)
            frontier = following
        return reached

    def files_at(self, rel: str) -> set[str]:
        """The non-directories an entry is: itself, or for a directory every one below it."""
        if not self.is_dir(rel):
            return {rel}
        return {path for path in self._below(rel) if not self.kinds[path]}


def secret_paths(manifest: Manifest, patterns: Iterable[str]) -> frozenset[str]:
    """The secret paths of a manifest (select; hard-link groups from Entry.link, the links'
    targets from their Entry.digest)."""
    groups: dict[str, list[str]] = {}
    for rel, entry in manifest.items():
        if entry.link:
            groups.setdefault(entry.link, []).append(rel)
    entries = ((rel, entry.kind == "d") for rel, entry in manifest.items())
    links = {rel: entry.digest for rel, entry in manifest.items() if entry.kind == "l"}
    return select(entries, groups.values(), patterns, links)


def unprotectable(path: str) -> str | None:
    """Why a secret path cannot be named in the node's rsync filter and in the list, or None:
    a line break (the list holds one path a line), a leading `#` (its comments), or one of
    rsync's wildcard characters `*?[\\` (a pattern holding them is matched as a wildcard)."""
    if "\n" in path or "\r" in path:
        return f"{path!r} contains a line break"
    if path.startswith("#"):
        return f"{path!r} starts with #"
    if _WILDCARDS.search(path):
        return f"{path!r} contains one of rsync's wildcard characters *?[\\"
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return f"{path!r} is not valid UTF-8"
    return None


def check_protectable(image: str, paths: Iterable[str]) -> None:
    """Refuse a generation whose secret paths cannot be listed for the node (unprotectable):
    its file would be deleted by every node's sync. Raises ClustcontrolError naming the first."""
    for path in sorted(paths):
        reason = unprotectable(path)
        if reason is not None:
            raise ClustcontrolError(
                f"image {image}: the secret path {reason}; nodes could not keep it",
                hint="rename the file in the working tree, then commit again",
            )


def render_list(generation: str, paths: Iterable[str]) -> bytes:
    """The SECRETS_LIST file: "# SECRETS_FORMAT GENERATION", the paths sorted, "# end"."""
    lines = [f"# {SECRETS_FORMAT} {generation}", *sorted(paths), "# end"]
    return ("\n".join(lines) + "\n").encode()


def write_list(path: Path, generation: str, paths: Iterable[str]) -> None:
    """Write the SECRETS_LIST file of `generation` at `path` (atomic, mode 0644)."""
    atomic_write(path, render_list(generation, paths), mode=0o644)


def read_list(path: Path) -> frozenset[str] | None:
    """The secret paths a tree's SECRETS_LIST names; None when it has none or an unreadable one
    (a tree committed before secrets were kept apart: it may hold them)."""
    data = read_bytes_or_none(path)
    if data is None:
        return None
    lines = data.decode("utf-8", "surrogateescape").split("\n")
    complete = lines[-2:] == ["# end", ""]
    if len(lines) < 3 or not complete or not lines[0].startswith(f"# {SECRETS_FORMAT} "):
        return None
    return frozenset(lines[1:-2])


def parent_dirs(paths: Iterable[str]) -> frozenset[str]:
    """The directories (relative, the root left out) the paths are in, every ancestor once."""
    dirs: set[str] = set()
    for rel in paths:
        parts = rel.split("/")[:-1]
        dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return frozenset(dirs)


def archive_names(paths: Iterable[str]) -> list[str]:
    """What a secrets archive holds: the root ("."), the directories the paths are in and the
    paths, in common.extraction_order. Extracted on the node, each directory gets the
    generation's owner, mode and times back after its files are installed."""
    paths = set(paths)
    return extraction_order({".", *parent_dirs(paths), *paths})


def write_archive(tree: Path, paths: Iterable[str], archive: Path) -> None:
    """Archive the secret `paths` of the staging tree `tree` (its directories hold the
    generation's metadata) into `archive` (0600, replaced if it exists; in the 0700 secrets
    directory) with archive_names (common.write_entries_archive). Raises CommandError when tar
    fails."""
    archive.unlink(missing_ok=True)
    write_entries_archive(tree, archive_names(paths), archive)
