"""Fixtures for the image tests: a minimal standard root under a prefix, and the node files."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from clustcontrol.image import prepare
from clustcontrol.inventory.model import Inventory
from tests.conftest import make_inventory

IMAGE_ROOT = "srv/nfs4/clusternoderoot"  # BASE's images.default.root, relative

FSTAB = """\
# /etc/fstab: static file system information.
UUID=0f3c-root  /      ext4  errors=remount-ro  0  1
proc            /proc  proc  defaults           0  0
"""
INTERFACES = "auto eth0\niface eth0 inet dhcp\n"
GENERATOR_RULE = """\
# These rules generate rules to keep network interface names unchanged
ACTION!="add", GOTO="persistent_net_generator_end"
SUBSYSTEM!="net", GOTO="persistent_net_generator_end"
IMPORT{program}="write_net_rules"
LABEL="persistent_net_generator_end"
"""
# Debian bookworm's /etc/initramfs-tools/initramfs.conf (initramfs-tools 0.142), comments trimmed.
DEBIAN_INITRAMFS_CONF = """\
#
# initramfs.conf
# Configuration file for mkinitramfs(8). See initramfs.conf(5).
#

#
# MODULES: [ most | netboot | dep | list ]
#

MODULES=most

#
# BUSYBOX: [ y | n | auto ]
#

BUSYBOX=auto

#
# KEYMAP: [ y | n ]
#

KEYMAP=n

#
# COMPRESS: [ gzip | bzip2 | lz4 | lzma | lzop | xz | zstd ]
#

COMPRESS=zstd

# COMPRESSLEVEL=3

DEVICE=

NFSROOT=auto

RUNSIZE=10%

FSTYPE=auto
"""


def debian_initramfs_conf() -> str:
    """The machine's packaged default when there is one, else the text above."""
    for path in sorted(Path("/usr/share/initramfs-tools").glob("initramfs.conf*")):
        if path.is_file():
            return path.read_text()
    return DEBIAN_INITRAMFS_CONF


@dataclass
class ImageEnv:
    prefix: Path
    inv: Inventory

    @property
    def root(self) -> Path:
        return self.prefix / IMAGE_ROOT

    def tftp(self, rel: str) -> Path:
        return self.prefix / "var/lib/tftpboot/cluster_node" / rel


def build_minimal_root(root: Path) -> None:
    files = {
        "etc/fstab": FSTAB,
        "etc/network/interfaces": INTERFACES,
        "lib/udev/rules.d/75-persistent-net-generator.rules": GENERATOR_RULE,
        "etc/initramfs-tools/initramfs.conf": debian_initramfs_conf(),
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o644)


@pytest.fixture
def node_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The package's node files; a placeholder for each one another change has not added yet."""
    package = tmp_path / "node-package"
    real = prepare.node_package()
    for file in (*prepare.node_files(), prepare.BOOTABLE_DISK_FILE):
        target = package / file.source
        target.parent.mkdir(parents=True, exist_ok=True)
        source = real.joinpath(file.source)
        if source.is_file():
            target.write_bytes(source.read_bytes())
        else:
            target.write_text(f"#!/bin/sh\n# placeholder for node/{file.source}\n")
    monkeypatch.setattr(prepare, "node_package", lambda: package)
    return package


@pytest.fixture
def env(tmp_path: Path, node_files: Path) -> ImageEnv:
    prefix = tmp_path / "prefix"
    build_minimal_root(prefix / IMAGE_ROOT)
    return ImageEnv(prefix, make_inventory())


def build_standard(root: Path) -> None:
    """A small standard for the generation tests: a hard link, a symlink, the control
    directory and a pseudo file system that are not part of its content."""
    (root / "etc/clustcontrol").mkdir(parents=True)
    (root / "etc/clustcontrol/default").write_text("CC_X=1\n")  # the master's bind mount
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/tool").write_bytes(b"\x7fELF" + b"x" * 5000)
    (root / "usr/bin/tool").chmod(0o755)
    (root / "usr/bin/alias").symlink_to("tool")
    os.link(root / "usr/bin/tool", root / "usr/bin/tool-hardlink")
    (root / "etc/motd").write_text("hello\n")
    (root / "proc").mkdir()
    (root / "proc/cpuinfo").write_text("not part of the standard\n")


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    build_standard(tmp_path / IMAGE_ROOT)
    return tmp_path


def snapshot(top: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file under top: content, mode and mtime (ns)."""
    state: dict[str, tuple[bytes, int, int]] = {}
    for dirpath, _dirs, names in os.walk(top):
        for name in names:
            path = Path(dirpath, name)
            st = path.lstat()
            data = path.read_bytes() if path.is_file() else b""
            state[str(path.relative_to(top))] = (data, st.st_mode & 0o7777, st.st_mtime_ns)
    return state


def have(program: str) -> bool:
    return shutil.which(program, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is not None
