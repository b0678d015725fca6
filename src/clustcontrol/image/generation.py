"""Image generations: the manifest of a generation, the id nodes compare at boot, and the store.

`clustcontrol image commit NAME` (commit.py) scans the working tree (type, mode, owner, size,
mtime, content hash or symlink target, extended attributes, hard-link group, device number; a
file whose size, mtime and ctime are those of the last manifest keeps its hash unread) and,
when anything changed, makes a new generation in the store (contract.STATE_DIR shows its
layout):

    STATE_DIR/images/NAME/generations/SEQ-HASH.manifest.gz   the manifest (this module)
    STATE_DIR/images/NAME/roots/SEQ-HASH/                    the tree (snapshot.py), with its
        etc/clustcontrol-generation, etc/clustcontrol-deltas/FROM (deltas.py) and batches
    STATE_DIR/images/NAME/roots/current                      SEQ-HASH, written last
    STATE_DIR/images/NAME/secrets/SEQ-HASH.tar               its secrets (image/secrets.py),
        never under roots/

A node that already holds the current generation skips the transfer at boot. Changes made to
the working tree after the last commit reach no node until the next commit, so `clustcontrol
status` compares the working tree with the manifest and warns about them."""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import posixpath
import re
import shutil
import stat
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from clustcontrol.contract import (
    CONTROL_DIR,
    CURRENT_FILE,
    DELTAS_DIR,
    GENERATION_FILE,
    SECRETS_SUFFIX,
    STATE_DIR,
    exclusions,
    image_state,
)
from clustcontrol.errors import ClustcontrolError
from clustcontrol.fsutil import atomic_write, open_regular, read_bytes_or_none
from clustcontrol.rootdir import RootDir

_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# roots/STAGING: the tree being built, and roots/XATTRS_STAGING its attribute archive until the
# tree is done (a killed commit leaves them; the next removes them: GenerationStore.tidy).
STAGING = ".new"
XATTRS_STAGING = ".new-xattrs.tar"


@dataclass(frozen=True, slots=True)
class Entry:
    """One path of a generation: everything that defines it on a node.

    `digest` is the sha256 of a regular file's content, a symlink's target, or empty; `xattrs`
    the sha256 of its extended attributes (every namespace: user, trusted, security with file
    capabilities, system.posix_acl_* for POSIX ACLs; see xattr_digest), empty when it has none;
    `link` the first path (in sorted order) of the hard-link group a regular file belongs to in
    this tree, empty when it has no other name here; `rdev` a device node's device number.
    `ctime_ns` is the standard's ctime when the entry was scanned: it only decides whether to
    re-hash, it is not part of the content."""

    path: str
    kind: str  # f d l c b p s
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    digest: str
    ctime_ns: int = 0
    xattrs: str = ""
    link: str = ""
    rdev: int = 0

    def content(self) -> tuple[object, ...]:
        """What the generation's identity depends on: (path, kind, mode, uid, gid, size,
        mtime_ns, digest, xattrs, link, rdev). Size counts for regular files only (0
        otherwise); mtime counts for every kind (a directory's too); ctime_ns is left out."""
        size = self.size if self.kind == "f" else 0
        return (
            self.path,
            self.kind,
            self.mode,
            self.uid,
            self.gid,
            size,
            self.mtime_ns,
            self.digest,
            self.xattrs,
            self.link,
            self.rdev,
        )


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


def changed_error(shown: str) -> ClustcontrolError:
    """The error for a path of the working tree that changed while it was read (shown: the
    path as the user knows it)."""
    return ClustcontrolError(
        f"{shown}: changed while it was read",
        hint="commit again when nothing writes to the standard",
    )


def open_file(path: str, shown: str) -> int:
    """A read-only descriptor of the regular file at `path` (str), never of anything else
    (fsutil.open_regular: a link is not followed, a device, FIFO or socket put there meanwhile
    is never opened). `shown` names it in messages.

    Raises ClustcontrolError (changed_error) when it is no longer a regular file, OSError for
    other failures."""
    try:
        fd, _st = open_regular(path)
    except OSError as exc:  # removed, or a directory on the way replaced
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise changed_error(shown) from None
        raise
    if fd is None:
        raise changed_error(shown)
    return fd


