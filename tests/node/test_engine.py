"""The whole boot sync (cc_run) under busybox sh against a loop-device disk.

The NFS transport is a read-only bind mount of the test standard (CC_NFS_MOUNT); the rsync
transport talks to a real rsync daemon on 127.0.0.1."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.node.conftest import (
    SFDISK_B,
    Node,
    RsyncDaemon,
    free_port,
    pxe_append,
    write_control,
)

pytestmark = pytest.mark.slow

STATE = "var/lib/clustcontrol-node"


def record(root: Path) -> dict[str, str]:
    text = (root / STATE / "last-sync").read_text()
    return dict(re.findall(r"^(CC_SYNC_\w+)='(.*)'$", text, re.M))


def blkid(dev: str, tag: str) -> str:
    return subprocess.run(
        ["blkid", "-s", tag, "-o", "value", dev], capture_output=True, text=True
    ).stdout.strip()


def assert_ok(r: object) -> None:
    assert getattr(r, "rc") == 0, str(r)  # noqa: B009


def test_nfs_first_sync_then_incremental(node: Node) -> None:
    std = node.std
    os.setxattr(std / "bin/tool", "user.cc", b"kept")
    r = node.run()
    assert_ok(r)
    assert "(normal, tar)" in r.out  # a blank root is filled by one tar stream
    assert "layout blank" in r.out
    assert "making ext4 on" in r.out and "making swap on" in r.out
    assert all(line.startswith("clustcontrol: ") for line in r.out.splitlines()), r.out
    assert not list(node.tmp.glob("run/target/*")), "root left mounted"
    assert blkid(node.part(1), "TYPE") == "swap"
    assert blkid(node.part(3), "LABEL") == "ccdata3"
    root_uuid = blkid(node.part(2), "UUID")

    with node.mounted(2) as root:
        assert (root / "bin/tool").read_text() == (std / "bin/tool").read_text()
        assert os.stat(root / "bin/tool").st_ino == os.stat(root / "bin/tool-hardlink").st_ino
        assert os.readlink(root / "bin/tool-symlink") == "tool"
        assert os.getxattr(root / "bin/tool", "user.cc") == b"kept"
        assert (root / "usr/share/doc/big").read_bytes() == (std / "usr/share/doc/big").read_bytes()
        # Excluded: pseudo file systems, the control dir, the update node's identity.
        assert (root / "proc").is_dir() and not (root / "proc/should-not-copy").exists()
        assert not (root / "etc/clustcontrol").exists()
        assert not (root / "etc/ssh/ssh_host_ed25519_key").exists()
        # Persistent paths are seeded from the standard while the node lacks them.
        assert (root / "var/lib/keep/state").read_text() == "standard seed\n"
        # Node files.
        assert (root / "etc/hostname").read_text() == "node01\n"
        hosts = (root / "etc/hosts").read_text()
        assert "192.168.0.11\tnode01.testclust node01" in hosts
        assert "192.168.0.1\tmaster.testclust master" in hosts
        assert "updatenode" not in hosts
        machine_id = (root / "etc/machine-id").read_text().strip()
        assert re.fullmatch(r"[0-9a-f]{32}", machine_id)
        assert machine_id != (std / "etc/machine-id").read_text().strip()
        interfaces = (root / "etc/network/interfaces").read_text()
        assert "iface eth0 inet manual\n" in interfaces and "192.168.0.253" not in interfaces
        assert "iface eth1 inet dhcp" in interfaces
        fstab = (root / "etc/fstab").read_text()
        assert f"UUID={root_uuid}\t/\text4\t" in fstab
        assert f"UUID={blkid(node.part(1), 'UUID')}\tnone\tswap" in fstab
        assert f"UUID={blkid(node.part(3), 'UUID')}\t/scratch\text4" in fstab
        assert (root / "scratch").is_dir()
        rec = record(root)
        assert rec["CC_SYNC_IMAGE"] == "default"
        assert rec["CC_SYNC_GENERATION"] == node.generation
        assert rec["CC_SYNC_SOURCE"] == "127.0.0.1 nfs"
        assert rec["CC_SYNC_MODE"] == "normal"
        assert rec["CC_SYNC_METHOD"] == "tar"
        assert rec["CC_SYNC_RSYNC_EXIT"] == "0"
        assert int(rec["CC_SYNC_BYTES"]) > 512 * 1024
        assert int(rec["CC_SYNC_END"]) >= int(rec["CC_SYNC_START"])
        assert not (root / STATE / "sync-in-progress").exists()
        assert "layout blank" in (root / "var/log/clustcontrol/boot-sync.log").read_text()
        # The node changes things; some of them are its own to keep.
        (root / "var/lib/keep/state").write_text("node data\n")
        (root / "etc/local.conf").write_text("node conf\n")
        (root / "junk").write_text("not in the standard\n")
        (root / "bin/tool").write_text("tampered\n")
        os.utime(root / "bin/tool", (0, 0))
    with node.mounted(3) as scratch:
        (scratch / "results").write_text("a week of computing\n")

    # The standard changes on the master.
    (std / "usr/new").write_text("new in the standard\n")
    (std / "bin/tool-symlink").unlink()
    (std / "etc/local.conf").write_text("standard version 2\n")
    # The small test file system has second-resolution times: move them clearly.
    later = time.time() + 10
    for changed in ("usr/new", "etc/local.conf"):
        os.utime(std / changed, (later, later))

    # A whole-tree comparison (a delta trusts the node's copy): clustcontrol.verify=1.
    plain = node.cmdline
    node.cmdline += " clustcontrol.verify=1"
    r = node.run()
    node.cmdline = plain
    assert_ok(r)
    assert "layout same" in r.out
    assert "making" not in r.out
    assert blkid(node.part(2), "UUID") == root_uuid
    with node.mounted(2) as root:
        assert (root / "usr/new").read_text() == "new in the standard\n"
        assert not (root / "bin/tool-symlink").exists()
        assert not (root / "junk").exists()
        assert (root / "bin/tool").read_text() == (std / "bin/tool").read_text()
        assert (root / "var/lib/keep/state").read_text() == "node data\n"
        assert (root / "etc/local.conf").read_text() == "node conf\n"
        assert (root / "etc/machine-id").read_text().strip() == machine_id
        assert (root / "etc/hosts").read_text() == hosts
        assert (root / "etc/fstab").read_text() == fstab
        rec2 = record(root)
        assert rec2["CC_SYNC_GENERATION"] == node.generation
        assert int(rec2["CC_SYNC_BYTES"]) < int(rec["CC_SYNC_BYTES"]) // 2
        assert (root / "var/log/clustcontrol/boot-sync.log.1").exists()
    with node.mounted(3) as scratch:
        assert (scratch / "results").read_text() == "a week of computing\n"

    # A leftover in-progress marker (power cut during a sync) forces a full re-sync.
    with node.mounted(2) as root:
        (root / STATE / "sync-in-progress").write_text("CC_MARK_START='1'\n")
    r = node.run()
    assert_ok(r)
    assert "previous sync did not finish: full re-sync" in r.out
    with node.mounted(2) as root:
        assert record(root)["CC_SYNC_MODE"] == "full"
        assert not (root / STATE / "sync-in-progress").exists()


def test_rsync_daemon_transport(node: Node, rsync_daemon: RsyncDaemon) -> None:
    # The control directory says rsync on the daemon's port; the initramfs copy has it too.
    write_control(node.control, transport="rsync", rsync_port=rsync_daemon.port)
    xattr = True
    try:
        os.setxattr(node.std / "usr/share/doc/big", "user.cc", b"kept")
    except OSError:
        xattr = False
    node.cmdline = node.cmdline.replace("transport=nfs", "transport=rsync")
    node.env["CC_NFS_MOUNT"] = "false"  # must not be used
    r = node.run()
    assert_ok(r)
    assert f"rsync://127.0.0.1:{rsync_daemon.port}/default/" in r.out
    with node.mounted(2) as root:
        big = "usr/share/doc/big"
        assert (root / big).read_bytes() == (node.std / big).read_bytes()
        assert os.stat(root / "bin/tool").st_ino == os.stat(root / "bin/tool-hardlink").st_ino
        assert os.readlink(root / "bin/tool-symlink") == "tool"
        assert not (root / "etc/clustcontrol").exists()
        assert not (root / "etc/ssh/ssh_host_ed25519_key").exists()
        if xattr:
            assert os.getxattr(root / "usr/share/doc/big", "user.cc") == b"kept"
        first = record(root)
        assert first["CC_SYNC_SOURCE"] == "127.0.0.1 rsync"
        assert int(first["CC_SYNC_BYTES"]) > 512 * 1024
    # clustcontrol.verify=1: compare the whole tree even though the generation is the same.
    node.cmdline += " clustcontrol.verify=1"
    r = node.run()
    assert_ok(r)
    assert "no transfer" not in r.out
    with node.mounted(2) as root:
        second = record(root)
        # Only the files the node rewrites after each sync (hosts, interfaces) travel again.
        assert int(second["CC_SYNC_FILES"]) <= 2
        assert int(second["CC_SYNC_BYTES"]) < 64 * 1024


def test_master_unreachable(node: Node) -> None:
    # Never synced: nothing to boot.
    node.env["CC_NFS_MOUNT"] = "false"
    r = node.run()
    assert r.rc == 1, str(r)
    assert "master 127.0.0.1 is unreachable over nfs" in r.out
    assert "cannot boot this node" in r.out
    assert "failed after 2 attempt(s)" in r.out  # sync_retries 1 from the baked control dir

    del node.env["CC_NFS_MOUNT"]
    assert_ok(node.run())

    # A complete earlier sync: boot it, loudly, with its age.
    with node.mounted(2) as root:
        end = int(record(root)["CC_SYNC_END"])
    node.cmdline += " clustcontrol.retries=2"
    node.env["CC_NFS_MOUNT"] = "false"
    r = node.run(CC_NOW=str(end + 86400 + 7200))
    assert r.rc == 2, str(r)
    assert "failed after 3 attempt(s)" in r.out
    assert "BOOTING THE EARLIER COPY" in r.out and "1 day(s) 2 hour(s) old" in r.out

    # Same over the rsync transport with nobody listening on the port.
    node.cmdline = node.cmdline.replace("transport=nfs", "transport=rsync")
    node.cmdline += f" clustcontrol.rsyncport={free_port()}"
    r = node.run()
    assert r.rc == 2, str(r)
    assert "unreachable over rsync" in r.out

    # clustcontrol.sync=skip boots the disk without asking the master.
    node.cmdline += " clustcontrol.sync=skip"
    r = node.run()
    assert r.rc == 0, str(r)
    assert "unreachable" not in r.out


STALLING_TAR = """#!/bin/sh
# GNU tar whose archive stream stops after 3 MB and hangs (a master dying mid-copy).
case "$*" in
*--create*) /usr/bin/tar "$@" | { head -c 3000000; sleep 600; } ;;
*) exec /usr/bin/tar "$@" ;;
esac
"""


@pytest.mark.parametrize("first_copy", ["rsync", "tar"])
def test_killed_sync_is_redone_fully(node: Node, first_copy: str) -> None:
    """Power cut during the first copy onto the blank root, by rsync or by the tar stream."""
    big = node.std / "usr/share/doc/huge"
    big.write_bytes(os.urandom(6 * 1024 * 1024))
    node.commit()
    if first_copy == "rsync":
        proc = node.popen("cc_run", CC_FIRST_COPY="rsync", CC_RSYNC_EXTRA="--bwlimit=1500")
    else:
        tar = node.tmp / "stalling-tar"
        tar.write_text(STALLING_TAR)
        tar.chmod(0o755)
        proc = node.popen("cc_run", CC_TAR=str(tar))
    marker = node.target / STATE / "sync-in-progress"
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "no sync marker"
        time.sleep(0.05)
    time.sleep(1.5)
    assert proc.poll() is None, "sync finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # power cut: engine and rsync die mid-transfer
    method = "tar" if first_copy == "tar" else "tree"
    assert f"(normal, {method})" in proc.communicate()[0]
    node.cleanup_mounts()

    node.env["CC_NFS_MOUNT"] = "false"  # the master is gone too: the half copy must not boot
    r = node.run()
    assert r.rc == 1, str(r)
    assert "UNFINISHED sync" in r.out

    del node.env["CC_NFS_MOUNT"]
    r = node.run()
    assert_ok(r)
    assert "previous sync did not finish: full re-sync" in r.out
    assert "(full, tree)" in r.out
    with node.mounted(2) as root:
        assert (root / "usr/share/doc/huge").read_bytes() == big.read_bytes()
        assert record(root)["CC_SYNC_MODE"] == "full"
        assert not list(root.rglob(".huge.*")), "rsync temp file left"


def test_layout_change_repartitions_loudly(node: Node) -> None:
    assert_ok(node.run())
    with node.mounted(3) as scratch:
        (scratch / "results").write_text("precious\n")
    write_control(node.control, sfdisk=SFDISK_B)
    r = node.run()
    assert_ok(r)
    assert "THE DISK LAYOUT OF" in r.out and "CHANGED" in r.out
    assert "DATA ON PERSISTENT PARTITIONS IS LOST: 3(/scratch)" in r.out
    assert "!!!" in r.out
    with node.mounted(3) as scratch:
        assert not (scratch / "results").exists()
    size = int(Path(f"/sys/class/block/{Path(node.part(2)).name}/size").read_text())
    assert size * 512 == 44 * 1024 * 1024
    with node.mounted(2) as root:
        assert (root / "bin/tool").exists()

    # Forced by the kernel command line on an unchanged layout.
    node.cmdline += " clustcontrol.repartition=yes"
    r = node.run()
    assert_ok(r)
    assert "RE-PARTITIONING" in r.out and "3(/scratch)" in r.out


def test_damaged_root_is_remade_persistent_kept(node: Node) -> None:
    assert_ok(node.run())
    with node.mounted(3) as scratch:
        (scratch / "results").write_text("precious\n")
    with open(node.part(2), "r+b") as dev:  # wipe the ext4 superblock (and backups' pointer)
        dev.write(b"\0" * 4 * 1024 * 1024)
    r = node.run()
    assert_ok(r)
    assert "layout same" in r.out
    assert "making ext4 on " + node.part(2) in r.out
    assert "making ext4 on " + node.part(3) not in r.out
    with node.mounted(3) as scratch:
        assert (scratch / "results").read_text() == "precious\n"
    with node.mounted(2) as root:
        assert (root / "bin/tool").exists()


def test_data_partition_without_fs_gets_one(node: Node) -> None:
    assert_ok(node.run())
    subprocess.run(["wipefs", "-a", "-q", node.part(3)], check=True)
    r = node.run()
    assert_ok(r)
    assert "has no file system yet" in r.out
    assert blkid(node.part(3), "TYPE") == "ext4"


def test_unchanged_generation_skips_the_transfer(node: Node, rsync_daemon: RsyncDaemon) -> None:
    """A node holding the current generation moves nothing; every N-th boot it compares the
    whole tree with that generation (never with the working tree); a new generation syncs; both
    transports read it."""
    std = node.std
    assert_ok(node.run())
    first_generation = node.generation
    with node.mounted(2) as root:
        first = record(root)
    assert first["CC_SYNC_GENERATION"] == first_generation
    # Changed but not committed: the node never sees the working tree.
    (std / "usr/uncommitted").write_text("edited on the master, not committed\n")
    r = node.run(commit=False)
    assert_ok(r)
    assert (
        f"standard generation {first_generation} unchanged since the last sync: no transfer"
        in r.out
    )
    assert "rsync -a" not in r.out
    with node.mounted(2) as root:
        assert not (root / "usr/uncommitted").exists()
        assert record(root) == first
        assert (root / STATE / "generation-skips").read_text() == "1\n"
        assert (root / "etc/hostname").read_text() == "node01\n"  # node files still written
        (root / "usr/node-junk").write_text("made on the node\n")
    # Every 2nd boot compares the whole tree with the generation: the node's junk goes, the
    # uncommitted file does not arrive, the counter resets.
    plain = node.cmdline
    node.cmdline += " clustcontrol.verify=2"
    r = node.run(commit=False)
    node.cmdline = plain
    assert_ok(r)
    assert "every 2th boot compares the whole tree: now" in r.out
    with node.mounted(2) as root:
        assert not (root / "usr/uncommitted").exists()
        assert not (root / "usr/node-junk").exists()
        assert not (root / STATE / "generation-skips").exists()
    # A new generation over the rsync daemon: read from the daemon, then synced.
    write_control(node.control, transport="rsync", rsync_port=rsync_daemon.port)
    node.cmdline = node.cmdline.replace("transport=nfs", "transport=rsync")
    r = node.run()
    assert node.generation != first_generation
    assert_ok(r)
    assert "no transfer" not in r.out
    with node.mounted(2) as root:
        assert record(root)["CC_SYNC_GENERATION"] == node.generation
        assert (root / "usr/uncommitted").exists()
    r = node.run()
    assert_ok(r)
    assert (
        f"standard generation {node.generation} unchanged since the last sync: no transfer" in r.out
    )


def damage_delta(node: Node, source: str) -> None:
    """Cut the `# end` line off the current generation's delta from `source` (a master whose
    disk lost the end of the file)."""
    delta = node.tree() / "etc/clustcontrol-deltas" / source
    delta.write_text(delta.read_text().removesuffix("# end\n"))


def later(path: Path, seconds: int = 10) -> None:
    """Move path's times clearly into the future (the test file systems have coarse times)."""
    when = time.time() + seconds
    os.utime(path, (when, when))


