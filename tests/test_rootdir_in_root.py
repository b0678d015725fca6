"""RootDir resolves a path exactly as the kernel does inside a root (issue 11, case 4).

The oracle is openat2(2) with RESOLVE_IN_ROOT, called through ctypes (Python has no wrapper):
for trees full of symbolic links (absolute, relative with '..', chains, loops, links to files
where directories are needed) and any path, RootDir finds the same file, or finds nothing, or
refuses, as the kernel does; with `follow` the last component is followed as openat2 follows
it, without it the link itself is found (O_NOFOLLOW). RootDir itself never calls openat2: its
walk (one openat(2) per component with O_NOFOLLOW) is the one mechanism, the kernel only checks
it here."""

from __future__ import annotations

import ctypes
import errno
import itertools
import os
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clustcontrol.errors import UnsafePathError
from clustcontrol.rootdir import MAX_SYMLINKS, RootDir

SYS_OPENAT2 = 437  # the same number on every architecture (include/uapi/asm-generic/unistd.h)
RESOLVE_IN_ROOT = 0x10  # include/uapi/linux/openat2.h

Outcome = tuple[str, int, int]  # ("found", st_dev, st_ino) | ("missing"|"error", 0, 0)
MISSING: Outcome = ("missing", 0, 0)
ERROR: Outcome = ("error", 0, 0)


class OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def openat2_in_root(root_fd: int, path: str, follow: bool) -> Outcome:
    """What the kernel finds at `path` inside the directory root_fd (an O_PATH open).

    A walk through '..' fails with EAGAIN when anything on the machine renamed a file meanwhile
    (openat2(2)): it is tried again."""
    flags = os.O_PATH | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    how = OpenHow(flags, 0, RESOLVE_IN_ROOT)
    for _attempt in range(100):
        fd = _libc.syscall(
            SYS_OPENAT2, root_fd, path.encode(), ctypes.byref(how), ctypes.sizeof(how)
        )
        err = ctypes.get_errno() if fd < 0 else 0
        if err != errno.EAGAIN:
            break
    if fd < 0:
        if err == errno.ENOENT:
            return MISSING
        if err in (errno.ENOTDIR, errno.ELOOP):
            return ERROR
        raise OSError(err, os.strerror(err), path)
    try:
        found = os.fstat(fd)
    finally:
        os.close(fd)
    return ("found", found.st_dev, found.st_ino)


def have_openat2() -> bool:
    fd = os.open("/", os.O_PATH)
    try:
        openat2_in_root(fd, ".", True)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


pytestmark = pytest.mark.skipif(not have_openat2(), reason="the kernel has no openat2 (< 5.6)")

NAMES = ("a", "b", "c")
name = st.sampled_from(NAMES)
rel_path = st.lists(name, min_size=1, max_size=3).map("/".join)
target_part = st.sampled_from((*NAMES, "..", ".", "d"))
link_target = st.tuples(
    st.booleans(), st.lists(target_part, min_size=1, max_size=4), st.booleans()
).map(lambda t: ("/" if t[0] else "") + "/".join(t[1]) + ("/" if t[2] else ""))
operation = st.one_of(
    st.tuples(st.just("dir"), rel_path, st.just("")),
    st.tuples(st.just("file"), rel_path, st.just("")),
    st.tuples(st.just("link"), rel_path, link_target),
)


# Every path of up to four components: the names the trees use, and one they never make.
QUERIES = [
    "/" + "/".join(parts)
    for depth in range(1, 5)
    for parts in itertools.product((*NAMES, "d"), repeat=depth)
]


def build(root: Path, operations: list[tuple[str, str, str]]) -> None:
    """Carry out what can be carried out: missing directories on the way are made, and a path
    that exists already or lies below a file or a link is skipped."""
    for kind, rel, target in operations:
        path = root / rel
        if any(p.is_symlink() or p.is_file() for p in path.parents) or os.path.lexists(path):
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "dir":
            path.mkdir()
        elif kind == "file":
            path.write_text(rel)
        else:
            path.symlink_to(target)