def _sha256(path: str, shown: str | None = None) -> str:
    """The sha256 (hex) of the regular file at `path` (open_file; `shown` for messages, default
    path)."""
    digest = hashlib.sha256()
    with os.fdopen(open_file(path, shown or path), "rb") as handle:
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


def walk(root: str, control_dir: str) -> Iterator[tuple[str, os.stat_result, str]]:
    """(relative path, lstat, access path) of everything under root the manifest covers
    (manifest_exclusions left out), parents before their contents; directories on other file
    systems are listed, not entered. Sockets are left out: the process listening on one makes
    it (a standard's are leftovers of the update node's daemons), and GNU tar, the first copy
    of a node, cannot carry them.

    The walk stays inside root even while the tree changes under it (the update node writes
    it): `root` itself is opened as named (links followed: the administrator named it), every
    directory below it from its parent's descriptor with O_NOFOLLOW, and it must be the very
    directory that was listed (device and inode). The access path of an entry is
    /proc/self/fd/FD/NAME, FD the descriptor of its directory: a lookup of one name in that
    directory, whatever happens to the path above it. Used with lstat, readlink, xattrs_of
    (follow_symlinks=False) or open_file, it never leads out of the tree; it is valid only
    until the generator moves on. Directories are visited depth first (one descriptor open per
    level). Raises ClustcontrolError (changed_error) when a directory was replaced or removed
    while the tree was walked, OSError when one cannot be read."""
    path_excluded, content_excluded = manifest_exclusions(control_dir)
    top = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    # (descriptor, relative path, subdirectories still to visit): the directories being walked
    frames: list[tuple[int, str, list[tuple[str, os.stat_result]]]] = [(top, "", [])]
    try:
        device = os.fstat(top).st_dev
        while frames:
            fd, rel_dir, subdirs = frames[-1]  # just opened, not listed yet
            with os.scandir(fd) as entries:
                listing = [(entry.name, entry.stat(follow_symlinks=False)) for entry in entries]
            for name, st in listing:
                rel = f"{rel_dir}/{name}" if rel_dir else name
                if rel in path_excluded or stat.S_ISSOCK(st.st_mode):
                    continue
                yield rel, st, f"/proc/self/fd/{fd}/{name}"
                if stat.S_ISDIR(st.st_mode) and st.st_dev == device and rel not in content_excluded:
                    subdirs.append((rel, st))
            while frames and not frames[-1][2]:
                os.close(frames.pop()[0])
            if frames:
                parent, _rel, pending = frames[-1]
                rel, st = pending.pop()  # the last listed first
                shown = os.path.join(root, rel)  # noqa: PTH118 - plain str paths
                frames.append((_open_directory(parent, rel, st, shown), rel, []))
    finally:
        for fd, _rel, _pending in frames:
            os.close(fd)


def _open_directory(parent: int, rel: str, st: os.stat_result, shown: str) -> int:
    """The descriptor of directory `rel` (its last component) in `parent`, which must still be
    the directory whose lstat was `st` (a symbolic link put there is not followed). Raises
    ClustcontrolError (changed_error) otherwise."""
    try:
        fd = os.open(rel.rpartition("/")[2], _DIR_FLAGS, dir_fd=parent)
    except OSError as exc:  # removed, or replaced by a file or a link (ENOTDIR or ELOOP)
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            raise changed_error(shown) from None
        raise
    now = os.fstat(fd)
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        raise changed_error(shown)
    return fd


def xattrs_of(path: str) -> list[tuple[str, bytes]]:
    """The extended attributes of path (symlinks not followed), sorted by name: every namespace
    the caller may read (all of them as root: user, trusted, security, and system.posix_acl_*
    where POSIX ACLs are stored). A file system without xattrs gives []. Raises OSError when
    path cannot be read otherwise."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return []
        raise
    found = []
    for name in sorted(names):
        try:
            found.append((name, os.getxattr(path, name, follow_symlinks=False)))
        except OSError as exc:  # removed meanwhile
            if exc.errno != errno.ENODATA:
                raise
    return found


def xattr_digest(attrs: list[tuple[str, bytes]]) -> str:
    """The sha256 (hex) of extended attributes as xattrs_of lists them, "" when there are none:
    each name, NUL, the value's length, NUL, the value."""
    if not attrs:
        return ""
    digest = hashlib.sha256()
    for name, value in attrs:
        digest.update(f"{name}\0{len(value)}\0".encode())
        digest.update(value)
    return digest.hexdigest()


