"""The node-side make-disk-bootable script: lint, and the parts that run without a real disk."""

from __future__ import annotations

import os
import subprocess
from importlib import resources
from pathlib import Path

import pytest

from tests.image.conftest import have

SCRIPT = Path(str(resources.files("clustcontrol").joinpath("node/extras/make-disk-bootable")))


def run_script(
    tmp_path: Path, cmdline: str, call: str | None = None
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "cmdline").write_text(cmdline + "\n")
    env = dict(os.environ, CMDLINE_FILE=str(tmp_path / "cmdline"))
    if call is None:
        argv = ["sh", str(SCRIPT)]
    else:
        env["MAKE_DISK_BOOTABLE_NO_MAIN"] = "1"
        argv = ["sh", "-c", f'. "{SCRIPT}"; {call}']
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30, check=False)


def test_script_is_executable_posix_sh_and_shellcheck_clean() -> None:
    assert SCRIPT.stat().st_mode & 0o111
    assert SCRIPT.read_text().startswith("#!/bin/sh\n")
    if not have("shellcheck"):
        pytest.skip("shellcheck is not installed")
    proc = subprocess.run(["shellcheck", "-s", "sh", str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_local_boot_args_drop_network_and_clustcontrol_args(tmp_path: Path) -> None:
    cmdline = (
        "BOOT_IMAGE=default/vmlinuz initrd=default/initrd.img root=/dev/sda2 ip=dhcp "
        "clustcontrol.server=192.168.0.1 clustcontrol.image=default console=ttyS0,115200n8 "
        "quiet BOOTIF=01-52-54-00-00-00-01 *"
    )
    proc = run_script(tmp_path, cmdline, "local_args; cmdline_root")
    assert proc.stdout.splitlines() == [
        "root=/dev/sda2 console=ttyS0,115200n8 quiet * clustcontrol.sync=skip",
        "/dev/sda2",
    ]


def test_nfs_root_is_left_alone(tmp_path: Path) -> None:
    proc = run_script(tmp_path, "root=/dev/nfs boot=nfs nfsroot=192.168.0.1:/srv/x ip=dhcp")
    assert (proc.returncode, proc.stderr) == (0, "")


def test_a_device_that_is_not_the_mounted_root_is_refused(tmp_path: Path) -> None:
    proc = run_script(tmp_path, "root=/dev/clustcontrol-no-such-disk2 ip=dhcp")
    assert proc.returncode == 1
    assert "is not the mounted root file system; nothing done" in proc.stderr
