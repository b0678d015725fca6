"""Scratch directories that outlive a killed owner only until the next one is made.

A scratch directory (`PREFIX` + random, in the temp directory: tempfile.mkdtemp) holds a lock
file, `lock`, that its owner keeps locked (flock(2), exclusive) while it uses the directory; the
lock goes with the owner's last descriptor, also when the owner is killed (SIGKILL) and its
`finally` never runs. Making a new scratch directory first removes those of the same prefix
whose lock nobody holds, that belong to this user and have nothing mounted below them. A
directory without a lock file is left alone: one being made (its lock is taken under another
name, then renamed into place) or one from a program that does not lock.

    with scratch_dir("clustcontrol-rehearse-") as (tmp, stale):
        ...  # tmp: the new directory; stale: the directories removed
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from clustcontrol.errors import CommandError

LOCK = "lock"
_STAGED_LOCK = "lock.new"
_OCTAL = re.compile(rb"\\([0-7]{3})")


def mounted_below(directory: Path, mounts: Path = Path("/proc/self/mounts")) -> list[str]:
    """The mount points at or below `directory` in the mount table `mounts` (proc(5) format:
    the second field, its octal escapes such as \\040 decoded), in table order."""
    want = os.fsencode(directory)
    found = []
    for line in mounts.read_bytes().splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        point = _OCTAL.sub(lambda m: bytes([int(m[1], 8)]), fields[1])
        if point == want or point.startswith(want + b"/"):
            found.append(os.fsdecode(point))
    return found


def remove_stale(
    prefix: str, directory: Path | None = None, mounts: Path = Path("/proc/self/mounts")
) -> list[Path]:
    """Remove the scratch directories `prefix`* in `directory` (default: the temp directory)
    whose owner is gone: a real directory of this user with a regular file `lock` that no
    process holds locked, and nothing mounted at or below it (`mounts`: the mount table to
    look in). Others are left alone. Returns the removed directories, sorted. Errors while
    removing are ignored (what is left is tried again next time)."""
    top = directory if directory is not None else Path(tempfile.gettempdir())
    removed = []
    for path in sorted(top.glob(f"{prefix}*")):
        with suppress(FileNotFoundError):
            st = path.lstat()
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
                continue
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            try:
                fd = os.open(path / LOCK, flags)
            except OSError:  # none (being made, or not ours), a link, not readable
                continue
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its owner runs
                if mounted_below(path, mounts):
                    continue
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
            finally:
                os.close(fd)
    return removed


@contextmanager
def scratch_dir(prefix: str) -> Iterator[tuple[Path, list[Path]]]:
    """A new scratch directory `prefix`XXXXXXXX in the temp directory (mode 0700), its lock
    held for the `with` block, then removed; stale ones of the same prefix (remove_stale) are
    removed first. Yields (the directory, the stale directories removed).

    Raises OSError when the directory cannot be made, CommandError (leaving it in place) when
    something is still mounted below it at the end."""
    stale = remove_stale(prefix)
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp / _STAGED_LOCK, flags, 0o600)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, f"{os.getpid()}\n".encode())  # for people: who made it
        (tmp / _STAGED_LOCK).rename(tmp / LOCK)  # locked before anyone can find it
        yield tmp, stale
    finally:
        try:
            left = mounted_below(tmp)
            if left:
                raise CommandError(f"{tmp}: {left[0]} is still mounted below it; left in place")
            shutil.rmtree(tmp, ignore_errors=True)
        finally:
            os.close(fd)
