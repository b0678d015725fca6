"""The initramfs-tools side: the hook builds a tree with working tools, and the local-top and
local-bottom scripts run in a chroot of that tree (busybox, initramfs-tools' /scripts/functions)
on the way to a boot of the earlier copy (clustcontrol.sync=skip: no network needed)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.node.conftest import APPLETS, BUSYBOX, ENGINE, NODE_DIR, Node

ITR = NODE_DIR / "initramfs-tools"
FUNCTIONS = Path("/usr/share/initramfs-tools/scripts/functions")
HOOK_FUNCTIONS = Path("/usr/share/initramfs-tools/hook-functions")


def run_script(script: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BUSYBOX, "sh", str(script), *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **env},
        timeout=60,
    )


@pytest.mark.parametrize("script", ["hooks", "scripts/local-top", "scripts/local-bottom"])
def test_prereqs(script: str) -> None:
    proc = run_script(ITR / script / "clustcontrol", "prereqs")
    assert (proc.returncode, proc.stdout.strip()) == (0, "")


@pytest.mark.parametrize("script", ["scripts/local-top", "scripts/local-bottom"])
@pytest.mark.parametrize("boot", ["nfs", ""])
def test_scripts_do_nothing_unless_boot_local(script: str, boot: str) -> None:
    proc = run_script(ITR / script / "clustcontrol", BOOT=boot)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def run_in_tree(tree: Path, script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run one initramfs script the way /init does, in a chroot of the built tree."""
    return subprocess.run(
        ["chroot", str(tree), "/bin/sh", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def build_tree(dest: Path, control: Path) -> subprocess.CompletedProcess[str]:
    """Run the hook the way mkinitramfs does, into the usr-merged layout mkinitramfs makes."""
    dest.mkdir()
    for d in ("bin", "sbin", *(p.name for p in Path("/").glob("lib*"))):
        (dest / "usr" / d).mkdir(parents=True)
        (dest / d).symlink_to(f"usr/{d}")
    # Debian's busybox hook (zz-busybox, in /usr/share) runs before hooks in /etc and hard-links
    # its applets, mke2fs and tune2fs among them: the hook must replace those with the real tools.
    shutil.copy2(BUSYBOX, dest / "bin/busybox")
    for applet in (*APPLETS, "sh", "mke2fs", "tune2fs", "blkid", "modprobe", "tar"):
        if not (dest / "bin" / applet).exists():
            os.link(dest / "bin/busybox", dest / "bin" / applet)
        if applet in ("mke2fs", "tune2fs", "blkid") and not (dest / "sbin" / applet).exists():
            os.link(dest / "bin/busybox", dest / "sbin" / applet)
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "DESTDIR": str(dest),
        "verbose": "n",
        "version": os.uname().release,
        "MODULESDIR": f"/lib/modules/{os.uname().release}",
        "CC_ENGINE_SRC": str(ENGINE),
        "CC_CONFD": str(ITR / "conf.d/clustcontrol"),
        "CC_CONTROL_SRC": str(control),
    }
    return subprocess.run(
        ["sh", str(ITR / "hooks/clustcontrol")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
@pytest.mark.skipif(not HOOK_FUNCTIONS.exists(), reason="initramfs-tools-core not installed")
def test_hook_tree_runs_local_top_and_bottom(node: Node) -> None:
    tree = node.tmp / "initrd"
    proc = build_tree(tree, node.control)
    assert proc.returncode == 0, proc.stderr
    modules = sorted(ENGINE.glob("*.sh"))
    assert modules
    for module in modules:
        installed = tree / "usr/share/clustcontrol/engine" / module.name
        assert installed.read_bytes() == module.read_bytes(), module.name
    assert (tree / "etc/clustcontrol/default").is_file()
    for tool in ("rsync", "sfdisk", "blkid", "mkfs.ext4", "e2fsck", "mkswap", "partx"):
        assert list(tree.glob(f"usr/*bin/{tool}")), tool
    # The copied binaries find their libraries inside the tree.
    for argv in (
        ["rsync", "--version"],
        ["sfdisk", "--version"],
        ["blkid", "-V"],
        ["mke2fs", "-V"],
        ["e2fsck", "-V"],
    ):
        res = subprocess.run(["chroot", str(tree), *argv], capture_output=True, text=True)
        assert res.returncode == 0, (argv, res.stderr)
    # The real e2fsprogs, not busybox's applets of the same names.
    for tool in ("mkfs.ext4", "mke2fs", "tune2fs"):
        res = subprocess.run(["chroot", str(tree), tool, "-V"], capture_output=True, text=True)
        banner = res.stdout + res.stderr
        assert re.search(r"^(mke2fs|tune2fs) 1\.\d+", banner, re.MULTILINE), (tool, banner)
    # GNU tar (the first copy onto a blank root), not busybox's tar applet.
    res = subprocess.run(
        ["chroot", str(tree), "/bin/tar", "--version"], capture_output=True, text=True
    )
    assert res.stdout.startswith("tar (GNU tar)"), res.stdout + res.stderr

    # Complete the tree like mkinitramfs would: /scripts, /conf/conf.d.
    for d in (
        "scripts/local-top",
        "scripts/local-bottom",
        "conf/conf.d",
        "proc",
        "dev",
        "run",
        "root",
    ):
        (tree / d).mkdir(parents=True, exist_ok=True)
    # initramfs-tools' functions, with a panic that cannot open a shell or reboot this machine.
    (tree / "scripts/functions").write_text(
        FUNCTIONS.read_text() + '\npanic() { echo "PANIC: $*"; exit 99; }\n'
    )
    shutil.copy2(ITR / "conf.d/clustcontrol", tree / "conf/conf.d/clustcontrol")
    # The site's own settings (image prepare never writes this file) win over the defaults.
    (tree / "conf/conf.d/clustcontrol-local").write_text("CC_LOG_DIR=/var/log/clustcontrol-site\n")
    for stage in ("local-top", "local-bottom"):
        shutil.copy2(ITR / "scripts" / stage / "clustcontrol", tree / "scripts" / stage)

    # A node synced earlier boots its local copy without the network.
    assert node.run().rc == 0
    (tree / "cmdline").write_text(f"root={node.part(2)} clustcontrol.sync=skip quiet\n")
    subprocess.run(["mount", "--bind", "/dev", str(tree / "dev")], check=True)
    subprocess.run(["mount", "-t", "proc", "proc", str(tree / "proc")], check=True)
    env = {
        "PATH": "/sbin:/usr/sbin:/bin:/usr/bin",
        "BOOT": "local",
        "quiet": "y",
        "panic": "",
        "CC_CMDLINE_FILE": "/cmdline",
        "CC_WARN_PAUSE": "0",
        "CC_DISK_WAIT": "1",
        "rootmnt": "/root",
    }
    top = run_in_tree(tree, "/scripts/local-top/clustcontrol", env)
    assert top.returncode == 0, top.stdout + top.stderr
    assert "PANIC" not in top.stdout
    assert "clustcontrol.sync=skip" in top.stderr
    assert (tree / "run/clustcontrol/status").read_text() == "skipped\n"

    # initramfs-tools mounts the root read-only, then local-bottom saves the log onto it.
    subprocess.run(["mount", "-o", "ro", node.part(2), str(tree / "root")], check=True)
    bottom = run_in_tree(tree, "/scripts/local-bottom/clustcontrol", env)
    assert bottom.returncode == 0, bottom.stdout + bottom.stderr
    with open("/proc/mounts") as f:
        assert any(
            line.split()[1] == str(tree / "root") and line.split()[3].startswith("ro") for line in f
        ), "root not read-only again"
    subprocess.run(["umount", str(tree / "root")], check=True)
    with node.mounted(2) as root:
        assert (root / "var/log/clustcontrol-site/last-boot-status").read_text() == "skipped\n"
        log = (root / "var/log/clustcontrol-site/boot-sync.log").read_text()
        assert "clustcontrol.sync=skip" in log and "root file system mounted at /root" in log
