"""A disk named by a link of any common shape (udev's by-id and by-path names, NVMe and MMC
ones) is partitioned, formatted and synced: the engine finds the partitions by the kernel's
naming of the device the link leads to (a layout on /dev/disk/by-id/wwn-... looked for
...-part1, which only udev makes, and failed with "did not appear")."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.node.conftest import Node
from tests.node.test_engine import assert_ok, record

pytestmark = pytest.mark.slow

SHAPES = [
    "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4",
    "/dev/disk/by-id/nvme-Samsung_SSD_980_1TB_S64ANX0R123456",
    "/dev/disk/by-path/pci-0000:00:17.0-ata-1",
    "/dev/disk/by-path/platform-fe340000.mmc",
    "/dev/disk/by-id/mmc-SC64G_0x1234abcd",
]


@pytest.mark.parametrize("shape", SHAPES)
def test_a_disk_named_by_a_link_is_partitioned_and_synced(node: Node, shape: str) -> None:
    link = Path(f"{shape}-cc{uuid.uuid4().hex[:6]}")  # never one the machine has
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(node.disk)
    try:
        r = node.run(CC_DISK_OVERRIDE=str(link))
        assert_ok(r)
        assert f"layout default on {link} ({os.path.realpath(node.disk)})" in r.out, r.out
        assert "making ext4 on " + node.part(2) in r.out, r.out
        with node.mounted(2) as root:
            assert record(root)["CC_SYNC_GENERATION"]
        r = node.run(CC_DISK_OVERRIDE=str(link))
        assert_ok(r)
        assert "layout same" in r.out, r.out
    finally:
        link.unlink()