@pytest.mark.parametrize("transport", ["nfs", "rsync"])
def test_generation_delta_moves_only_what_changed(
    node: Node, rsync_daemon: RsyncDaemon, transport: str
) -> None:
    """A node one generation behind syncs only the paths of the master's delta: changed files
    by rsync's delta algorithm, removed paths deleted, persistent and node-own paths kept.
    Every N-th such boot still compares the whole tree; a bad delta falls back to it."""
    std = node.std
    if transport == "rsync":
        write_control(node.control, transport="rsync", rsync_port=rsync_daemon.port)
        node.cmdline = node.cmdline.replace("transport=nfs", "transport=rsync")
    (std / "opt/old/sub").mkdir(parents=True)
    (std / "opt/old/sub/f").write_text("removed with its directory\n")
    (std / "opt/escape/victim").mkdir(parents=True)
    assert_ok(node.run())
    first = node.generation
    with node.mounted(2) as root:
        (root / "var/lib/keep/state").write_text("node data\n")
        (root / "junk").write_text("not in the standard, not in any delta\n")

    big = bytearray((std / "usr/share/doc/big").read_bytes())
    big[200_000:201_000] = os.urandom(1000)
    (std / "usr/share/doc/big").write_bytes(bytes(big))
    (std / "usr/new").write_text("new in generation 2\n")
    (std / "bin/tool-symlink").unlink()
    shutil.rmtree(std / "opt/old")
    shutil.rmtree(std / "opt/escape/victim")
    (std / "var/lib/keep/state").unlink()  # persistent: the node's copy stays
    (std / "etc/hostname").write_text("updatenode2\n")  # the node's own: never copied
    for changed in ("usr/share/doc/big", "usr/new"):
        later(std / changed)
    # An absolute symlink on the node leads out of its root: nothing is deleted through it.
    outside = node.tmp / "outside"
    (outside / "victim").mkdir(parents=True)
    with node.mounted(2) as root:
        shutil.rmtree(root / "opt/escape")
        (root / "opt/escape").symlink_to(outside)

    r = node.run()
    second = node.generation
    assert_ok(r)
    # To copy: big, new, their directories and those of the removed paths (mtimes changed):
    # usr, usr/share/doc, bin, opt, opt/escape, var/lib/keep; etc/hostname is the node's own.
    assert f"generation {first} -> {second}: delta of" in r.out
    assert "1 removed path(s) not deleted: a symlink on the way on this node" in r.out
    assert (outside / "victim").is_dir()
    assert "(normal, delta)" in r.out
    with node.mounted(2) as root:
        assert (root / "usr/share/doc/big").read_bytes() == bytes(big)
        assert (root / "usr/new").read_text() == "new in generation 2\n"
        assert not (root / "bin/tool-symlink").exists()
        assert not (root / "opt/old").exists()
        assert (root / "var/lib/keep/state").read_text() == "node data\n"
        assert (root / "etc/hostname").read_text() == "node01\n"
        assert not (root / "etc/clustcontrol-deltas").exists()
        assert (root / "junk").exists(), r.out  # only a whole-tree comparison finds it
        rec = record(root)
        assert rec["CC_SYNC_GENERATION"] == second
        assert rec["CC_SYNC_METHOD"] == "batch"  # the master's batch, replayed
        assert int(rec["CC_SYNC_FILES"]) == 3  # big, new, the generation file
        if transport == "rsync":  # the edit travels, not the 512 KiB file
            assert int(rec["CC_SYNC_BYTES"]) < 16 * 1024, rec
        # Boots since the last comparison of every file's content: the delta, and over rsync the
        # first sync (whole tree by size and time; over NFS it was a tar copy of everything).
        counted = 1 if transport == "nfs" else 2
        assert (root / STATE / "generation-skips").read_text() == f"{counted}\n"

    # A truncated delta is not used: the whole tree is compared (and the junk goes).
    (std / "usr/new").write_text("generation 3\n")
    later(std / "usr/new", 20)
    node.commit()
    damage_delta(node, second)
    r = node.run()
    assert_ok(r)
    assert f"is not one to {node.generation} or is truncated: comparing the whole tree" in r.out
    assert "(full, tree)" in r.out  # every file's content compared: the node records it
    with node.mounted(2) as root:
        assert not (root / "junk").exists()
        assert record(root)["CC_SYNC_METHOD"] == "tree"
        # The root holds an earlier copy: every file's content compared (size and mtime cannot
        # tell every changed file), and the count of boots without it starts again.
        assert record(root)["CC_SYNC_MODE"] == "full"
        assert not (root / STATE / "generation-skips").exists()
        (root / "junk2").write_text("made on the node\n")

    # Deltas count as boots without a full comparison, and the count adds up across them: two
    # more deltas, then the whole tree with contents compared.
    every = 3
    node.cmdline += f" clustcontrol.verify={every}"
    for n in (4, 5):
        (std / "usr/new").write_text(f"generation {n}\n")
        later(std / "usr/new", 10 * n)
        r = node.run()
        assert_ok(r)
        assert "(normal, delta)" in r.out, r.out
    (std / "usr/new").write_text("generation 6\n")
    later(std / "usr/new", 60)
    r = node.run()
    assert_ok(r)
    assert (
        f"generation {node.generation}: every {every}th boot compares the whole tree: now" in r.out
    )
    assert "(full, tree)" in r.out
    with node.mounted(2) as root:
        assert not (root / "junk2").exists()
        assert record(root)["CC_SYNC_METHOD"] == "tree"
        assert record(root)["CC_SYNC_MODE"] == "full"
        assert not (root / STATE / "generation-skips").exists()


