"""End to end: real nodes PXE-boot in QEMU from a master built by clustcontrol, sync their local
disk to the standard, and boot it.

Firmware PXE (QEMU's iPXE ROM), Debian's pxelinux.0, our generated PXELINUX files, a Debian
kernel, an initramfs built by initramfs-tools with our hook and scripts, dhcpd, in.tftpd,
nfs-ganesha and the rsync daemon fed by `clustcontrol apply`. Each scenario asserts on the serial
log and on the disk image afterwards. The scenarios run in order on one cluster: each one starts
from the state the previous one left, as a real node's disk would."""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.vm.cluster import E2ECluster, NodeSpec, unique_namespace
from tests.vm.conftest import record
from tests.vm.disk import mounted, partition_table
from tests.vm.standard import MARKER

pytestmark = [pytest.mark.vm, pytest.mark.slow]

NODE1 = NodeSpec("node01", "52:54:00:00:00:01", "192.168.0.11")
NODE2 = NodeSpec("node02", "52:54:00:00:00:02", "192.168.0.12")
NODE3 = NodeSpec("node03", "52:54:00:00:00:03", "192.168.0.13", image="gpu")


@pytest.fixture(scope="module")
def cluster(vm_work: Path) -> Iterator[E2ECluster]:
    c = E2ECluster(
        vm_work, unique_namespace(), {"default": "nfs", "gpu": "rsync"}, [NODE1, NODE2, NODE3]
    )
    try:
        c.set_up()
        std = c.image_root("default")
        (std / "etc/e2e-to-delete").write_text("deleted in scenario 3\n")
        (std / "etc/e2e-modified").write_text("version 1\n")
        (std / "var/lib/persist").mkdir(parents=True, exist_ok=True)
        (std / "var/lib/persist/state").write_text("from the standard, version 1\n")
        for name in c.images:
            attributed(c.image_root(name))
            c.commit(name)
        yield c
    finally:
        record(c)
        c.tear_down()


CAP = "cap_net_raw=ep"
ACL = "user::rw- user:1234:r-- group::r-- mask::r-- other::r--"


def attributed(std: Path) -> None:
    """A file capability and an ACL in the standard: NFSv3 carries neither (the generation's
    archive of them does), the rsync daemon carries both (-AX)."""
    tool = std / "usr/local/bin/e2e-cap"
    tool.parent.mkdir(parents=True, exist_ok=True)
    tool.write_bytes((std / "usr/bin/true").read_bytes())
    tool.chmod(0o755)
    subprocess.run(["setcap", "cap_net_raw+ep", str(tool)], check=True)
    (std / "srv").mkdir(exist_ok=True)
    (std / "srv/e2e-acl").write_text("for uid 1234\n")
    subprocess.run(["setfacl", "-m", "u:1234:r", str(std / "srv/e2e-acl")], check=True)


def secrets_arrived(log: str, std: Path) -> None:
    """The guest's /etc/shadow is the standard's (mode, owner, content), delivered over the
    image's secrets export; an unprivileged user in the guest reads a served file from the
    master's rsync module (so the network is up) but not /etc/shadow, and the served tree
    holds none."""
    shadow = std / "etc/shadow"
    st = shadow.stat()
    digest = hashlib.sha256(shadow.read_bytes()).hexdigest()
    expected = f"e2e: shadow {st.st_mode & 0o7777:o} {st.st_uid}:{st.st_gid} {digest}"
    assert expected in log, log[-3000:]
    image = (std / "etc/e2e-image").read_text().strip()
    assert f"e2e: nobody rsync etc/e2e-image 0 {image}" in log, log[-3000:]
    refused = re.search(r"e2e: nobody rsync etc/shadow (\d+) (\S*)", log)
    assert refused is not None and refused.group(1) != "0" and not refused.group(2), log[-3000:]


def attributes_arrived(log: str) -> None:
    """The guest saw the capability and the ACL (its own getcap and getfacl)."""
    assert f"e2e: cap /usr/local/bin/e2e-cap {CAP}" in log, log[-3000:]
    assert f"e2e: acl {ACL}" in log, log[-3000:]


def booted(log: str) -> dict[str, str]:
    """The marker line the standard's init prints: host, generation, root device and type."""
    match = re.search(rf"{MARKER} host=(\S*) generation=(\S*) root=(\S*) (\S*)", log)
    assert match, f"the node never reached its root; serial log ends:\n{log[-3000:]}"
    return dict(zip(("host", "generation", "root", "fstype"), match.groups(), strict=True))


def machine_id(log: str) -> str:
    match = re.search(r"e2e: machine-id ([0-9a-f]{32})", log)
    assert match, log[-2000:]
    return match.group(1)


def bytes_moved(log: str) -> int:
    return int(re.findall(r"(\d+) bytes moved", log)[-1])


