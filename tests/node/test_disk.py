"""disk.sh under busybox sh, on disk image files (no loop device): the layout check. The rest
(partitioning, mkfs, e2fsck on loop devices) runs in test_engine.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.node.conftest import SFDISK_A, SFDISK_B, module_sh


def sh(body: str, **env: str) -> tuple[int, str]:
    return module_sh(["disk"], body, **env)


def blank_disk(path: Path, mib: int) -> Path:
    """A sparse disk image file of `mib` MiB."""
    with open(path, "wb") as f:
        f.truncate(mib * 1024 * 1024)
    return path


def test_layout_state_on_image_files(tmp_path: Path) -> None:
    """Blank / same / different, comparing via a scratch file."""
    script_a, script_b = tmp_path / "a", tmp_path / "b"
    script_a.write_text(SFDISK_A)
    script_b.write_text(SFDISK_B)
    disk = blank_disk(tmp_path / "disk.img", 72)
    state = f"cc_layout_state '{disk}' '{{}}' '{tmp_path}'"
    assert sh(state.format(script_a)) == (0, "blank\n")
    subprocess.run(["sfdisk", "-q", str(disk)], input=SFDISK_A, text=True, check=True)
    assert sh(state.format(script_a)) == (0, "same\n")
    assert sh(state.format(script_b)) == (0, "different\n")
    assert not (tmp_path / "layout-scratch.img").exists()


def test_layout_state_gpt_ignores_random_uuids(tmp_path: Path) -> None:
    script = tmp_path / "gpt"
    script.write_text("label: gpt\n,8MiB,S\n,,L\n")
    disk = blank_disk(tmp_path / "disk.img", 64)
    subprocess.run(["sfdisk", "-q", str(disk)], input=script.read_text(), text=True, check=True)
    assert sh(f"cc_layout_state '{disk}' '{script}' '{tmp_path}'") == (0, "same\n")


def test_a_script_that_does_not_fit_the_disk_is_an_error(tmp_path: Path) -> None:
    script = tmp_path / "big"
    script.write_text("label: dos\n,4MiB,L\n,8MiB,L\n")
    disk = blank_disk(tmp_path / "disk.img", 8)
    rc, out = sh(f"cc_layout_state '{disk}' '{script}' '{tmp_path}'")
    assert rc == 1
    assert "does not apply to a disk of 8388608 bytes" in out


def test_labels_and_persistent_partitions() -> None:
    rc, out = sh(
        "for u in root swap data; do cc_fs_label_for $u 3; done\n"
        "CC_PARTITIONS='1:swap:swap::0 2:root:ext4:/:0 3:data:ext4:/scratch:1 4:data:ext4:/t:0'\n"
        "cc_persistent_words"
    )
    assert (rc, out) == (0, "ccroot\nccswap3\nccdata3\n3:data:ext4:/scratch:1\n")


def test_disk_size_of_a_file(tmp_path: Path) -> None:
    disk = tmp_path / "d"
    with open(disk, "wb") as f:
        f.truncate(12345)
    assert sh(f"cc_disk_size '{disk}'; cc_sector_size '{disk}'") == (0, "12345\n512\n")
    assert sh(f"cc_disk_size '{tmp_path}/missing'")[0] == 1


def test_layout_state_of_a_disk_whose_name_holds_colons(tmp_path: Path) -> None:
    """udev's by-path names hold ':' (pci-0000:00:1f.2-ata-1); sfdisk --dump prints them."""
    script = tmp_path / "a"
    script.write_text(SFDISK_A)
    disk = blank_disk(tmp_path / "pci-0000:00:1f.2-ata-1", 72)
    subprocess.run(["sfdisk", "-q", str(disk)], input=SFDISK_A, text=True, check=True)
    assert sh(f"cc_layout_state '{disk}' '{script}' '{tmp_path}'") == (0, "same\n")
    rc, out = sh(f"cc_dump_disk '{disk}'")
    assert rc == 0 and out.splitlines()[-1].startswith("3 : start="), out
