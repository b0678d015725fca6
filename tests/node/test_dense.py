"""dense.sh under busybox sh: reading the generation's list of dense files, choosing what a copy
may have written, and allocating those files inside the root only, their times and attributes
restored from the source."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.holes import filefrag_holes, have_filefrag
from tests.node.conftest import BUSYBOX, ENGINE, module_sh

MODULES = ["params", "disk", "net", "record", "copy", "delta", "dense"]
MTIME = 1_600_000_000_250_000_000


def sh(body: str, **env: str) -> tuple[int, str]:
    return module_sh(MODULES, body, **env)


def fetch(tmp_path: Path, listed: str | None) -> tuple[int, str, str]:
    std = tmp_path / "std"
    (std / "etc").mkdir(parents=True, exist_ok=True)
    if listed is not None:
        (std / "etc/clustcontrol-dense").write_text(listed)
    rc, out = sh(
        f"CC_STD_GENERATION=2-b\ncc_dense_list nfs '{std}/' '{tmp_path}/list'",
        CC_RUN_DIR=str(tmp_path),
    )
    return rc, out, (tmp_path / "list").read_text()


def test_a_good_list(tmp_path: Path) -> None:
    rc, out, listed = fetch(
        tmp_path, "# clustcontrol-dense 1 2-b\n4096 swapfile\n1024 a b/c\n# end\n"
    )
    assert rc == 0, out
    assert listed == "4096 swapfile\n1024 a b/c\n"


@pytest.mark.parametrize(
    ("listed", "why"),
    [
        ("# clustcontrol-dense 1 1-a\n4096 swapfile\n# end\n", "is not of it or is truncated"),
        ("# clustcontrol-dense 1 2-b\n4096 swapfile\n", "is not of it or is truncated"),
        ("# clustcontrol-dense 1 2-b\n512 swapfile\n# end\n", "is malformed"),
        ("# clustcontrol-dense 1 2-b\n4096 ../etc/shadow\n# end\n", "outside the root"),
        ("# clustcontrol-dense 1 2-b\n4096 /etc/passwd\n# end\n", "outside the root"),
        (None, ""),  # a tree committed before the list: nothing to say
    ],
)
def test_no_list_or_a_bad_one_allocates_nothing(
    tmp_path: Path, listed: str | None, why: str
) -> None:
    rc, out, got = fetch(tmp_path, listed)
    assert rc == 0 and got == "", out
    assert why in out if why else "WARNING" not in out, out


def test_only_sizes_that_make_holes_on_the_root(tmp_path: Path) -> None:
    """The root's blocks are 4096 bytes (this machine's /tmp file system; a 1024-byte list entry
    has no hole there) and the filter's exclusions are left alone."""
    block = os.statvfs(tmp_path).f_frsize
    (tmp_path / "list").write_text("4096 a\n2048 b\n1024 c\n4096 etc/fstab\n4096 d e\n")
    (tmp_path / "filter").write_text("- /etc/fstab\n")
    rc, out = sh(
        f"cc_dense_wanted '{tmp_path}' '{tmp_path}/list' '{tmp_path}/filter' '{tmp_path}/want'"
    )
    assert rc == 0, out
    wanted = (tmp_path / "want").read_text().splitlines()
    assert wanted == [p for p, size in (("a", 4096), ("b", 2048), ("c", 1024), ("d e", 4096))
                      if size >= min(block, 4096)]  # fmt: skip


def sparse_zeros(path: Path, size: int = 64 * 1024) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"head")
        f.truncate(size)
    os.utime(path, ns=(MTIME, MTIME))


def dense_zeros(path: Path, size: int = 64 * 1024) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"head" + bytes(size - 4))
    os.utime(path, ns=(MTIME, MTIME))


