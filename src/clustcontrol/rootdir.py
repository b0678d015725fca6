"""File operations confined to one directory tree: what apply does under --root (or /).

Every target path is resolved one component at a time from directory descriptors (openat(2)
with O_NOFOLLOW), so the directory that was checked is the one used. A symbolic link on the
way is followed inside the tree only, as openat2(2) with RESOLVE_IN_ROOT does: an absolute link
target starts again at the root and '..' stops there. No name with a '/' and no '..' ever
reaches the kernel, so a tree changed while it is resolved cannot lead a lookup out of it.
Target paths themselves must be normalized absolute paths (no '..').

The last component is not followed by default (apply): a symbolic link, a directory or a device
at a target path is refused (UnsafePathError), never read, replaced or removed. A RootDir made
with `follow` (the image operations: a standard root seen as its nodes see it, as chroot(2)
would) follows a link there too, inside the tree, and reads or replaces the file it leads to;
what is not a regular file is still refused.

New directories are 0755 and new files get their mode with fchmod(2), whatever the umask; a
file meant for a daemon's group gets that group when the tree's /etc/group defines it. Files
are staged as `.NAME.clustcontrol-XXXXXXXX.tmp` beside their target (fsutil.temp_name) and
renamed into place; remove_temps finds what an interrupted run left.

    with RootDir(Path("/tmp/prefix"), create=True) as tree:
        tree.write("/etc/dhcp/dhcpd.conf", data, mode=0o644)
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import re
import stat
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from clustcontrol.errors import UnsafePathError
from clustcontrol.fsutil import is_temp_name, locked_fd, open_regular, temp_name

#: How many fsync(2) calls RootDir.flush runs at once.
FLUSH_WORKERS = 32

DIR_MODE = 0o755
PRIVATE_DIR_MODE = 0o700  # private_dir's
MAX_SYMLINKS = 40  # links followed for one path in all, as the kernel (path_resolution(7))
GROUP_FILE = "/etc/group"

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# tempfile.mkstemp's names, as fsutil wrote them before temp_name: removed only beside the
# target they were staged for, since the shape alone could be someone else's file.
_LEGACY_TEMP = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")
_SYMLINK = -1

SYMLINK_HINT = (
    "apply writes only regular files at its target paths: replace the link with the file it "
    "points to (or remove it), then run apply again"
)

__all__ = ["DIR_MODE", "PRIVATE_DIR_MODE", "RootDir", "Staged", "is_target_path", "is_temp_name"]


def is_target_path(path: str) -> bool:
    """True when `path` is a normalized absolute path below / (str): it starts with exactly one
    '/', has no '.', '..' or empty components, no trailing '/' and no NUL byte."""
    return (
        path.startswith("/")
        and not path.startswith("//")
        and path != "/"
        and "\0" not in path
        and posixpath.normpath(path) == path
    )


@dataclass(frozen=True)
class Staged:
    """A complete temp file waiting to be renamed onto its target.

    `path` is the target path (as given to RootDir.stage), `dir_fd` the descriptor of its
    directory (owned by the RootDir, valid until it is closed), `name` the target's base name
    and `temp` the temp file's base name in that directory."""

    path: str
    dir_fd: int
    name: str
    temp: str


# One resolved directory: its descriptor and its name in its parent ("" for the root).
_Frame = tuple[int, str]
_Stack = tuple[_Frame, ...]
# A resolved directory: its stack from the root, and how many links were followed to reach it.
_Resolved = tuple[_Stack, int]


def _components(todo: list[str]) -> Iterator[str]:
    """The path components on `todo` (the next one last) as they are taken off it, "" and "."
    left out; `todo` may grow meanwhile (a link's target put on it)."""
    while todo:
        part = todo.pop()
        if part not in ("", "."):
            yield part


