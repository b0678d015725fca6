"""fallback.sh under busybox sh: which device to fall back to, and a node with nothing to boot.
Booting an earlier copy from a real disk runs in test_engine.py."""

from __future__ import annotations

from tests.node.conftest import module_sh


def sh(body: str, **env: str) -> tuple[int, str]:
    return module_sh(["disk", "record", "fallback"], body, **env)


def test_fallback_device() -> None:
    assert sh("CC_ARG_ROOT=/dev/vda2\ncc_fallback_device") == (0, "/dev/vda2\n")
    assert sh("CC_ARG_ROOT=/dev/sda3\ncc_fallback_device", CC_DISK_OVERRIDE="/dev/loop4") == (
        0,
        "/dev/loop4p3\n",
    )
    assert sh("CC_ARG_ROOT=''\ncc_fallback_device", CC_DISK_OVERRIDE="/dev/nvme0n1") == (
        0,
        "/dev/nvme0n1p2\n",
    )


def test_no_device_to_fall_back_to() -> None:
    _, out = sh('cc_fallback "" "master unreachable"; echo "rc=$?"')
    assert out.startswith("rc=1\n")
    assert "master unreachable; and no local root device (none) to fall back to" in out
    _, out = sh('cc_fallback /dev/cc-no-such-disk "down"; echo "rc=$?"', CC_DISK_WAIT="0")
    assert "no local root device (/dev/cc-no-such-disk)" in out
