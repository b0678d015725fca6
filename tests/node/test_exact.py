"""Regression tests of the exact-sync promise (issue 10): a node never loses persistent data,
never keeps a half-seeded persistent path, keeps sparse files sparse, finds content changed
without a size or time change on a verify boot, is not stopped by its own immutable boot
loader, and boots its earlier copy when something fails before the first write."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.node.conftest import Node
from tests.node.test_engine import STATE, assert_ok, record


def test_an_interrupted_first_sync_seeds_the_persistent_path_again(node: Node) -> None:
    """A first copy cut after var/lib/keep/ was created leaves a truncated file there; the next
    boot must not protect it as the node's own."""
    seed = node.std / "var/lib/keep/state"
    seed.write_bytes(os.urandom(1024 * 1024))
    assert_ok(node.run())
    with node.mounted(2) as root:  # what a cut first copy leaves: a marker, no record
        (root / STATE / "last-sync").unlink()
        (root / STATE / "sync-in-progress").write_text("CC_MARK_IMAGE='default'\n")
        with open(root / "var/lib/keep/state", "r+b") as f:
            f.truncate(475_136)
    r = node.run()
    assert_ok(r)
    assert "(full, tree)" in r.out
    with node.mounted(2) as root:
        assert (root / "var/lib/keep/state").read_bytes() == seed.read_bytes()
        assert record(root)["CC_SYNC_SEEDED"] == "/var/lib/keep /etc/local.conf"
        (root / "var/lib/keep/state").write_text("node data\n")  # the node's own from now on
    r = node.run(CC_SYNC_MODE="full")
    assert_ok(r)
    with node.mounted(2) as root:
        assert (root / "var/lib/keep/state").read_text() == "node data\n"


def test_sparse_files_stay_sparse(node: Node) -> None:
    """A 200 MiB sparse file holding 4 KiB, on a 40 MiB root: by tar and by rsync."""
    sparse = node.std / "var/log/lastlog"
    sparse.parent.mkdir(parents=True, exist_ok=True)
    with open(sparse, "wb") as f:
        f.seek(150 * 1024 * 1024)
        f.write(os.urandom(4096))
        f.truncate(200 * 1024 * 1024)
    r = node.run()
    assert_ok(r)
    assert "(normal, tar)" in r.out
    with node.mounted(2) as root:
        st = (root / "var/log/lastlog").stat()
        assert st.st_size == 200 * 1024 * 1024 and st.st_blocks * 512 < 1024 * 1024
    with open(sparse, "r+b") as f:  # changed: a whole-tree rsync moves it again
        f.seek(10 * 1024 * 1024)
        f.write(os.urandom(4096))
    r = node.run(CC_SYNC_MODE="full")
    assert_ok(r)
    with node.mounted(2) as root:
        st = (root / "var/log/lastlog").stat()
        assert st.st_size == 200 * 1024 * 1024 and st.st_blocks * 512 < 1024 * 1024
        with open(root / "var/log/lastlog", "rb") as f:
            f.seek(10 * 1024 * 1024)
            got = f.read(4096)
        with open(sparse, "rb") as f:
            f.seek(10 * 1024 * 1024)
            assert got == f.read(4096)


def test_a_verify_boot_finds_content_changed_without_size_or_time(node: Node) -> None:
    assert_ok(node.run())
    tool = node.std / "bin/tool"
    st = tool.stat()
    tool.write_text(tool.read_text().replace("echo tool", "echo TOOL"))
    os.utime(tool, ns=(st.st_atime_ns, st.st_mtime_ns))
    node.cmdline += " clustcontrol.verify=1"
    r = node.run()
    assert_ok(r)
    assert "(full, tree)" in r.out
    with node.mounted(2) as root:
        assert "echo TOOL" in (root / "bin/tool").read_text()