def test_1_first_boot_of_a_blank_node(cluster: E2ECluster) -> None:
    log = cluster.boot("node01", "1-first-boot").log
    assert "clustcontrol: disk /dev/vda: layout blank" in log
    assert "clustcontrol: making ext4 on /dev/vda2" in log
    # A blank root is filled by one tar stream from the NFS export (GNU tar in the initramfs).
    assert "(normal, tar)" in log and "clustcontrol: sync done (tar)" in log
    assert booted(log) == {
        "host": "node01",
        "generation": cluster.generation("default"),
        "root": "/dev/vda2",
        "fstype": "ext4",
    }
    assert bytes_moved(log) > 100_000_000  # the whole standard, a few hundred MB
    attributes_arrived(log)  # over NFS: restored from the generation's archive
    secrets_arrived(log, cluster.image_root("default"))
    served = cluster.store("default").tree(cluster.generation("default"))
    assert (served / "etc/passwd").is_file() and not (served / "etc/shadow").exists()
    table = partition_table(cluster.vms["node01"].disk)
    assert len(re.findall(r"^\S+ : start=", table, re.MULTILINE)) == 3
    with mounted(cluster.vms["node01"].disk, 2) as root:
        assert (root / "etc/hostname").read_text() == "node01\n"
        assert "iface ens3 inet manual" in (root / "etc/network/interfaces").read_text()
        assert "/scratch" in (root / "etc/fstab").read_text()
        assert not (root / "var/lib/clustcontrol-node/sync-in-progress").exists()
        assert (root / "etc/e2e-modified").read_text() == "version 1\n"


def test_2_second_boot_moves_nothing(cluster: E2ECluster) -> None:
    first_id = machine_id((cluster.logs / "1-first-boot-node01.serial.log").read_text())
    log = cluster.boot("node01", "2-unchanged").log
    assert "clustcontrol: disk /dev/vda: layout same" in log
    assert "making ext4" not in log
    generation = cluster.generation("default")
    # The node holds the committed generation: the transfer is skipped altogether.
    assert f"standard generation {generation} unchanged since the last sync: no transfer" in log
    assert booted(log)["generation"] == generation
    assert machine_id(log) == first_id


def test_3_changes_arrive_persistent_files_stay(cluster: E2ECluster) -> None:
    std = cluster.image_root("default")
    (std / "etc/e2e-added").write_text("added in scenario 3\n")
    (std / "etc/e2e-modified").write_text("version 2\n")
    (std / "etc/e2e-to-delete").unlink()
    (std / "var/lib/persist/state").write_text("from the standard, version 2\n")
    # Not committed yet: status says so (nodes at the last generation would not get it).
    status = cluster.status()
    assert status.returncode == 1 and "UNCOMMITTED CHANGES" in status.stderr
    generation = cluster.commit("default")
    assert cluster.status().returncode == 0
    disk = cluster.vms["node01"].disk
    with mounted(disk, 3, writable=True) as scratch:
        (scratch / "results.dat").write_text("a user's results on the data partition\n")
    log = cluster.boot("node01", "3-standard-changed").log
    assert booted(log)["generation"] == generation
    # The node was one generation behind: only the paths of the master's delta moved.
    # Replayed from the master's batch: nothing went up, the changed bytes came down.
    assert "(normal, delta)" in log and "clustcontrol: sync done (batch)" in log
    assert bytes_moved(log) < 100_000  # the three changed files, no walk of the tree
    with mounted(disk, 2) as root:
        assert (root / "etc/e2e-added").read_text() == "added in scenario 3\n"
        assert (root / "etc/e2e-modified").read_text() == "version 2\n"
        assert not (root / "etc/e2e-to-delete").exists()
        # A persistent path is the node's own once it exists there.
        assert (root / "var/lib/persist/state").read_text() == "from the standard, version 1\n"
    with mounted(disk, 3) as scratch:
        assert (scratch / "results.dat").read_text() == "a user's results on the data partition\n"


def test_4_sync_killed_half_way_is_redone(cluster: E2ECluster) -> None:
    std = cluster.image_root("default")
    # Enough new data that the sync is still running when the plug is pulled.
    subprocess.run(
        ["dd", "if=/dev/urandom", f"of={std / 'opt/e2e-big'}", "bs=1M", "count=120", "status=none"],
        check=True,
    )
    generation = cluster.commit("default")
    killed = cluster.boot(
        "node01", "4a-killed-mid-sync", kill_on=r"clustcontrol: (rsync -a|replaying the master)"
    )
    assert killed.killed
    with mounted(cluster.vms["node01"].disk, 2) as root:
        assert (root / "var/lib/clustcontrol-node/sync-in-progress").exists()
    log = cluster.boot("node01", "4b-after-kill").log
    assert "the previous sync did not finish: full re-sync" in log
    assert booted(log)["generation"] == generation
    with mounted(cluster.vms["node01"].disk, 2) as root:
        assert not (root / "var/lib/clustcontrol-node/sync-in-progress").exists()
        assert (root / "opt/e2e-big").stat().st_size == 120 * 1024 * 1024


