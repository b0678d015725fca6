"""Scratch directories (clustcontrol.scratchdir): one whose owner is gone is removed by the next,
one in use, being made, not ours, or with something mounted below it never is."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clustcontrol.errors import CommandError
from clustcontrol.scratchdir import LOCK, mounted_below, remove_stale, scratch_dir

PREFIX = "cc-test-scratch-"


def make(top: Path, name: str, lock: str | None = "free") -> Path:
    """A scratch directory top/PREFIX+name whose lock is `free`, a `link`, a `dir`, or None."""
    path = top / f"{PREFIX}{name}"
    path.mkdir()
    (path / "out").mkdir()
    (path / "out/facts").write_text("x\n")
    if lock == "free":
        (path / LOCK).write_text("12345\n")
    elif lock == "link":
        (path / "target").write_text("")
        (path / LOCK).symlink_to("target")
    elif lock == "dir":
        (path / LOCK).mkdir()
    return path


def test_only_directories_whose_lock_is_free_are_removed(tmp_path: Path) -> None:
    stale = make(tmp_path, "stale")
    held = make(tmp_path, "held")
    fd = os.open(held / LOCK, os.O_RDONLY)  # another open file description: flock conflicts
    fcntl.flock(fd, fcntl.LOCK_EX)
    others = [
        make(tmp_path, "being-made", None),
        make(tmp_path, "link", "link"),
        make(tmp_path, "dir", "dir"),
    ]
    (tmp_path / f"{PREFIX}file").write_text("")
    (tmp_path / f"{PREFIX}dirlink").symlink_to(stale)
    (tmp_path / "other-stale").mkdir()
    (tmp_path / "other-stale" / LOCK).write_text("")
    try:
        assert remove_stale(PREFIX, tmp_path) == [stale]
    finally:
        os.close(fd)
    assert not stale.exists() and (held / "out/facts").exists()
    assert all((p / "out/facts").exists() for p in others)
    assert (tmp_path / "other-stale").exists()
    assert remove_stale(PREFIX, tmp_path) == [held]  # its owner is gone now


def test_a_directory_with_a_mount_below_it_stays(tmp_path: Path) -> None:
    """From the mount table: a line with the directory (octal escapes decoded) or below it."""
    stale = make(tmp_path, "with space")
    mounts = tmp_path / "mounts"
    escaped = str(stale).replace(" ", "\\040")
    mounts.write_text(f"tmpfs {escaped}/out tmpfs rw 0 0\n")
    assert mounted_below(stale, mounts) == [f"{stale}/out"]
    assert remove_stale(PREFIX, tmp_path, mounts) == []
    assert (stale / "out/facts").exists()
    mounts.write_text(f"tmpfs {escaped}-not-below tmpfs rw 0 0\n")
    assert remove_stale(PREFIX, tmp_path, mounts) == [stale]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a mount)")
def test_a_real_mount_below_keeps_it(tmp_path: Path) -> None:
    """A tmpfs mounted below a stale directory, in a mount namespace of its own: the
    directory and the mounted file stay."""
    stale = make(tmp_path, "mounted")
    code = (
        "import sys; from pathlib import Path; from clustcontrol.scratchdir import remove_stale;"
        f"print(remove_stale({PREFIX!r}, Path(sys.argv[1])))"
    )
    script = (
        f'mount -t tmpfs none "$1/{PREFIX}mounted/out" && echo kept >"$1/{PREFIX}mounted/out/f"'
    )
    script += f' && {sys.executable} -c "$2" "$1" && cat "$1/{PREFIX}mounted/out/f"'
    argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
    proc = subprocess.run(
        [*argv, str(tmp_path), code],
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout == "[]\nkept\n"
    assert (stale / "out/facts").exists()


def test_scratch_dir_is_locked_while_used_and_removed_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    stale = make(tmp_path, "killed")
    with scratch_dir(PREFIX) as (tmp, removed):
        assert removed == [stale] and not stale.exists()
        assert tmp.parent == tmp_path and tmp.name.startswith(PREFIX)
        assert (tmp / LOCK).read_text() == f"{os.getpid()}\n"
        assert oct(tmp.stat().st_mode & 0o777) == "0o700"
        assert remove_stale(PREFIX, tmp_path) == []  # in use
    assert list(tmp_path.iterdir()) == []


def test_a_killed_owner_leaves_it_to_the_next(tmp_path: Path) -> None:
    """The owner SIGKILLed in the middle: its directory stays, its lock is free."""
    code = (
        "import os, signal, sys, tempfile; tempfile.tempdir = sys.argv[1];"
        "from clustcontrol.scratchdir import scratch_dir\n"
        f"with scratch_dir({PREFIX!r}) as (tmp, _): print(tmp, flush=True); "
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == -9
    left = Path(proc.stdout.strip())
    assert left.is_dir() and (left / LOCK).is_file()
    assert remove_stale(PREFIX, tmp_path) == [left]


def test_a_mount_left_below_it_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    monkeypatch.setattr(
        "clustcontrol.scratchdir.mounted_below", lambda d, mounts=None: [f"{d}/roots"]
    )
    made = []
    with (
        pytest.raises(CommandError, match="roots is still mounted below it; left in place"),
        scratch_dir(PREFIX) as (tmp, _),
    ):
        made.append(tmp)
    assert made[0].is_dir()