def rootdir_outcome(tree: RootDir, path: str) -> Outcome:
    try:
        found = tree.stat(path)
    except UnsafePathError:
        return ERROR
    return MISSING if found is None else ("found", found.st_dev, found.st_ino)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(operations=st.lists(operation, max_size=14))
def test_rootdir_resolves_as_openat2_resolve_in_root(
    tmp_path: Path, operations: list[tuple[str, str, str]]
) -> None:
    with tempfile.TemporaryDirectory(dir=tmp_path) as top:
        root = Path(top) / "root"
        root.mkdir()
        # What a walk on the master's own tree would find instead, if it ever got there.
        for outside in ("a", "b", "c", "d"):
            (Path(top) / outside).write_text("OUTSIDE")
        build(root, operations)
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
        try:
            for follow in (False, True):
                with RootDir(root, follow=follow) as tree:
                    for path in QUERIES:
                        expected = openat2_in_root(root_fd, path.lstrip("/"), follow)
                        assert rootdir_outcome(tree, path) == expected, (path, follow)
                        if expected[0] == "found":
                            resolved = tree.resolve(path)
                            assert resolved is not None
                            # the resolved path has no link left on the way: a plain lstat
                            # from the root finds the same file
                            again = os.lstat(root / resolved.lstrip("/"))
                            assert ("found", again.st_dev, again.st_ino) == expected
        finally:
            os.close(root_fd)


def test_links_count_for_the_whole_path_as_the_kernel_counts_them(tmp_path: Path) -> None:
    # l0 -> l1 -> ... -> l40 -> file: 41 links in all, one more than the kernel follows.
    root = tmp_path / "root"
    root.mkdir()
    (root / "file").write_text("x")
    (root / f"l{MAX_SYMLINKS}").symlink_to("file")
    for index in range(MAX_SYMLINKS):
        (root / f"l{index}").symlink_to(f"l{index + 1}")
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        with RootDir(root, follow=True) as tree:
            for start in (0, 1):
                path = f"/l{start}"
                assert rootdir_outcome(tree, path) == openat2_in_root(root_fd, path[1:], True)
            assert rootdir_outcome(tree, "/l0") == ERROR
            assert rootdir_outcome(tree, "/l1")[0] == "found"
    finally:
        os.close(root_fd)


def chain(directory: Path, prefix: str, length: int, last: str) -> str:
    """prefix0 -> prefix1 -> ... -> last in directory (length links); the first name."""
    for index in reversed(range(length)):
        (directory / f"{prefix}{index}").symlink_to(last)
        last = f"{prefix}{index}"
    return last


@pytest.mark.parametrize(
    "lengths", [(20, 20, 0), (20, 21, 0), (13, 13, 14), (13, 14, 14), (0, 0, 40), (41, 0, 0)]
)
def test_links_on_the_way_and_at_the_end_count_together(
    tmp_path: Path, lengths: tuple[int, int, int]
) -> None:
    # /D/E/F, each name the head of a chain of links to the next directory (or the file)
    root = tmp_path / "root"
    (root / "one/two").mkdir(parents=True)
    (root / "one/two/file").write_text("x")
    first = chain(root, "d", lengths[0], "one")
    second = chain(root / "one", "e", lengths[1], "two")
    third = chain(root / "one/two", "f", lengths[2], "file")
    path = f"/{first}/{second}/{third}"
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        with RootDir(root, follow=True) as tree:
            expected = openat2_in_root(root_fd, path[1:], True)
            assert rootdir_outcome(tree, path) == expected
            assert (expected == ERROR) == (sum(lengths) > MAX_SYMLINKS)
    finally:
        os.close(root_fd)


def test_a_link_to_a_directory_resolves_to_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "real/sub").mkdir(parents=True)
    (root / "up").symlink_to("real/sub/..")
    with RootDir(root, follow=True) as tree:
        assert tree.resolve("/up") == "/real"
        found = tree.stat("/up")
        assert found is not None and stat.S_ISDIR(found.st_mode)
        assert tree.listdir("/up") == ["sub"]
        with pytest.raises(UnsafePathError, match="not a regular file"):
            tree.read("/up")