@pytest.mark.skipif(not have_filefrag(), reason="needs filefrag (e2fsprogs)")
def test_dense_files_are_allocated_inside_the_root_only(tmp_path: Path) -> None:
    """Listed: a file with holes (allocated, its time back), one the filter excludes, one
    reached through a symlinked directory and a symlink to a file, both leading out of the
    root, and one the copy did not write (a delta that did not list it). Only the first is
    allocated; nothing outside the root is touched."""
    src, root, outside = tmp_path / "src", tmp_path / "root", tmp_path / "outside"
    for rel in ("swap", "excluded", "old", "dir/x", "link"):
        dense_zeros(src / rel)
    for rel in ("swap", "excluded", "old"):
        sparse_zeros(root / rel)
    os.utime(root / "swap", ns=(0, 0))  # the copy's own time would be the source's: moved
    sparse_zeros(outside / "x")
    sparse_zeros(outside / "file")
    (root / "dir").symlink_to(outside)
    (root / "link").symlink_to(outside / "file")
    (tmp_path / "list").write_text("4096 swap\n4096 excluded\n4096 old\n4096 dir/x\n4096 link\n")
    (tmp_path / "filter").write_text("- /excluded\n")
    (tmp_path / "delta").write_text("swap\nexcluded\ndir/x\nlink\n")
    rc, out = sh(
        f"CC_RUN_DIR='{tmp_path}'\n"
        f"cc_dense_fill '{root}' '{src}/' '{tmp_path}/filter' delta '{tmp_path}/list' "
        f"'{tmp_path}/delta'"
    )
    assert rc == 0, out
    assert "dense files allocated: 1 (fallocate)" in out, out
    assert "/dir is a symbolic link: /dir/x not written" in out, out
    assert not filefrag_holes(root / "swap")
    assert os.lstat(root / "swap").st_mtime_ns == MTIME
    for path in (root / "excluded", root / "old", outside / "x", outside / "file"):
        assert filefrag_holes(path), path
        assert os.lstat(path).st_mtime_ns == MTIME, path
    assert (tmp_path / "dense.wanted").read_text().splitlines() == ["swap", "old", "dir/x", "link"]


@pytest.mark.skipif(not shutil.which("dash"), reason="needs dash")
def test_without_fallocate_the_engine_says_so(tmp_path: Path) -> None:
    """An initramfs without fallocate (neither util-linux's nor busybox's applet) copies as
    before and says what that means. Under dash: the static busybox of the tests runs its own
    applets whatever PATH holds (Debian's busybox in the initramfs looks in PATH)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("awk", "cp", "grep", "sed", "stat", "tr", "wc", "xargs", "rm", "cat"):
        (bindir / tool).symlink_to(BUSYBOX)
    root = tmp_path / "root"
    sparse_zeros(root / "swapfile")
    (tmp_path / "list").write_text("4096 swapfile\n1024 swapfile\n")
    (tmp_path / "filter").write_text("- /proc/**\n")
    sources = "".join(f". '{ENGINE}/{m}.sh'\n" for m in ("contract", "log", *MODULES))
    proc = subprocess.run(
        [
            str(shutil.which("dash")),
            "-c",
            f"set -u\n{sources}cc_defaults\nCC_RUN_DIR='{tmp_path}'\n"
            f"cc_dense_fill '{root}' '{tmp_path}/src/' '{tmp_path}/filter' tar '{tmp_path}/list'",
        ],
        capture_output=True,
        text=True,
        env={"PATH": str(bindir), "CC_LOG": "", "CC_WARN_PAUSE": "0"},
        check=False,
    )
    rc, out = proc.returncode, proc.stdout + proc.stderr
    assert rc == 0, out
    assert "no fallocate in the initramfs: 1 file(s) fully allocated in the standard keep" in out


def test_a_seeded_dense_file_is_separated_without_holes(tmp_path: Path) -> None:
    """cc_separate_seeded made a seeded persistent file hard-linked outside it anew with tar
    --sparse, which left a hole in each zero block of a dense file; such a file is now copied
    by rsync, its zero blocks written, its time and attributes kept."""
    if not have_filefrag() or os.geteuid() != 0:
        pytest.skip("needs filefrag and root (setcap)")
    root = tmp_path / "root"
    dense_zeros(root / "var/lib/keep/db")
    subprocess.run(["setcap", "cap_net_raw+ep", str(root / "var/lib/keep/db")], check=True)
    os.utime(root / "var/lib/keep/db", ns=(MTIME, MTIME))
    os.link(root / "var/lib/keep/db", root / "usr-db")
    sparse_zeros(root / "var/lib/keep/log")
    os.link(root / "var/lib/keep/log", root / "usr-log")
    (tmp_path / "dense.wanted").write_text("var/lib/keep/db\nusr-db\n")
    rc, out = sh(
        f"CC_RUN_DIR='{tmp_path}' CC_PERSISTENT='/var/lib/keep' CC_OWN_PATHS=''\n"
        f"cc_separate_seeded '{root}'"
    )
    assert rc == 0, out
    db, log = root / "var/lib/keep/db", root / "var/lib/keep/log"
    assert os.stat(db).st_ino != os.stat(root / "usr-db").st_ino
    assert os.stat(log).st_ino != os.stat(root / "usr-log").st_ino
    assert not filefrag_holes(db) and filefrag_holes(log)
    assert os.lstat(db).st_mtime_ns == MTIME == os.lstat(log).st_mtime_ns
    assert os.getxattr(db, "security.capability")
    assert db.read_bytes() == (root / "usr-db").read_bytes()