def test_a_changed_control_dir_boots(node: Node) -> None:
    """cluster.control_dir: /srv/clustcontrol.d. The master bind-mounts the control directory
    there in the generation roots and the PXE label says so (clustcontrol.control=); the node
    reads it there, excludes it from the sync, and boots."""
    shutil.rmtree(node.control)
    write_control(node.served / "srv/clustcontrol.d", control_dir="/srv/clustcontrol.d")
    node.env["CC_BAKED_CONTROL"] = str(node.served / "srv/clustcontrol.d")
    node.env["CC_TEST_SERVER"] = "192.168.0.1"
    (append,) = set(pxe_append(control_dir="/srv/clustcontrol.d"))
    assert "clustcontrol.control=/srv/clustcontrol.d" in append
    boot = f"{append} BOOTIF=01-52-54-00-00-00-01"

    # Without the switch the node looks in the default place and cannot boot: nothing to fall
    # back to on a blank disk.
    node.cmdline = boot.replace(" clustcontrol.control=/srv/clustcontrol.d", "")
    r = node.run()
    assert r.rc == 1 and "no etc/clustcontrol on the master's export" in r.out, r.out

    node.cmdline = boot
    r = node.run()
    assert_ok(r)
    assert "this is node node01" in r.out
    with node.mounted(2) as root:
        assert record(root)["CC_SYNC_METHOD"] == "tar"
        assert not (root / "srv/clustcontrol.d").exists()
        assert (root / "etc/hostname").read_text() == "node01\n"
    r = node.run()
    assert_ok(r)
    assert "unchanged since the last sync: no transfer" in r.out