def with_links(manifest: Manifest, links: InodeGroups) -> Manifest:
    """The manifest with each hard-linked regular file's `link` set to the first path (sorted)
    of its group; groups of one (other names outside the tree) get no link."""
    for group in links.values():
        if len(group) > 1:
            leader = min(group)
            for rel in group:
                manifest[rel] = replace(manifest[rel], link=leader)
    return manifest


def entry_of(rel: str, st: os.stat_result, digest: str, xattrs: str) -> Entry:
    """The manifest entry of rel from its lstat result (link left empty: see with_links)."""
    kind = _kind(st.st_mode)
    return Entry(
        rel,
        kind,
        stat.S_IMODE(st.st_mode),
        st.st_uid,
        st.st_gid,
        st.st_size,
        st.st_mtime_ns,
        digest,
        st.st_ctime_ns,
        xattrs,
        "",
        st.st_rdev if kind in ("c", "b") else 0,
    )


def unchanged(old: Entry | None, st: os.stat_result) -> bool:
    """Whether a regular file's content is known from `old` (its manifest entry): the same
    size, mtime and ctime (ctime moves with every write, even one that restores the mtime)."""
    return (
        old is not None
        and old.kind == "f"
        and (old.size, old.mtime_ns, old.ctime_ns) == (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    )


def scan(
    root: Path,
    previous: Manifest | None = None,
    hash_files: bool = True,
    *,
    links: InodeGroups | None = None,
    control_dir: str = CONTROL_DIR,
) -> Manifest:
    """The manifest of root; regular files unchanged since `previous` keep their digest.

    Extended attributes are read for every entry, file contents only for regular files that
    changed (and never without hash_files). With `links`, every regular file with more than
    one link is added to its inode's group (names whose other links lie outside the scanned
    tree make groups of one). Raises OSError when the tree cannot be read."""
    previous = previous or {}
    groups: InodeGroups = {} if links is None else links
    manifest: Manifest = {}
    for rel, st, path in walk(str(root), control_dir):
        kind = _kind(st.st_mode)
        if kind == "f" and st.st_nlink > 1:
            groups.setdefault((st.st_dev, st.st_ino), []).append(rel)
        digest = ""
        if kind == "l":
            digest = os.readlink(path)  # noqa: PTH115 - hot path, plain str paths
        elif kind == "f" and hash_files:
            old = previous.get(rel)
            if old is not None and unchanged(old, st):
                digest = old.digest
            else:
                digest = _sha256(path, os.path.join(root, rel))  # noqa: PTH118 - hot path
        manifest[rel] = entry_of(rel, st, digest, xattr_digest(xattrs_of(path)))
    return with_links(manifest, groups)


def content_hash(manifest: Manifest, secrets: Iterable[str] = ()) -> str:
    """The sha256 (64 lower-case hex digits) of a manifest's content: each entry's content()
    in path order, so equal content gives equal hashes whatever the ctimes; then, when there
    are any, the generation's secret paths (image/secrets.py), sorted: the same files with
    other secrets are another generation. The HASH part of a generation id SEQ-HASH is its
    first 12 digits (next_generation)."""
    digest = hashlib.sha256()
    for rel in sorted(manifest):
        digest.update(repr(manifest[rel].content()).encode())
        digest.update(b"\n")
    for rel in sorted(secrets):
        digest.update(b"secret\0" + rel.encode("utf-8", "surrogateescape") + b"\n")
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
                e.xattrs,
                _escape(e.link),
                str(e.rdev),
            )
        )
        for e in (manifest[rel] for rel in sorted(manifest))
    ]


