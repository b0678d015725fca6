"""net.sh under busybox sh: back-off, retries, the sync source, files and the control
directory from an NFS-mounted standard (a plain directory here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.node.conftest import SERVED_PATH, module_sh, write_control


def sh(body: str, **env: str) -> tuple[int, str]:
    return module_sh(["params", "disk", "net"], body, **env)


def test_backoff_grows_with_jitter_and_cap() -> None:
    rc, out = sh(
        "for i in 1 2 3 4 5 6; do cc_backoff_delay $i; done", CC_RETRY_BASE="2", CC_RETRY_MAX="20"
    )
    assert rc == 0, out
    delays = [int(x) for x in out.split()]
    for d, low in zip(delays, [2, 4, 8, 16, 20, 20], strict=True):
        assert low <= d <= low + low // 2


def test_retry_counts_attempts() -> None:
    _, out = sh(
        "n=0\nflaky() { n=$((n+1)); [ $n -ge 3 ]; }\n"
        'cc_retry 5 flaky flaky; echo "rc=$? n=$n"\n'
        'n=-10\ncc_retry 2 never flaky; echo "rc=$? n=$n"',
        CC_RETRY_BASE="0",
    )
    assert "rc=0 n=3" in out
    assert "rc=1 n=-7" in out
    assert "never: failed after 3 attempt(s)" in out


def test_source_by_transport() -> None:
    """The generation roots, and the current generation's tree in them."""
    rc, out = sh(
        "CC_SERVER=10.0.0.1 CC_RSYNC_PORT=8873 CC_RSYNC_MODULE=gpu CC_IMAGE=gpu\n"
        "cc_served nfs; cc_served rsync; CC_STD_GENERATION=4-0123456789ab\n"
        "cc_source nfs; cc_source rsync",
        CC_RUN_DIR="/run/cc",
    )
    assert (rc, out) == (
        0,
        "/run/cc/source/\nrsync://10.0.0.1:8873/gpu/\n"
        "/run/cc/source/4-0123456789ab/\nrsync://10.0.0.1:8873/gpu/4-0123456789ab/\n",
    )
    rc, out = sh("cc_source nfs", CC_RUN_DIR="/run/cc")
    assert rc != 0 and "no generation chosen" in out


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("12-0123456789ab\n", "12-0123456789ab"),
        ("3-abc\nsecond line\n", "3-abc"),
        ("7-abc;rm -rf /\n", None),
        ("../1-abc\n", None),
        (".new\n", None),
        ("\n", None),
        (None, None),
    ],
)
def test_current_generation_names_a_generation_or_fails(
    tmp_path: Path, content: str | None, expected: str | None
) -> None:
    """CC_CURRENT_FILE of the generation roots: one SEQ-HASH, nothing else is used as a path."""
    served = tmp_path / "served"
    served.mkdir()
    if content is not None:
        (served / "current").write_text(content)
    rc, out = sh(
        'cc_current_generation nfs && echo "got $CC_STD_GENERATION"',
        CC_SOURCE_MNT=str(served),
        CC_RUN_DIR=str(tmp_path),
        CC_IMAGE="default",
    )
    if expected is None:
        assert rc == 1, out
        assert "has no committed generation" in out or "names no generation" in out
    else:
        assert rc == 0, out
        assert f"got {expected}\n" in out


def test_fetch_file_over_nfs(tmp_path: Path) -> None:
    std = tmp_path / "std"
    (std / "etc").mkdir(parents=True)
    (std / "etc/x").write_text("x\n")
    dest = tmp_path / "dest"
    rc, out = sh(f"cc_fetch_file nfs '{std}/' etc/x '{dest}' && cat '{dest}'")
    assert (rc, out) == (0, "x\n")
    rc, out = sh(f"cc_fetch_file nfs '{std}/' etc/missing '{dest}'; echo $?; ls '{dest}'")
    assert out.startswith("0\n") and "No such file" in out


def test_fetch_control_from_the_control_dir_path(tmp_path: Path) -> None:
    """The control directory is read where CC_CONTROL_DIR says, not at a fixed path."""
    std = tmp_path / "std"
    write_control(std / "srv/clustcontrol.d", control_dir="/srv/clustcontrol.d")
    (std / "etc").mkdir()
    body = f"cc_fetch_control nfs 10.0.0.1 default '{tmp_path}/got' && ls '{tmp_path}/got'"
    rc, out = sh(body, CC_SOURCE_MNT=str(std), CC_CONTROL_DIR="/srv/clustcontrol.d")
    assert rc == 0, out
    assert "default\n" in out and "nodes\n" in out
    rc, out = sh(body, CC_SOURCE_MNT=str(std), CC_CONTROL_DIR="/etc/clustcontrol")
    assert rc == 1
    assert "no etc/clustcontrol on the master's export" in out


def test_image_root_from_the_switch_or_the_baked_copy(tmp_path: Path) -> None:
    ctl = tmp_path / "ctl"
    write_control(ctl)
    assert sh("CC_ARG_IMAGEROOT=/srv/a\ncc_image_root default") == (0, "/srv/a\n")
    assert sh("CC_ARG_IMAGEROOT=''\ncc_image_root default", CC_BAKED_CONTROL=str(ctl)) == (
        0,
        f"{SERVED_PATH}\n",
    )
    assert sh("CC_ARG_IMAGEROOT=''\ncc_image_root gpu", CC_BAKED_CONTROL=str(ctl))[0] == 1
