"""File-system primitives: atomic replacement and the apply lock."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from clustcontrol.errors import LockedError


def _stage(path: Path, data: bytes, mode: int | None, fsync: bool) -> Path:
    """Write data to a temp file beside path with path's mode and owner (or `mode` when new)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        st: os.stat_result | None = path.stat()
    except FileNotFoundError:
        st = None
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        if st is not None:
            tmp.chmod(st.st_mode & 0o7777)
            with contextlib.suppress(PermissionError):
                os.chown(tmp, st.st_uid, st.st_gid)
        else:
            tmp.chmod(0o644 if mode is None else mode)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_write(path: Path, data: bytes, mode: int | None = None) -> None:
    """Replace path with data: temp file in the same directory, fsync, rename, fsync directory.

    An existing file keeps its mode and owner; a new one gets `mode` (default 0644). Missing
    parent directories are created. A reader sees either the old or the new content, never a
    mix (rename(2) is atomic within a file system). Raises OSError when the directory is not
    writable or the disk is full; the temp file is removed then."""
    tmp = _stage(path, data, mode, fsync=True)
    tmp.replace(path)
    fsync_dir(path.parent)


def atomic_write_many(items: list[tuple[Path, bytes, int | None]]) -> None:
    """atomic_write for many files with one flush: stage all, sync once, then rename each.

    Every file is still replaced by a rename of a complete, flushed temp file; a crash leaves
    each path either old or new, never half-written. Staged files are removed on failure."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data, mode in items:
            staged.append((_stage(path, data, mode, fsync=False), path))
        os.sync()
        for tmp, path in staged:
            tmp.replace(path)
    except BaseException:
        for tmp, _path in staged:
            tmp.unlink(missing_ok=True)
        raise
    for directory in sorted({path.parent for _tmp, path in staged}):
        fsync_dir(directory)


def fsync_dir(directory: Path) -> None:
    """fsync(2) a directory, so that renames and new entries in it survive a crash.

    Raises OSError when the directory cannot be opened (e.g. it does not exist)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_bytes_or_none(path: Path) -> bytes | None:
    """The content of path, or None when it (or a parent directory) does not exist.

    Other errors (a directory, no permission) raise OSError."""
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive, non-blocking flock on path; fail at once when another process holds it.

    The lock file (and its directory) is created when missing and holds the holder's pid while
    locked; the lock is released when the `with` block ends (see flock(2)). Raises LockedError,
    naming the other holder's pid, when the lock is taken, and OSError for any other failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                raise LockedError(
                    f"another clustcontrol apply is running (pid {holder}, lock {path})",
                    hint="wait for it to finish, then run apply again",
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