def test_an_immutable_boot_loader_on_the_node_does_not_stop_the_sync(node: Node) -> None:
    """extlinux (image prepare --bootable-disk) makes the node's /boot/extlinux/ldlinux.sys
    immutable; it is the node's own and never compared with the standard."""
    assert_ok(node.run())
    with node.mounted(2) as root:
        (root / "boot/extlinux").mkdir(parents=True)
        (root / "boot/extlinux/ldlinux.sys").write_bytes(b"\0" * 512)
        subprocess.run(["chattr", "+i", str(root / "boot/extlinux/ldlinux.sys")], check=True)
    try:
        r = node.run(CC_SYNC_MODE="full")
        assert_ok(r)
        with node.mounted(2) as root:
            assert (root / "boot/extlinux/ldlinux.sys").exists()
    finally:
        with node.mounted(2) as root:
            subprocess.run(["chattr", "-i", str(root / "boot/extlinux/ldlinux.sys")], check=True)


def test_unusable_control_files_boot_the_earlier_copy(node: Node) -> None:
    assert_ok(node.run())
    default = node.control / "default"
    default.write_text(default.read_text() + "rm -rf /\n")
    r = node.run()
    assert r.rc == 2, str(r)
    assert "the control directory from 127.0.0.1 is unusable" in r.out
    assert "BOOTING THE EARLIER COPY" in r.out


def test_a_failed_layout_check_boots_the_earlier_copy(node: Node) -> None:
    """Nothing was written to the disk yet: the earlier copy is still good."""
    assert_ok(node.run())
    sfdisk = node.control / "sfdisk-default"
    sfdisk.write_text("label: dos\n,60MiB,L\n,60MiB,L\n")  # does not fit the 72 MiB disk
    r = node.run()
    assert r.rc == 2, str(r)
    assert "cannot check the disk" in r.out and "BOOTING THE EARLIER COPY" in r.out


def test_the_node_fstab_keeps_the_standards_lines(node: Node) -> None:
    (node.std / "etc/fstab").write_text(
        "# the update node's fstab\nmaster:/home /home nfs defaults,_netdev 0 0\n"
    )
    assert_ok(node.run())
    with node.mounted(2) as root:
        fstab = (root / "etc/fstab").read_text()
    assert "master:/home /home nfs defaults,_netdev 0 0\n# BEGIN clustcontrol" in fstab
    assert "\t/scratch\text4\tdefaults,nofail\t0\t2\n# END clustcontrol\n" in fstab


def test_a_commit_landing_during_the_copy_does_not_reach_the_copy(node: Node) -> None:
    """The node chose generation 1; a commit of generation 2 lands while rsync starts. The
    node copies generation 1's tree, which never changes, and records generation 1; the next
    boot takes generation 2 by its delta."""
    node.commit()
    first = node.generation
    rsync = node.tmp / "committing-rsync"
    rsync.write_text(
        "#!/bin/sh\n"
        'case "$*" in *--stats*) ;; *) exec rsync "$@" ;; esac\n'
        f"echo edited >'{node.std}/etc/motd.dpkg-new'\n"
        f"cd '{Path(__file__).resolve().parents[2]}' && '{sys.executable}' -c "
        "'from tests.node.conftest import commit; "
        f'from pathlib import Path; commit(Path("{node.std}"), Path("{node.store}"))\'\n'
        'exec rsync "$@"\n'
    )
    rsync.chmod(0o755)
    r = node.run(commit=False, CC_FIRST_COPY="rsync", CC_RSYNC=str(rsync))
    assert_ok(r)
    second = (node.served / "current").read_text().strip()
    assert second != first
    with node.mounted(2) as root:
        assert record(root)["CC_SYNC_GENERATION"] == first
        assert not (root / "etc/motd.dpkg-new").exists()
        assert (root / "etc/clustcontrol-generation").read_text() == f"{first}\n"
    r = node.run(commit=False)
    assert_ok(r)
    assert "(normal, delta)" in r.out
    with node.mounted(2) as root:
        assert record(root)["CC_SYNC_GENERATION"] == second
        assert (root / "etc/motd.dpkg-new").read_text() == "edited\n"