class RootDir:
    """A directory tree all of whose paths are resolved inside it; a context manager.

    `root` is the tree's top (its own path is used as given, symbolic links included: the user
    named it). With `create`, a missing root is created on entering (0755; directories above it
    get the umask's mode); without it, a missing root reads as empty. With `follow`, a symbolic
    link at the last component of a path is followed inside the tree by read, stat, resolve and
    stage (see the module docstring); remove, lock and remove_temps never follow it. Directory
    descriptors are opened once per directory and closed on exit."""

    def __init__(self, root: Path, *, create: bool = False, follow: bool = False) -> None:
        self.root = root
        self._create = create
        self._follow = follow
        self._fds: list[int] = []
        self._dirs: dict[str, _Resolved] = {}
        # Directories found missing by a lookup that creates nothing, until one is created.
        self._missing: set[str] = set()
        self._checked: set[str] = set()  # paths is_target_path accepted
        self._groups: dict[str, int] | None = None

    def __enter__(self) -> RootDir:
        if self._create and not self.root.is_dir():
            self.root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            self.root.chmod(DIR_MODE)  # mkdir's mode went through the umask
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return self  # nothing below: every lookup finds nothing
        self._fds.append(fd)
        self._dirs["/"] = (((fd, ""),), 0)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()
        self._dirs.clear()

    def display(self, path: str) -> str:
        """Where the target path `path` is on this machine, for messages: ROOT/path (str)."""
        return str(self.root / path.lstrip("/"))

    # Resolution

    def _refuse(self, path: str, why: str, hint: str | None = None) -> UnsafePathError:
        return UnsafePathError([f"{self.display(path)}: {why}"], hint=hint)

    def _open_dir(self, parent: int, part: str, create: bool, path: str) -> int | None:
        """The descriptor of directory `part` in `parent`, _SYMLINK when it is a symbolic link,
        None when it is missing (and not `create`). `path` is only for messages."""
        created = False
        for _attempt in range(3):
            try:
                fd = os.open(part, _DIR_FLAGS, dir_fd=parent)
            except FileNotFoundError:
                if not create:
                    return None
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, DIR_MODE, dir_fd=parent)
                    created = True
                continue
            except NotADirectoryError:  # O_DIRECTORY | O_NOFOLLOW on a link gives ENOTDIR too
                try:
                    st = os.stat(part, dir_fd=parent, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISLNK(st.st_mode):
                    return _SYMLINK
                raise self._refuse(path, "is not a directory") from None
            self._fds.append(fd)
            if created:
                os.fchmod(fd, DIR_MODE)  # mkdir's mode went through the umask
                self._missing.clear()
            return fd
        raise self._refuse(path, "keeps changing while it is resolved")

    def _walk(
        self, stack: list[_Frame], parts: list[str], create: bool, path: str, links: int
    ) -> _Resolved | None:
        """Resolve the directory components `parts` from the directories in `stack` (the root
        first); symbolic links are expanded in place (an absolute one from the root), '..' pops
        but never the root. `links` counts the links followed so far for this path: past
        MAX_SYMLINKS in all, as the kernel's path walk, the links loop. Returns the resolved
        stack and the new count, None when a directory is missing (and not `create`)."""
        todo = list(reversed(parts))
        for part in _components(todo):
            if part == "..":
                if len(stack) > 1:
                    stack.pop()
                continue
            fd = self._open_dir(stack[-1][0], part, create, path)
            if fd is None:
                return None
            if fd == _SYMLINK:
                links += 1
                if self._expand_link(stack[-1][0], part, links, path, todo):
                    del stack[1:]
                continue
            stack.append((fd, part))
        return tuple(stack), links

    def _expand_link(self, parent: int, part: str, links: int, path: str, todo: list[str]) -> bool:
        """Put the target of the symbolic link `part` in directory `parent`, the `links`-th of
        this lookup, on `todo` (the components still to resolve, the next one last). Returns
        whether the target is absolute (the lookup starts again at the top). Raises
        UnsafePathError past MAX_SYMLINKS links; `path` is only for messages."""
        if links > MAX_SYMLINKS:
            raise self._refuse(path, "too many levels of symbolic links")
        target = os.readlink(part, dir_fd=parent)
        todo.extend(reversed(target.split("/")))
        return target.startswith("/")

    def _directory(self, path: str, create: bool) -> _Resolved | None:
        """The resolved directory stack of the directory `path` (normalized, absolute), with the
        number of links followed to reach it."""
        found = self._dirs.get(path)
        if found is not None or not self._dirs:
            return found
        if not create and path in self._missing:
            return None
        parent_path, name = posixpath.split(path)
        parent = self._directory(parent_path, create)
        found = None
        if parent is not None:
            found = self._walk(list(parent[0]), [name], create, path, parent[1])
        if found is not None:
            self._dirs[path] = found
        elif not create:
            self._missing.add(path)
        return found

    def _check_path(self, path: str) -> None:
        if path in self._checked:
            return  # read, staged and committed: checked once
        if not is_target_path(path):
            raise UnsafePathError([f"{path!r}: not a normalized absolute path (under {self.root})"])
        self._checked.add(path)

    def _resolve(self, path: str, create: bool, follow: bool) -> tuple[_Stack, str] | None:
        """(resolved directory stack of the directory of `path`, the last component's name in
        it); with `follow`, symbolic links at the last component are followed inside the tree
        first, and a link that leads to a directory gives that directory and ".". None when a
        directory on the way is missing (and not `create`). Raises UnsafePathError for a path
        that is not a normalized absolute path, a file where a directory is needed, or links
        that loop."""
        self._check_path(path)
        parent, name = posixpath.split(path)
        found = self._directory(parent, create)
        if found is None:
            if create and not self._dirs:
                raise FileNotFoundError(errno.ENOENT, "root directory missing", str(self.root))
            return None
        stack, links = found
        while follow:
            st = self._lstat(stack[-1][0], name)
            if st is None or not stat.S_ISLNK(st.st_mode):
                break
            links += 1
            if links > MAX_SYMLINKS:
                raise self._refuse(path, "too many levels of symbolic links")
            target = os.readlink(name, dir_fd=stack[-1][0])
            head, _slash, name = target.rpartition("/")
            parts = head.split("/")
            if name in ("", ".", ".."):  # the link names a directory
                parts.append(name)
                name = "."
            start = stack[:1] if target.startswith("/") else stack
            walked = self._walk(list(start), parts, create, path, links)
            if walked is None:
                return None
            stack, links = walked
        return stack, name

    def _parent(
        self, path: str, create: bool, follow: bool | None = None
    ) -> tuple[int, str] | None:
        """(descriptor of the directory of `path`, its base name), None when that directory is
        missing (and not `create`); the last component is followed with `follow` (default:
        as the tree was made). Raises UnsafePathError as _resolve."""
        found = self._resolve(path, create, self._follow if follow is None else follow)
        if found is None:
            return None
        stack, name = found
        return stack[-1][0], name

    def _lstat(self, fd: int, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def _check_regular(self, path: str, st: os.stat_result) -> None:
        if stat.S_ISLNK(st.st_mode):
            raise self._refuse(path, "is a symbolic link; apply does not follow it", SYMLINK_HINT)
        if not stat.S_ISREG(st.st_mode):
            raise self._refuse(path, "is not a regular file")

    def resolve(self, path: str) -> str | None:
        """Where target path `path` leads inside the tree: its directories resolved and, with
        `follow`, links at its last component too (a normalized absolute path, str; "/" for
        the root). None when a directory on the way is missing. Raises UnsafePathError for a
        path that is not normalized, a file where a directory is needed, or links that loop."""
        found = self._resolve(path, False, self._follow)
        if found is None:
            return None
        stack, name = found
        return posixpath.normpath("/" + "/".join([*(part for _fd, part in stack[1:]), name]))

    def realpath(self, path: str) -> str:
        """Where the directory path `path` leads inside the tree, as realpath(3) would find it
        were the tree the root (chroot(2)): every symbolic link on the way, the last component
        included, is followed inside the tree (an absolute target starts again at its top, '..'
        stops there), whatever `follow` says. From the first missing component on, the rest is
        taken as written ('..' removing a name), so a path that does not exist yet resolves
        too, a dangling link's target included, as os.path.realpath does (resolve, by
        contrast, gives None).

        `path` is "/" or a normalized absolute path (str). Returns a normalized absolute path
        ("/" for the top). Raises UnsafePathError when `path` is not such a path, a component
        that exists is not a directory, or links loop; OSError for other failures."""
        if path != "/":
            self._check_path(path)
        if not self._dirs:
            return path  # no tree: nothing to follow
        stack: list[_Frame] = list(self._dirs["/"][0])
        missing: list[str] = []  # the names from the first missing directory on, as written
        todo = list(reversed(path.split("/")))
        links = 0
        for part in _components(todo):
            if part == "..":
                if missing:
                    missing.pop()
                elif len(stack) > 1:
                    stack.pop()
                continue
            if missing:
                missing.append(part)
                continue
            fd = self._open_dir(stack[-1][0], part, False, path)
            if fd == _SYMLINK:
                links += 1
                if self._expand_link(stack[-1][0], part, links, path, todo):
                    del stack[1:]
                continue
            if fd is None:
                missing.append(part)
            else:
                stack.append((fd, part))
        return "/" + "/".join([*(name for _fd, name in stack[1:]), *missing])

    def stat(self, path: str) -> os.stat_result | None:
        """The lstat(2) result of what target path `path` names, after `follow`'s links (so a
        link only without `follow`), or None when it is missing. Raises UnsafePathError as
        resolve, OSError for other failures."""
        found = self._parent(path, create=False)
        return None if found is None else self._lstat(*found)

    def listdir(self, path: str) -> list[str] | None:
        """The sorted names in the directory at target path `path` ("/" for the root; links on
        the way, the last one included, followed inside the tree), or None when it is missing.
        Raises UnsafePathError when it is not a directory or links loop, or when `path` is not
        normalized; OSError when it cannot be listed."""
        if path != "/":
            self._check_path(path)
        found = self._directory(path, create=False)
        if found is None:
            return None
        return sorted(os.listdir(found[0][-1][0]))  # noqa: PTH208 - a descriptor

    # Reading

    def read(self, path: str) -> bytes | None:
        """The content of the regular file at target path `path` (str, normalized absolute), or
        None when it or a directory above it does not exist (with `follow`: what its links lead
        to inside the tree).

        Raises UnsafePathError, without opening anything (fsutil.open_regular: no device or
        FIFO is ever opened), when it is a symbolic link (without `follow`) or not a regular
        file, when a directory above it is not one or links loop, or
        when `path` is not normalized; OSError for other failures (e.g. no permission)."""
        found = self._parent(path, create=False)
        if found is None:
            return None
        fd, name = found
        try:
            file_fd, st = open_regular(name, dir_fd=fd)
        except FileNotFoundError:
            return None
        if file_fd is None:
            self._check_regular(path, st)
        assert file_fd is not None
        with os.fdopen(file_fd, "rb") as handle:
            return handle.read()

    def group_id(self, group: str) -> int | None:
        """The numeric id of `group` (a name) in the tree's /etc/group, or None when the file or
        the group is missing. Raises UnsafePathError as read does for /etc/group."""
        if self._groups is None:
            self._groups = {}
            for line in (self.read(GROUP_FILE) or b"").decode(errors="replace").splitlines():
                fields = line.split(":")
                if len(fields) >= 3 and fields[2].isdigit():
                    self._groups.setdefault(fields[0], int(fields[2]))
        return self._groups.get(group)

    # Writing

    def _new_file(self, fd: int, mode: int, group: str | None) -> None:
        """Owner and mode of a file we create: `group` when the tree defines it (and we may
        chown), otherwise others get the group's read permission, so the daemon can still read.
        """
        gid = None if group is None else self.group_id(group)
        if gid is not None:
            try:
                os.fchown(fd, -1, gid)
            except PermissionError:
                gid = None
        if group is not None and gid is None:
            mode |= (mode & 0o040) >> 3
        os.fchmod(fd, mode)

    def stage(
        self,
        path: str,
        data: bytes,
        *,
        mode: int = 0o644,
        group: str | None = None,
        fsync: bool = True,
        keep_mode: bool = True,
        owner: tuple[int, int] | None = None,
    ) -> Staged:
        """Write `data` to a temp file beside target path `path`, missing directories created;
        with `follow`, beside the file its links lead to inside the tree (that file is replaced,
        the links stay).

        An existing file's owner is copied, and its mode unless `keep_mode` is False; a new one
        gets `mode` (permission bits, int) and, when `group` (a group name) is given, that group
        if the tree's /etc/group has it, else `mode` plus read for others where the group may
        read. With `owner` (uid, gid) the file gets that owner and exactly `mode`, whether the
        target exists or not (a file put back as it was: mode set after the owner, so setuid
        bits stay; the owner is left as is where we may not chown). With `fsync` the data is
        flushed. Returns the Staged file for commit or discard.
        Raises UnsafePathError when the target is a symbolic link (without `follow`) or not a
        regular file, or links loop (nothing is created then), and OSError when writing fails
        (the temp file is removed)."""
        found = self._parent(path, create=True)
        assert found is not None
        fd, name = found
        st = self._lstat(fd, name)
        if st is not None:
            self._check_regular(path, st)
        temp = temp_name(name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        file_fd = os.open(temp, flags, 0o600, dir_fd=fd)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(file_fd, view) :]
                if owner is not None:
                    with contextlib.suppress(PermissionError):
                        os.fchown(file_fd, *owner)
                    os.fchmod(file_fd, mode)
                elif st is not None:
                    with contextlib.suppress(PermissionError):
                        os.fchown(file_fd, st.st_uid, st.st_gid)
                    os.fchmod(file_fd, st.st_mode & 0o7777 if keep_mode else mode)
                else:
                    self._new_file(file_fd, mode, group)
                if fsync:
                    os.fsync(file_fd)
            finally:
                os.close(file_fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=fd)
            raise
        return Staged(path, fd, name, temp)

    @contextlib.contextmanager
    def staging(self) -> Iterator[list[Staged]]:
        """Collect staged files (append what `stage` returns to the list yielded); when the
        block ends, flush them together (flush), then rename each onto its target (commit).
        When the block or a flush or rename raises, every staged file not yet renamed is
        removed (discard) and the exception goes on: a target is old or new, never torn."""
        staged: list[Staged] = []
        try:
            yield staged
            self.flush(staged)
            for item in staged:
                self.commit(item)
        except BaseException:
            for item in staged:
                self.discard(item)
            raise

    def commit(self, staged: Staged) -> None:
        """Rename a staged file onto its target (rename(2): atomic; a link that appeared at the
        target meanwhile is replaced, never followed). Raises OSError when the rename fails."""
        os.replace(staged.temp, staged.name, src_dir_fd=staged.dir_fd, dst_dir_fd=staged.dir_fd)

    def discard(self, staged: Staged) -> None:
        """Remove a staged file that will not be committed (already gone is fine)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged.temp, dir_fd=staged.dir_fd)

    def flush(self, staged: Sequence[Staged], workers: int = FLUSH_WORKERS) -> None:
        """fsync(2) the temp files of `staged`, `workers` at a time: the file system commits
        concurrent fsyncs together (ext4's journal commits them as one), where one at a time
        costs a commit each (0.48 ms a file here, 0.10 ms with 32 threads). Unlike sync(2) it
        flushes nothing else of the machine: on a master that is also the NFS server, sync
        wrote out every exported tree's dirty data. Raises OSError when a flush fails."""

        def one(item: Staged) -> None:
            fd = os.open(item.temp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=item.dir_fd)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        def chunk(items: Sequence[Staged]) -> None:
            for item in items:
                one(item)

        if len(staged) <= 1:
            chunk(staged)
            return
        # One task per worker, each a slice of the files: a task per file cost more in
        # futures and locks than the fsync itself (50,000 files).
        count = min(workers, len(staged))
        with ThreadPoolExecutor(max_workers=count) as pool:
            for _ in pool.map(chunk, [staged[i::count] for i in range(count)]):
                pass

    def sync_dirs(self, staged: Iterable[Staged]) -> None:
        """fsync(2) each distinct directory of the staged files, so their renames are durable.
        Raises OSError when fsync fails."""
        for fd in sorted({s.dir_fd for s in staged}):
            os.fsync(fd)

    def write(
        self,
        path: str,
        data: bytes,
        *,
        mode: int = 0o644,
        group: str | None = None,
        keep_mode: bool = True,
    ) -> None:
        """Replace target path `path` with `data` atomically: stage with fsync, rename, fsync
        the directory. Arguments and errors as stage; the temp file is removed on failure."""
        staged = self.stage(path, data, mode=mode, group=group, keep_mode=keep_mode)
        try:
            self.commit(staged)
        except BaseException:
            self.discard(staged)
            raise
        self.sync_dirs([staged])

    def remove(self, path: str) -> bool:
        """Unlink the regular file at target path `path`. Returns False when it is missing.

        Raises UnsafePathError (and removes nothing) when it is a symbolic link or not a regular
        file, or when `path` is not normalized; OSError when unlinking fails."""
        found = self._parent(path, create=False, follow=False)
        if found is None:
            return False
        fd, name = found
        st = self._lstat(fd, name)
        if st is None:
            return False
        self._check_regular(path, st)
        try:
            os.unlink(name, dir_fd=fd)
        except FileNotFoundError:
            return False
        return True

    def private_dir(self, path: str) -> None:
        """Make the directory at target path `path` exist with mode 0700 (an existing one is
        chmod'ed to it), its missing parents 0755: a store only root reads. Raises
        UnsafePathError when it is a symbolic link or not a directory (nothing is changed
        then), or when `path` is not normalized; OSError for other failures."""
        found = self._parent(path, create=True, follow=False)
        assert found is not None
        parent, name = found
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, PRIVATE_DIR_MODE, dir_fd=parent)
        fd = self._open_dir(parent, name, False, path)
        if fd is None:
            raise self._refuse(path, "disappeared while it was created")
        if fd == _SYMLINK:
            raise self._refuse(path, "is a symbolic link; apply does not follow it")
        os.fchmod(fd, PRIVATE_DIR_MODE)

    def remove_temps(self, targets: Iterable[str]) -> list[str]:
        """Remove the temp files an interrupted run left in the directories of `targets`
        (target paths, str): every name of fsutil.temp_name's shape, and tempfile-style names
        `.NAME.XXXXXXXX.tmp` where NAME is one of the targets in that directory. Directories and
        other names are left alone; missing directories are skipped.

        Returns the removed files as display paths, sorted. Raises UnsafePathError when a
        target path is not normalized or a directory cannot be resolved, OSError when a
        directory cannot be listed or a file removed."""
        names: dict[str, set[str]] = {}
        for target in targets:
            self._check_path(target)
            directory, name = posixpath.split(target)
            names.setdefault(directory, set()).add(name)
        removed: list[str] = []
        for directory in sorted(names):
            found = self._directory(directory, create=False)
            if found is None:
                continue
            fd = found[0][-1][0]
            for entry in sorted(os.listdir(fd)):  # noqa: PTH208 - a descriptor
                legacy = _LEGACY_TEMP.fullmatch(entry)
                if not is_temp_name(entry) and not (legacy and legacy["name"] in names[directory]):
                    continue
                st = self._lstat(fd, entry)
                if st is None or stat.S_ISDIR(st.st_mode):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry, dir_fd=fd)
                    removed.append(self.display(posixpath.join(directory, entry)))
        return sorted(removed)

    @contextlib.contextmanager
    def lock(self, path: str) -> Iterator[None]:
        """Hold the exclusive lock file at target path `path` (created 0644 with its directories
        when missing) for the `with` block, as fsutil.exclusive_lock. Raises UnsafePathError when
        it is a symbolic link or not a regular file (it is not opened then), LockedError when
        another process holds it, OSError for other failures."""
        found = self._parent(path, create=True, follow=False)
        assert found is not None
        fd, name = found
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            lock_fd = os.open(name, flags, 0o644, dir_fd=fd)
        except OSError as exc:
            st = self._lstat(fd, name) if exc.errno in (errno.ELOOP, errno.EISDIR) else None
            if st is not None:
                self._check_regular(path, st)
            raise
        st = os.fstat(lock_fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(lock_fd)
            self._check_regular(path, st)
        os.fchmod(lock_fd, 0o644)
        with locked_fd(lock_fd, self.display(path)):
            yield