def parse_lines(lines: Iterable[str]) -> Manifest:
    """The manifest written as manifest_lines: twelve tab-separated fields per line (path,
    kind, octal mode, uid, gid, size in bytes, mtime_ns, digest, ctime_ns, xattrs digest, link,
    rdev), path, digest and link unescaped. Lines of nine fields (manifests written before
    xattrs, links and device numbers were recorded) leave those empty. Raises ValueError on a
    line with another number of fields (an empty line included) or a number that does not
    parse."""
    manifest: Manifest = {}
    for line in lines:
        fields = line.split("\t")
        if len(fields) == 9:
            fields += ["", "", "0"]
        path, kind, mode, uid, gid, size, mtime, digest, ctime, xattrs, link, rdev = fields
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
            xattrs,
            _unescape(link),
            int(rdev),
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
        return (*content[:7], entry.digest if entry.kind == "l" else "", *content[8:], ctime)

    added = tuple(sorted(new.keys() - old.keys()))
    removed = tuple(sorted(old.keys() - new.keys()))
    changed = tuple(sorted(p for p in old.keys() & new.keys() if key(old[p]) != key(new[p])))
    return Difference(added, removed, changed)


def differing_entries(old: set[str], new: set[str]) -> tuple[Manifest, Manifest]:
    """The entries of two manifests (as manifest_lines) whose lines differ. compare() of these
    gives the difference of the whole manifests, without parsing the unchanged bulk."""
    return parse_lines(old - new), parse_lines(new - old)


_GENERATION_ID = re.compile(r"[0-9]+-[0-9a-f]{12}")


def is_generation(name: str) -> bool:
    """Whether name is a generation id SEQ-HASH (decimal SEQ, 12 lower-case hex digits)."""
    return _GENERATION_ID.fullmatch(name) is not None


@dataclass(frozen=True)
class TreeUsage:
    """The space one generation tree takes: its regular files (`files`), the sum of their
    sizes (`bytes`, apparent), the disk space of what no other kept tree shares (`own_bytes`,
    st_blocks * 512, hard links to other trees not counted) and its age (`mtime`, seconds since
    the epoch, when it was made)."""

    generation: str
    files: int
    bytes: int
    own_bytes: int
    mtime: float


