"""Image generations: a manifest of a standard root and the id nodes compare at boot.

`clustcontrol image commit NAME` scans the standard (path, type, mode, owner, size, mtime,
content hash; a file whose size, mtime and ctime are those of the last manifest keeps its hash
unread), and when anything changed records a new generation:

    /var/lib/clustcontrol/images/NAME/generations/SEQ-HASH.manifest.gz   the manifest
    /var/lib/clustcontrol/images/NAME/current                            SEQ-HASH
    IMAGE_ROOT/etc/clustcontrol-generation                               SEQ-HASH (read by nodes)
    IMAGE_ROOT/etc/clustcontrol-deltas/FROM      what changed since FROM (see deltas.py)

A node that already holds that generation skips the transfer at boot. Changes made to the
standard after the last commit are invisible to such nodes until the next commit, so
`clustcontrol status` compares the standard with its manifest and warns about them."""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from clustcontrol.contract import CONTROL_DIR, DELTAS_DIR, GENERATION_FILE, exclusions
from clustcontrol.errors import ClustcontrolError
from clustcontrol.fsutil import atomic_write, read_bytes_or_none

STATE_DIR = "/var/lib/clustcontrol/images"

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Entry:
    """One path of the standard. `digest` is the sha256 of a regular file, a symlink's target,
    or empty. `ctime_ns` only decides whether to re-hash; it is not part of the content."""

    path: str
    kind: str  # f d l c b p s
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    digest: str
    ctime_ns: int = 0

    def content(self) -> tuple[str, str, int, int, int, int, int, str]:
        """What the generation's identity depends on: (path, kind, mode, uid, gid, size,
        mtime_ns, digest). Size counts for regular files only (0 otherwise), mtime for
        everything but directories (0 for them); ctime_ns is left out."""
        size = self.size if self.kind == "f" else 0
        mtime = self.mtime_ns if self.kind != "d" else 0
        return (self.path, self.kind, self.mode, self.uid, self.gid, size, mtime, self.digest)


Manifest = dict[str, Entry]
# (st_dev, st_ino) -> the paths of a tree that name that regular file (hard links).
InodeGroups = dict[tuple[int, int], list[str]]


def _kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISREG, "f"),
        (stat.S_ISDIR, "d"),
        (stat.S_ISLNK, "l"),
        (stat.S_ISCHR, "c"),
        (stat.S_ISBLK, "b"),
        (stat.S_ISFIFO, "p"),
    ):
        if test(mode):
            return kind
    return "s"


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:  # noqa: PTH123 - hot path, plain str paths
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


__all__ = ["DELTAS_DIR", "GENERATION_FILE"]


def manifest_exclusions(control_dir: str = CONTROL_DIR) -> tuple[frozenset[str], frozenset[str]]:
    """What a manifest leaves out (contract.EXCLUSIONS with `manifest`): pseudo and scratch file
    systems (their directories are kept, not their contents), the bind-mounted control
    directory, the generation deltas, lost+found and the generation file (which nodes copy).

    Args:
        control_dir: cluster.control_dir, an absolute path.
    Returns:
        (paths left out, directories whose contents are left out), relative to the root."""
    rows = list(exclusions({"CC_CONTROL_DIR": control_dir}, manifest=True))
    return (
        frozenset(p for p, contents in rows if not contents),
        frozenset(p for p, contents in rows if contents),
    )


def _walk(root: str, control_dir: str) -> Iterator[tuple[str, os.stat_result, str]]:
    """(relative path, lstat, absolute path) of everything under root, on root's file system."""
    path_excluded, content_excluded = manifest_exclusions(control_dir)
    device = Path(root).stat().st_dev  # the root itself may be reached through a symlink
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        abs_dir = os.path.join(root, rel_dir) if rel_dir else root  # noqa: PTH118 - hot path
        with os.scandir(abs_dir) as entries:
            for entry in entries:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                if rel in path_excluded:
                    continue
                st = entry.stat(follow_symlinks=False)
                yield rel, st, entry.path
                if stat.S_ISDIR(st.st_mode) and st.st_dev == device and rel not in content_excluded:
                    stack.append(rel)


