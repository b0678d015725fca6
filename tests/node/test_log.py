"""log.sh under busybox sh: console lines, the log file, quiet commands."""

from __future__ import annotations

from pathlib import Path

from tests.node.conftest import module_sh


def test_log_prefix_and_file(tmp_path: Path) -> None:
    log = tmp_path / "boot.log"
    rc, out = module_sh([], "cc_log hello; cc_warn careful; cc_err broken", CC_LOG=str(log))
    assert (rc, out) == (
        0,
        "clustcontrol: hello\nclustcontrol: WARNING: careful\nclustcontrol: ERROR: broken\n",
    )
    lines = log.read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == out.splitlines()


def test_quiet_keeps_output_in_the_log_and_shows_a_failure(tmp_path: Path) -> None:
    log = tmp_path / "boot.log"
    rc, out = module_sh(
        [],
        "cc_quiet echo fine\ncc_quiet sh -c 'echo oops; exit 3'; echo rc=$?",
        CC_LOG=str(log),
        CC_RUN_DIR=str(tmp_path),
    )
    assert rc == 0
    assert "fine" not in out
    assert "clustcontrol:   sh -c echo oops; exit 3 (status 3):\nclustcontrol:     oops\n" in out
    assert out.startswith("rc=3\n")  # stdout first, then the console (stderr)
    assert log.read_text() == "fine\noops\n"
    assert not list(tmp_path.glob("quiet.*"))


def test_loud_frames_and_saved_log(tmp_path: Path) -> None:
    log = tmp_path / "boot.log"
    rc, out = module_sh(
        [],
        f"cc_loud one two\ncc_save_log '{tmp_path}/root'\ncc_save_log '{tmp_path}/root'",
        CC_LOG=str(log),
        CC_LOG_DIR="/logs",
    )
    assert rc == 0
    assert (
        out.count("clustcontrol: " + "!" * 72 + "\n") == 2
        and "clustcontrol: !!! one\nclustcontrol: !!! two\n" in out
    )
    assert (tmp_path / "root/logs/boot-sync.log").read_text() == log.read_text()
    assert (tmp_path / "root/logs/boot-sync.log.1").is_file()