@dataclass(frozen=True)
class GenerationStore:
    """Where the master keeps an image's generations (contract.STATE_DIR shows the layout):
    `base` is STATE_DIR/images/NAME under an installation prefix."""

    base: Path

    @classmethod
    def for_image(cls, prefix: Path, name: str, state_dir: str = STATE_DIR) -> GenerationStore:
        """The store of image `name`: PREFIX/STATE_DIR/images/NAME (contract.image_state; the
        prefix is "/" on a real master), symbolic links on the way followed inside the prefix
        (RootDir.realpath: an absolute link under a prefix leads to PREFIX/TARGET, never out
        of it; missing directories are fine). Nothing is created. Raises UnsafePathError when
        a component is not a directory or links loop."""
        with RootDir(prefix) as tree:
            where = tree.realpath(posixpath.normpath(image_state(state_dir, name)))
        return cls(prefix / where.lstrip("/"))

    @property
    def roots(self) -> Path:
        """The served directory: the current file and one tree per generation."""
        return self.base / "roots"

    def tree(self, generation: str) -> Path:
        """The tree of `generation` (it may not exist)."""
        return self.roots / generation

    @property
    def secrets(self) -> Path:
        """The secrets archives (contract.secrets_store): exported to the image's nodes alone."""
        return self.base / "secrets"

    def secrets_archive(self, generation: str) -> Path:
        """The secrets archive of `generation` (it may not exist: a generation without secrets
        a node takes)."""
        return self.secrets / f"{generation}{SECRETS_SUFFIX}"

    def make_private(self) -> None:
        """Create the store when missing and make it 0700 whatever it was, and its manifests
        0600: nothing but root on the master may enter it. Its trees keep their set-id files,
        capabilities and device nodes exactly (the nodes need them), which a local user who
        could reach them would run or open as they are (a setuid copy of a shell is root); and
        a manifest holds the sha256 of every secret file (a low-entropy secret is guessed from
        it). The NFS servers and the rsync daemon run as root (rsyncd.conf: uid = root) and
        still serve roots/ and secrets/. Raises OSError."""
        self.base.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.base.chmod(0o700)
        for generation in self.recorded():
            (self.base / "generations" / f"{generation}.manifest.gz").chmod(0o600)

    def make_secrets_dir(self) -> Path:
        """Create the secrets directory (and the store) when missing and make it 0700 whatever
        it was: nothing but root on the master and the NFS server may enter it. Returns it.
        Raises OSError."""
        self.secrets.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.secrets.chmod(0o700)
        return self.secrets

    def current(self) -> str | None:
        """The generation nodes sync to (roots/current; a store written before generation trees
        has it in `current`), or None when none was committed yet (no file, or an empty one).
        Raises OSError when the file exists but cannot be read."""
        data = read_bytes_or_none(self.roots / CURRENT_FILE)
        if data is None:
            data = read_bytes_or_none(self.base / "current")
        return data.decode().strip() or None if data is not None else None

    def _read(self, generation: str) -> bytes:
        data = read_bytes_or_none(self.base / "generations" / f"{generation}.manifest.gz")
        if data is None:
            raise ClustcontrolError(
                f"{self.base}: the manifest of generation {generation} is missing",
                hint="clustcontrol image commit records it again from the generation's tree",
            )
        return data

    def manifest(self, generation: str) -> Manifest:
        """The recorded manifest of `generation` (generations/GENERATION.manifest.gz).

        Raises ClustcontrolError when that file is missing or damaged (what deserialize
        raises, named)."""
        data = self._read(generation)
        try:
            return deserialize(data)
        except (OSError, EOFError, ValueError, zlib.error) as exc:
            raise ClustcontrolError(
                f"{self.base}: the manifest of generation {generation} is damaged ({exc})",
                hint="clustcontrol image commit records it again from the generation's tree",
            ) from None

    def lines(self, generation: str) -> set[str]:
        """The manifest's lines, unparsed (see differing_entries)."""
        return set(_text_lines(self._read(generation)))

    def recorded(self) -> list[str]:
        """Every generation that has a manifest, by sequence number (oldest first)."""
        return _by_sequence(
            name.removesuffix(".manifest.gz")
            for name in _names(self.base / "generations")
            if name.endswith(".manifest.gz")
        )

    def trees(self) -> list[str]:
        """Every generation that has a tree under roots/, by sequence number (oldest first)."""
        return _by_sequence(name for name in _names(self.roots) if (self.roots / name).is_dir())

    def record(self, generation: str, manifest: Manifest) -> None:
        """Store `manifest` as generations/GENERATION.manifest.gz, atomically (fsutil.atomic_write,
        directories created as needed), mode 0600 when new (it holds the secrets' digests).
        Raises OSError when the store cannot be written."""
        path = self.base / "generations" / f"{generation}.manifest.gz"
        atomic_write(path, serialize(manifest), mode=0o600)

    def publish(self, generation: str) -> None:
        """Make `generation` (whose tree is complete) the one nodes sync to: roots/current,
        written atomically; the `current` of a store written before generation trees goes.
        Raises OSError when it cannot be written."""
        atomic_write(self.roots / CURRENT_FILE, f"{generation}\n".encode())
        (self.base / "current").unlink(missing_ok=True)

    def prune(self, keep_trees: int, keep_manifests: int) -> list[str]:
        """Remove all but the newest `keep_trees` trees (never the current one's) and all but
        the newest `keep_manifests` manifests (deltas are written from them). Returns the
        generations whose tree was removed, oldest first. Raises OSError."""
        current = self.current()
        trees = self.trees()
        removed = [g for g in trees[: max(len(trees) - keep_trees, 0)] if g != current]
        for generation in removed:
            self.discard(self.tree(generation))
        manifests = self.recorded()
        for generation in manifests[: max(len(manifests) - keep_manifests, 0)]:
            if generation != current:
                (self.base / "generations" / f"{generation}.manifest.gz").unlink(missing_ok=True)
        return removed

    def discard(self, tree: Path) -> None:
        """Remove a tree: first renamed to roots/.old-NAME (atomic: it is no generation any
        more, whatever happens next), then deleted, then its secrets archive. Raises
        OSError."""
        doomed = self.roots / f".old-{tree.name}"
        if tree.is_dir():
            tree.rename(doomed)
        if doomed.is_dir():
            shutil.rmtree(doomed)
        self.secrets_archive(tree.name).unlink(missing_ok=True)

    def tidy(self) -> list[str]:
        """Remove what an interrupted commit left: the tree being built (roots/STAGING) and its
        attribute archive (roots/XATTRS_STAGING), its secrets (secrets/STAGING and its
        archive), trees being removed (roots/.old-*), and the trees, secrets archives and
        manifests of generations after the current one (recorded, never published), and
        the archives of generations without a tree. Returns what was removed (names). Raises
        OSError."""
        current = self.current()
        after = sequence(current) if current else 0
        removed = []
        trees = set(self.trees())
        for name in _names(self.secrets):
            path = self.secrets / name
            generation = name.removesuffix(SECRETS_SUFFIX)
            orphan = is_generation(generation) and (
                sequence(generation) > after or (generation not in trees and generation != current)
            )
            if name == STAGING and path.is_dir():
                shutil.rmtree(path)
            elif name == STAGING + SECRETS_SUFFIX or orphan:
                path.unlink()
            else:
                continue
            removed.append(f"secrets/{name}")
        for name in _names(self.roots):
            path = self.roots / name
            orphan = is_generation(name) and sequence(name) > after
            if name == XATTRS_STAGING and not path.is_dir():
                path.unlink()
                removed.append(name)
            elif (name == STAGING or name.startswith(".old-") or orphan) and path.is_dir():
                shutil.rmtree(path)
                removed.append(name)
        for generation in self.recorded():
            if sequence(generation) > after:
                (self.base / "generations" / f"{generation}.manifest.gz").unlink()
                removed.append(f"{generation}.manifest.gz")
        return removed

    def space(self) -> int:
        """The disk space of all kept trees together (bytes, st_blocks * 512 of each regular
        file once, whatever links it has among the trees). Raises OSError."""
        blocks: dict[tuple[int, int], int] = {}
        for generation in self.trees():
            for dirpath, _dirs, names in os.walk(self.tree(generation)):
                for name in names:
                    st = os.lstat(os.path.join(dirpath, name))  # noqa: PTH118 - hot path
                    if stat.S_ISREG(st.st_mode):
                        blocks[(st.st_dev, st.st_ino)] = st.st_blocks * 512
        return sum(blocks.values())

    def made(self, generation: str) -> float:
        """When the tree of `generation` was made (seconds since the epoch): the time of its
        generation file, which the commit writes last into it; the tree's own time when it
        has none. Raises OSError when the tree is missing."""
        tree = self.tree(generation)
        marker = tree / GENERATION_FILE
        return marker.stat().st_mtime if marker.is_file() else tree.stat().st_mtime

    def usage(self) -> list[TreeUsage]:
        """The space of each tree (see TreeUsage), oldest first. Reads every tree's metadata
        (no file content). Raises OSError when a tree cannot be read."""
        trees = self.trees()
        seen: dict[tuple[int, int], set[str]] = {}
        blocks: dict[tuple[int, int], int] = {}
        totals: dict[str, list[int]] = {}
        for generation in trees:
            files = apparent = 0
            for dirpath, _dirs, names in os.walk(self.tree(generation)):
                for name in names:
                    st = os.lstat(os.path.join(dirpath, name))  # noqa: PTH118 - hot path
                    if not stat.S_ISREG(st.st_mode):
                        continue
                    files += 1
                    apparent += st.st_size
                    inode = (st.st_dev, st.st_ino)
                    seen.setdefault(inode, set()).add(generation)
                    blocks[inode] = st.st_blocks * 512
            totals[generation] = [files, apparent, 0]
        for inode, generations in seen.items():
            if len(generations) == 1:
                totals[next(iter(generations))][2] += blocks[inode]
        return [TreeUsage(g, totals[g][0], totals[g][1], totals[g][2], self.made(g)) for g in trees]


def _names(directory: Path) -> list[str]:
    try:
        return [path.name for path in directory.iterdir()]
    except FileNotFoundError:
        return []


def _by_sequence(names: Iterable[str]) -> list[str]:
    return sorted((n for n in names if is_generation(n)), key=sequence)


def sequence(generation: str) -> int:
    """SEQ of a generation id SEQ-HASH."""
    return int(generation.split("-", 1)[0])


def next_generation(current: str | None, digest: str) -> str:
    """The id of the next generation: SEQ-HASH with SEQ one more than current's (1 when there
    is none) and HASH the first 12 hex digits of `digest` (content_hash of its manifest).
    Raises ValueError when current does not start with a decimal SEQ."""
    return f"{sequence(current) + 1 if current else 1}-{digest[:12]}"