def test_5_master_unreachable_boots_last_copy(cluster: E2ECluster) -> None:
    master = cluster.master()
    master.stop_sync_servers()
    try:
        log = cluster.boot("node01", "5-master-unreachable").log
    finally:
        master.start_rsyncd()
        master.start_nfs()
    # A loud console warning naming the copy's age, then the node boots it.
    assert "master 192.168.0.1 is unreachable over nfs" in log
    assert re.search(r"BOOTING THE EARLIER COPY ON /dev/vda2: last complete sync \d+ \S+ old", log)
    assert booted(log)["generation"] == cluster.generation("default")


def test_6_update_node_changes_reach_regular_nodes(cluster: E2ECluster) -> None:
    cluster.update_node = "node02"
    cluster.reconfigure()
    log = cluster.boot("node02", "6a-update-node").log
    state = booted(log)
    assert state["fstype"] == "nfs" and state["root"].endswith(str(cluster.image_root("default")))
    assert "clustcontrol: boot sync" not in log  # no sync: the standard itself is the root
    written = cluster.image_root("default") / "etc/e2e-from-update-node"
    assert written.read_text().startswith("written on the update node")
    # A change made on the update node is never silently ignored: status flags it until it is
    # committed as a new generation.
    status = cluster.status()
    assert status.returncode == 1 and "UNCOMMITTED CHANGES" in status.stderr
    generation = cluster.commit("default")
    cluster.update_node = None
    cluster.reconfigure()
    log = cluster.boot("node01", "6b-regular-after-update").log
    assert booted(log)["generation"] == generation
    assert "(normal, delta)" in log
    assert "e2e: /etc/e2e-from-update-node: written on the update node" in log


def test_7_two_images_each_node_syncs_its_own(cluster: E2ECluster) -> None:
    gpu = cluster.image_root("gpu")
    (gpu / "etc/e2e-gpu-only").write_text("gpu image\n")
    generation = cluster.commit("gpu")
    log = cluster.boot("node03", "7-second-image-rsync").log
    assert "transport rsync" in log
    assert booted(log) == {
        "host": "node03",
        "generation": generation,
        "root": "/dev/vda2",
        "fstype": "ext4",
    }
    attributes_arrived(log)  # over the rsync daemon: rsync -AX
    secrets_arrived(log, gpu)  # an rsync node too mounts the secrets export (NFS) for them
    with mounted(cluster.vms["node03"].disk, 2) as root:
        assert (root / "etc/e2e-image").read_text() == "gpu\n"
        assert (root / "etc/e2e-gpu-only").is_file()
        assert not (root / "etc/e2e-added").exists()  # the default image's file
    with mounted(cluster.vms["node01"].disk, 2) as root:
        assert (root / "etc/e2e-image").read_text() == "default\n"
        assert not (root / "etc/e2e-gpu-only").exists()


def test_8_sparse_file_larger_than_the_root_and_persistent_data_under_a_removed_directory(
    cluster: E2ECluster,
) -> None:
    """Over the rsync daemon: a 2 GiB sparse file (the root partition is 1.5 GiB) arrives
    sparse; the standard removes the directory above a persistent path and the node keeps it."""
    gpu = cluster.image_root("gpu")
    (gpu / "opt/e2e-app/data").mkdir(parents=True)
    (gpu / "opt/e2e-app/data/state").write_text("seed from the standard\n")
    (gpu / "opt/e2e-app/bin").mkdir()
    cluster.commit("gpu")
    log = cluster.boot("node03", "8a-persistent-seeded").log
    assert "e2e: persistent seed from the standard" in log
    disk = cluster.vms["node03"].disk
    with mounted(disk, 2, writable=True) as root:
        (root / "opt/e2e-app/data/state").write_text("the node's own data\n")
    subprocess.run(["rm", "-rf", str(gpu / "opt/e2e-app")], check=True)
    with (gpu / "opt/e2e-sparse").open("wb") as sparse:
        sparse.truncate(2 << 30)
        sparse.seek(1 << 30)
        sparse.write(b"data in the middle of 2 GiB of holes\n")
    generation = cluster.commit("gpu")
    log = cluster.boot("node03", "8b-sparse-and-removed-parent").log
    assert booted(log)["generation"] == generation
    assert "(normal, delta)" in log
    assert "persistent /opt/e2e-app/data kept: the standard removed it" in log
    assert "e2e: persistent the node's own data" in log
    size, blocks, unit = map(int, re.findall(r"e2e: sparse (\d+) (\d+) (\d+)", log)[0])
    assert size == 2 << 30 and blocks * unit < 1 << 20, (size, blocks, unit)
