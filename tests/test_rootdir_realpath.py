"""RootDir.realpath: where a directory path leads inside a tree, links followed inside it (as if
the tree were the root) and missing components taken as written."""

from __future__ import annotations

import contextlib
import os
import posixpath
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from clustcontrol.errors import UnsafePathError
from clustcontrol.rootdir import RootDir


def realpath(root: Path, path: str) -> str:
    with RootDir(root) as tree:
        return tree.realpath(path)


def test_links_are_followed_inside_the_tree(tmp_path: Path) -> None:
    (tmp_path / "var/lib/tftpboot/store").mkdir(parents=True)
    (tmp_path / "srv").mkdir()
    (tmp_path / "var/lib/cc").symlink_to("tftpboot/store")  # relative
    (tmp_path / "var/lib/abs").symlink_to("/srv/store")  # absolute: from the tree's top
    (tmp_path / "var/lib/up").symlink_to("../../../../../srv")  # '..' stops at the top
    (tmp_path / "var/lib/dangling").symlink_to("tftpboot/missing/deeper")
    (tmp_path / "var/lib/hop").symlink_to("cc")
    assert realpath(tmp_path, "/var/lib/cc") == "/var/lib/tftpboot/store"
    assert realpath(tmp_path, "/var/lib/cc/images/x") == "/var/lib/tftpboot/store/images/x"
    assert realpath(tmp_path, "/var/lib/hop/images") == "/var/lib/tftpboot/store/images"
    assert realpath(tmp_path, "/var/lib/abs/images") == "/srv/store/images"
    assert realpath(tmp_path, "/var/lib/up") == "/srv"
    assert realpath(tmp_path, "/var/lib/dangling/a") == "/var/lib/tftpboot/missing/deeper/a"
    assert realpath(tmp_path, "/nothing/here") == "/nothing/here"
    assert realpath(tmp_path, "/") == "/"
    assert realpath(tmp_path / "absent", "/var/lib/cc") == "/var/lib/cc"


def test_what_cannot_be_resolved_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    (tmp_path / "loop").symlink_to("loop")
    for path, why in [
        ("/file/below", "is not a directory"),
        ("/loop", "too many levels of symbolic links"),
        ("/a/../b", "not a normalized absolute path"),
        ("relative", "not a normalized absolute path"),
    ]:
        with pytest.raises(UnsafePathError, match=why):
            realpath(tmp_path, path)


NAMES = ("a", "b", "c")
# Link targets: relative and absolute, with '..' and '.', some missing.
TARGETS = st.lists(st.sampled_from([*NAMES, "..", ".", "x"]), min_size=1, max_size=4).map(
    "/".join
) | st.lists(st.sampled_from([*NAMES, "..", "x"]), max_size=4).map(lambda p: "/" + "/".join(p))
TREES = st.dictionaries(
    st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join),
    st.none() | TARGETS,  # None: a directory
    max_size=8,
)
PATHS = st.lists(st.sampled_from([*NAMES, "x"]), max_size=3).map(lambda p: "/" + "/".join(p))


def _build(root: Path, tree: dict[str, str | None]) -> None:
    """Make the entries of `tree` under `root` through directory descriptors opened with
    O_NOFOLLOW: an entry whose directory is missing, a file or a link is skipped, so nothing is
    ever made through a link (a link to "/" would put it on the host)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    for rel, target in sorted(tree.items()):
        *dirs, name = rel.split("/")
        fd = os.open(root, flags)
        try:
            for part in dirs:
                try:
                    below = os.open(part, flags, dir_fd=fd)
                except OSError:  # missing, a file or a link: skip the entry
                    break
                os.close(fd)
                fd = below
            else:
                with contextlib.suppress(FileExistsError):
                    if target is None:
                        os.mkdir(name, dir_fd=fd)
                    else:
                        os.symlink(target, name, dir_fd=fd)
        finally:
            os.close(fd)


def _oracle(root: Path, path: str) -> str:
    """os.path.realpath in a child chrooted into `root`: the kernel's view of the tree as /."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read)
            os.chroot(root)
            os.chdir("/")
            os.write(write, os.path.realpath(path).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        found = f.read().decode()
    os.waitpid(pid, 0)
    return found


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot)")
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tree=TREES, data=st.data())
def test_realpath_agrees_with_the_kernel_in_a_chroot(
    tmp_path_factory: pytest.TempPathFactory, tree: dict[str, str | None], data: st.DataObject
) -> None:
    """Oracle: os.path.realpath (lstat and readlink per component, '..' on the resolved path,
    missing components kept) inside chroot(2) of the tree. Paths start at one of the tree's
    entries, mostly. Loops are left out: there os.path.realpath gives up quietly, realpath
    refuses."""
    root = tmp_path_factory.mktemp("tree")
    _build(root, tree)
    start = data.draw(st.sampled_from(["", *sorted(tree)]))
    path = posixpath.normpath(f"/{start}{data.draw(PATHS)}")
    try:
        found = realpath(root, path)
    except UnsafePathError:
        assume(False)
        return
    assert found == posixpath.normpath(_oracle(root, path))
