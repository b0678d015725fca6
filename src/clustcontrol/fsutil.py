"""File-system primitives: atomic replacement, the name of our temp files, and locks.

Paths under apply's --root go through clustcontrol.rootdir instead, which resolves them inside
the root; the functions here take paths as given (the inventory, the image store)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from clustcontrol.errors import LockedError

# `.NAME.clustcontrol-XXXXXXXX.tmp`: recognisable, so that an interrupted run's leftovers can
# be removed without touching anybody else's files. NAME is cut to keep within NAME_MAX.
_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.clustcontrol-[0-9a-f]{8}\.tmp")


def temp_name(name: str) -> str:
    """A fresh temp file name for a file called `name` (a base name, no '/'): hidden, ending in
    `.clustcontrol-XXXXXXXX.tmp` with 8 random hex digits. Never the same twice in practice;
    callers still create it with O_EXCL."""
    return f".{name[:200]}.clustcontrol-{secrets.token_hex(4)}.tmp"


def is_temp_name(name: str) -> bool:
    """True when `name` (a base name) has the shape temp_name gives."""
    return _TEMP_NAME.fullmatch(name) is not None


def _stage(path: Path, data: bytes, mode: int | None) -> Path:
    """Write and flush data to a temp file beside path, with path's mode and owner (or `mode`
    when new)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        st: os.stat_result | None = path.stat()
    except FileNotFoundError:
        st = None
    tmp = path.parent / temp_name(path.name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
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
    tmp = _stage(path, data, mode)
    tmp.replace(path)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """fsync(2) a directory, so that renames and new entries in it survive a crash.

    Raises OSError when the directory cannot be opened (e.g. it does not exist)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_regular(name: str, *, dir_fd: int | None = None) -> tuple[int | None, os.stat_result]:
    """Open `name` (a path, or a name in the directory `dir_fd`) for reading, but only when it is
    a regular file: it is looked up with O_PATH | O_NOFOLLOW, which opens nothing (no device
    or FIFO is ever opened, a symbolic link at its last component is not followed), checked
    with fstat(2), and only then opened for reading through /proc/self/fd (open(2), O_PATH).

    Returns (read-only descriptor, its status), or (None, status) when it is not a regular
    file (for a link, the link's own status). Raises FileNotFoundError when it is missing,
    OSError for other failures."""
    found = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        st = os.fstat(found)
        if not stat.S_ISREG(st.st_mode):
            return None, st
        return os.open(f"/proc/self/fd/{found}", os.O_RDONLY | os.O_CLOEXEC), st
    finally:
        os.close(found)


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
    with locked_fd(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644), str(path)):
        yield


@contextlib.contextmanager
def waiting_lock(directory: Path, timeout: float) -> Iterator[None]:
    """Hold an exclusive flock on `directory` itself (no lock file is made), waiting up to
    `timeout` seconds for another holder to release it: concurrent edits of a file in it take
    turns instead of losing each other's work. A file that is replaced by rename cannot carry
    the lock: a later process would lock the new inode while another still holds the old.
    Raises LockedError, naming the holder's pid (from /proc/locks), when the wait ends without
    the lock, and OSError for any other failure."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    with locked_fd(fd, str(directory), timeout, record_pid=False):
        yield


def flock_holder(fd: int) -> str:
    """The pid holding a flock(2) lock on the file open as `fd`, as /proc/locks lists it
    (proc(5): "FLOCK ADVISORY WRITE PID MAJOR:MINOR:INODE ..."), or "unknown"."""
    st = os.fstat(fd)
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    with contextlib.suppress(OSError), Path("/proc/locks").open(encoding="ascii") as locks:
        for line in locks:
            fields = line.split()
            if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == where:
                return fields[4]
    return "unknown"


@contextlib.contextmanager
def locked_fd(
    fd: int, name: str, timeout: float = 0.0, *, record_pid: bool = True
) -> Iterator[None]:
    """exclusive_lock on an already opened lock file: `fd` (open for reading and writing, a
    regular file, which gets the holder's pid; with record_pid False any open file or
    directory, the holder found in /proc/locks) is closed when the `with` block ends, `name` is
    how messages call the file; another holder is waited for up to `timeout` seconds (flock(2)
    polled every 20 ms).

    Raises LockedError naming the holder's pid when another process holds the lock (that
    long), OSError for any other failure."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() < deadline:
                    time.sleep(0.02)
                    continue
                holder = flock_holder(fd)
                if record_pid:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or holder
                waited = f" for {timeout:g} s" if timeout else ""
                raise LockedError(
                    f"another clustcontrol command holds the lock {name} (pid {holder}){waited}",
                    hint="wait for it to finish, then run the command again",
                ) from None
        if record_pid:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
