"""One real build: a debootstrapped Debian root (cached), image prepare --rebuild-initramfs, and
lsinitramfs to check our scripts, the engine modules, rsync and the disk drivers are in.

Cold cache: debootstrap, about 70-120 s; warm: a copy of the cached root and update-initramfs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from clustcontrol.image import prepare_image, publish_image
from clustcontrol.image.prepare import NODE_FILES, node_package
from tests.conftest import make_inventory
from tests.image.conftest import IMAGE_ROOT, have
from tests.image.debroot import apt_mirror, cached_root

pytestmark = pytest.mark.slow


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (debootstrap, chroot)"
    missing = [p for p in ("debootstrap", "chroot", "lsinitramfs", "dpkg") if not have(p)]
    if missing:
        hint = "apt-get install debootstrap initramfs-tools-core"
        return f"not installed: {', '.join(missing)} ({hint})"
    if apt_mirror() is None:
        return "no Debian mirror for bookworm in this machine's apt sources"
    absent = [f.source for f in NODE_FILES if not node_package().joinpath(f.source).is_file()]
    if absent:
        return f"node files not in the package yet: {', '.join(absent)}"
    return None


@pytest.fixture(scope="module")
def debian_root() -> Path:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    mirror = apt_mirror()
    assert mirror is not None
    return cached_root(mirror)


def test_prepared_root_builds_an_initramfs_with_the_sync_engine(
    debian_root: Path, tmp_path: Path
) -> None:
    prefix = tmp_path / "prefix"
    root = prefix / IMAGE_ROOT
    root.parent.mkdir(parents=True)
    subprocess.run(["cp", "-a", "--reflink=auto", str(debian_root), str(root)], check=True)
    old_initrds = {p.name: p.stat().st_mtime_ns for p in (root / "boot").glob("initrd.img-*")}
    inv = make_inventory()

    result = prepare_image(
        inv, "default", dry_run=False, rebuild_initramfs=True, root_prefix=prefix
    )

    assert result.notes[-1] == f"ran: chroot {root} update-initramfs -u -k all"
    initrds = sorted((root / "boot").glob("initrd.img-*"))
    assert [p.name for p in initrds] == sorted(old_initrds)
    initrd = initrds[-1]
    assert initrd.stat().st_mtime_ns != old_initrds[initrd.name]
    listing = subprocess.run(
        ["lsinitramfs", str(initrd)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    names = set(listing)
    for expected in (
        "scripts/local-top/clustcontrol",
        "scripts/local-bottom/clustcontrol",
        "conf/conf.d/clustcontrol",
        "usr/share/clustcontrol/engine/engine.sh",
        "usr/share/clustcontrol/engine/contract.sh",
        "usr/share/clustcontrol/engine/sync.sh",
        "usr/share/clustcontrol/engine/dense.sh",
        "usr/bin/rsync",
        "usr/sbin/sfdisk",
        "usr/bin/fallocate",  # util-linux's, not busybox's applet (dense.sh)
    ):
        assert expected in names, expected
    assert "BOOT=local" in (root / "etc/initramfs-tools/initramfs.conf").read_text()
    # MODULES=most: disk drivers for the sync as well as NIC drivers and NFS.
    modules = {Path(line).name.split(".ko")[0] for line in listing if ".ko" in line}
    assert {"ahci", "sd_mod", "nvme", "virtio_blk", "e1000e", "virtio_net", "nfs"} <= modules

    # The real kernel and initrd then go to the TFTP tree.
    published = publish_image(inv, "default", dry_run=False, root_prefix=prefix)
    tftp = prefix / "var/lib/tftpboot/cluster_node/default"
    assert (tftp / "initrd.img").read_bytes() == initrd.read_bytes()
    version = initrd.name.removeprefix("initrd.img-")
    assert (tftp / "vmlinuz").read_bytes() == (root / f"boot/vmlinuz-{version}").read_bytes()
    assert published.notes[0].startswith(
        f"image default: kernel vmlinuz-{version}, initrd {initrd.name} (from the working tree"
    )
