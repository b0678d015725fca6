"""Look inside a node's raw disk image after its VM powered off.

Partitions are reached by offset (`mount -o loop,offset=...,sizelimit=...`): loop partition
devices (`losetup -P`) need udev or devtmpfs, which a sandbox may lack."""

from __future__ import annotations

import contextlib
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def partition_table(disk: Path) -> str:
    return subprocess.run(
        ["sfdisk", "--dump", str(disk)], capture_output=True, text=True, check=True
    ).stdout


def partition_extent(disk: Path, number: int) -> tuple[int, int]:
    """(offset, size) in bytes of partition `number`, from the disk's partition table."""
    for line in partition_table(disk).splitlines():
        match = re.match(rf"^\S*?{number} : start=\s*(\d+), size=\s*(\d+)", line)
        if match:
            return int(match.group(1)) * 512, int(match.group(2)) * 512
    raise LookupError(f"{disk} has no partition {number}")


@contextlib.contextmanager
def mounted(disk: Path, number: int, writable: bool = False) -> Iterator[Path]:
    """Mount partition `number` of a raw disk image; unmount afterwards."""
    offset, size = partition_extent(disk, number)
    options = f"loop,offset={offset},sizelimit={size}," + ("rw" if writable else "ro,noload")
    with tempfile.TemporaryDirectory(prefix="cc-e2e-mnt-") as mnt:
        subprocess.run(["mount", "-o", options, str(disk), mnt], check=True)
        try:
            yield Path(mnt)
        finally:
            subprocess.run(["umount", mnt], check=True)