def scan(
    root: Path,
    previous: Manifest | None = None,
    hash_files: bool = True,
    *,
    links: InodeGroups | None = None,
    control_dir: str = CONTROL_DIR,
) -> Manifest:
    """The manifest of root; regular files unchanged since `previous` keep their digest.

    With `links`, every regular file with more than one link is added to its inode's group
    (names whose other links lie outside the scanned tree make groups of one)."""
    previous = previous or {}
    manifest: Manifest = {}
    for rel, st, path in _walk(str(root), control_dir):
        kind = _kind(st.st_mode)
        if links is not None and kind == "f" and st.st_nlink > 1:
            links.setdefault((st.st_dev, st.st_ino), []).append(rel)
        digest = ""
        if kind == "l":
            digest = os.readlink(path)  # noqa: PTH115 - hot path, plain str paths
        elif kind == "f" and hash_files:
            old = previous.get(rel)
            same = (
                old is not None
                and old.kind == "f"
                and (old.size, old.mtime_ns, old.ctime_ns)
                == (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            )
            digest = old.digest if same and old is not None else _sha256(path)
        manifest[rel] = Entry(
            rel,
            kind,
            stat.S_IMODE(st.st_mode),
            st.st_uid,
            st.st_gid,
            st.st_size,
            st.st_mtime_ns,
            digest,
            st.st_ctime_ns,
        )
    return manifest


def content_hash(manifest: Manifest) -> str:
    """The sha256 (64 lower-case hex digits) of a manifest's content: each entry's content()
    in path order, so equal content gives equal hashes whatever the ctimes. The HASH part of a
    generation id SEQ-HASH is its first 12 digits (next_generation)."""
    digest = hashlib.sha256()
    for rel in sorted(manifest):
        digest.update(repr(manifest[rel].content()).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _plain(text: str) -> bool:
    """Whether text is its own escape (printable ASCII without a backslash): most paths."""
    return text.isascii() and text.isprintable() and "\\" not in text


def _escape(path: str) -> str:
    if _plain(path):
        return path
    return (
        path.encode("utf-8", "surrogateescape")
        .decode("latin-1")
        .encode("unicode_escape")
        .decode("ascii")
    )


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    return (
        text.encode("ascii")
        .decode("unicode_escape")
        .encode("latin-1")
        .decode("utf-8", "surrogateescape")
    )


def manifest_lines(manifest: Manifest) -> list[str]:
    """The manifest as text lines (sorted by path): equal lines are equal entries."""
    return [
        "\t".join(
            (
                _escape(e.path),
                e.kind,
                f"{e.mode:o}",
                str(e.uid),
                str(e.gid),
                str(e.size),
                str(e.mtime_ns),
                _escape(e.digest),
                str(e.ctime_ns),
            )
        )
        for e in (manifest[rel] for rel in sorted(manifest))
    ]


def parse_lines(lines: Iterable[str]) -> Manifest:
    """The manifest written as manifest_lines: nine tab-separated fields per line (path, kind,
    octal mode, uid, gid, size in bytes, mtime_ns, digest, ctime_ns), path and digest
    unescaped. Raises ValueError on a line without exactly nine fields (an empty line
    included) or with a number that does not parse."""
    manifest: Manifest = {}
    for line in lines:
        path, kind, mode, uid, gid, size, mtime, digest, ctime = line.split("\t")
        entry = Entry(
            _unescape(path),
            kind,
            int(mode, 8),
            int(uid),
            int(gid),
            int(size),
            int(mtime),
            _unescape(digest),
            int(ctime),
        )
        manifest[entry.path] = entry
    return manifest


def serialize(manifest: Manifest) -> bytes:
    """The manifest file's bytes: manifest_lines, each ending with a newline, gzip-compressed
    (level 6, header mtime 0, so equal manifests give equal bytes)."""
    text = "\n".join(manifest_lines(manifest)) + "\n"
    return gzip.compress(text.encode(), compresslevel=6, mtime=0)


def _text_lines(data: bytes) -> list[str]:
    return gzip.decompress(data).decode().splitlines()


def deserialize(data: bytes) -> Manifest:
    """The manifest stored as serialize wrote it. Raises gzip.BadGzipFile (an OSError),
    EOFError or zlib.error when data is not an intact gzip stream, and ValueError when the text
    is not UTF-8 (UnicodeDecodeError) or a line does not parse (see parse_lines)."""
    return parse_lines(_text_lines(data))


@dataclass(frozen=True)
class Difference:
    """What compare() found between two manifests: paths (relative to the root, each tuple
    sorted) only in the new one, only in the old one, and in both with different entries."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]

    @property
    def empty(self) -> bool:
        """True when nothing was added, removed or changed."""
        return not (self.added or self.removed or self.changed)

    def summary(self) -> str:
        """The counts for the user, e.g. "1 added, 0 changed, 2 removed"."""
        return f"{len(self.added)} added, {len(self.changed)} changed, {len(self.removed)} removed"


def compare(old: Manifest, new: Manifest, *, by_content: bool = True) -> Difference:
    """Paths added, removed and changed; without by_content, files compare by metadata only
    (what `status` can see without reading every file), ctime included: a content change that
    kept size and mtime still moves ctime."""

    def key(entry: Entry) -> tuple[object, ...]:
        content = entry.content()
        if by_content:
            return content
        ctime = entry.ctime_ns if entry.kind == "f" else 0
        return (*content[:-1], entry.digest if entry.kind == "l" else "", ctime)

    added = tuple(sorted(new.keys() - old.keys()))
    removed = tuple(sorted(old.keys() - new.keys()))
    changed = tuple(sorted(p for p in old.keys() & new.keys() if key(old[p]) != key(new[p])))
    return Difference(added, removed, changed)


def differing_entries(old: set[str], new: set[str]) -> tuple[Manifest, Manifest]:
    """The entries of two manifests (as manifest_lines) whose lines differ. compare() of these
    gives the difference of the whole manifests, without parsing the unchanged bulk."""
    return parse_lines(old - new), parse_lines(new - old)


@dataclass(frozen=True)
class GenerationStore:
    """Where the master keeps an image's manifests (under an installation prefix)."""

    base: Path

    @classmethod
    def for_image(cls, prefix: Path, name: str) -> GenerationStore:
        """The store of image `name`: PREFIX/var/lib/clustcontrol/images/NAME (STATE_DIR under
        the installation prefix, "/" on a real master). Nothing is checked on disk."""
        return cls(prefix / STATE_DIR.lstrip("/") / name)

    def current(self) -> str | None:
        """The last recorded generation id (SEQ-HASH, from the file `current`), or None when
        none was recorded yet (no file, or an empty one). Raises OSError when the file exists
        but cannot be read."""
        data = read_bytes_or_none(self.base / "current")
        return data.decode().strip() or None if data is not None else None

    def _read(self, generation: str) -> bytes:
        data = read_bytes_or_none(self.base / "generations" / f"{generation}.manifest.gz")
        if data is None:
            raise ClustcontrolError(
                f"{self.base}: the manifest of generation {generation} is missing",
                hint="run clustcontrol image commit again to record a new generation",
            )
        return data

    def manifest(self, generation: str) -> Manifest:
        """The recorded manifest of `generation` (generations/GENERATION.manifest.gz).

        Raises ClustcontrolError when that file is missing, and what deserialize raises when
        it is damaged."""
        return deserialize(self._read(generation))

    def lines(self, generation: str) -> set[str]:
        """The manifest's lines, unparsed (see differing_entries)."""
        return set(_text_lines(self._read(generation)))

    def recorded(self) -> list[str]:
        """Every generation that has a manifest, by sequence number (oldest first)."""
        suffix = ".manifest.gz"
        try:
            names = [path.name for path in (self.base / "generations").iterdir()]
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            generation = name.removesuffix(suffix)
            if generation != name and generation.partition("-")[0].isdigit():
                found.append((sequence(generation), generation))
        return [generation for _seq, generation in sorted(found)]

    def record(self, generation: str, manifest: Manifest) -> None:
        """Store `manifest` as generations/GENERATION.manifest.gz, then make `generation` the
        current one; each file is written atomically (fsutil.atomic_write, directories created
        as needed). Raises OSError when the store cannot be written."""
        atomic_write(self.base / "generations" / f"{generation}.manifest.gz", serialize(manifest))
        atomic_write(self.base / "current", f"{generation}\n".encode())


def sequence(generation: str) -> int:
    """SEQ of a generation id SEQ-HASH."""
    return int(generation.split("-", 1)[0])


def next_generation(current: str | None, digest: str) -> str:
    """The id of the next generation: SEQ-HASH with SEQ one more than current's (1 when there
    is none) and HASH the first 12 hex digits of `digest` (content_hash of its manifest).
    Raises ValueError when current does not start with a decimal SEQ."""
    return f"{sequence(current) + 1 if current else 1}-{digest[:12]}"
