"""What the oracle (test_oracle.py) found, each as a deterministic regression test: the real
engine under busybox sh on a loop-device disk, the real commit code, the NFSv3-like view
(CC_TEST_NFS3_VIEW) or the rsync daemon."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from clustcontrol.contract import DENSE_LIST
from tests.holes import filefrag_holes, have_filefrag
from tests.node.conftest import Node, RsyncDaemon, write_control
from tests.node.test_engine import STATE, assert_ok, record

pytestmark = pytest.mark.slow


def nfs3(node: Node) -> None:
    node.env["CC_TEST_NFS3_VIEW"] = str(node.tmp / "nfs3-view")


def over_rsync(node: Node, daemon: RsyncDaemon) -> None:
    write_control(node.control, transport="rsync", rsync_port=daemon.port)
    node.cmdline = node.cmdline.replace("transport=nfs", "transport=rsync")
    node.env["CC_NFS_MOUNT"] = "false"


def test_restoring_attributes_over_nfs_keeps_directory_times(node: Node) -> None:
    """Extracting the attribute archive replaces each file, which moved the mtime of the
    directory it is in; the archive now holds those directories too, restored after."""
    tool = node.std / "usr/bin/pinger"
    tool.parent.mkdir(parents=True)
    tool.write_bytes(b"\x7fELF pretend\n")
    subprocess.run(["setcap", "cap_net_raw+ep", str(tool)], check=True)
    os.utime(tool.parent, ns=(10**18, 10**18))
    nfs3(node)
    r = node.run()
    assert_ok(r)
    assert "extended attributes restored" in r.out
    with node.mounted(2) as root:
        assert os.getxattr(root / "usr/bin/pinger", "security.capability")
        assert os.lstat(root / "usr/bin").st_mtime_ns == 10**18


def test_restoring_attributes_keeps_a_directory_time_beside_a_similar_name(node: Node) -> None:
    """The archive was in string order: "usr/bin.96" ("." sorts before "/") came between
    "usr/bin" and "usr/bin/pinger", so GNU tar set usr/bin's times before it replaced the file
    in it (the oracle's finding: a directory's mtime moved by a batch boot)."""
    for rel in ("usr/bin/pinger", "usr/bin.96/tool"):
        f = node.std / rel
        f.parent.mkdir(parents=True)
        f.write_bytes(b"\x7fELF pretend\n")
        os.setxattr(f, "trusted.cc", b"1")
        os.utime(f.parent, ns=(10**18, 10**18))
    nfs3(node)
    assert_ok(node.run())
    os.setxattr(node.std / "usr/bin/pinger", "trusted.cc", b"2")  # the directory is unchanged
    r = node.run()
    assert_ok(r)
    assert "extended attributes restored: 4 path(s)" in r.out
    with node.mounted(2) as root:
        assert os.getxattr(root / "usr/bin/pinger", "trusted.cc") == b"2"
        assert os.lstat(root / "usr/bin").st_mtime_ns == 10**18
        assert os.lstat(root / "usr/bin.96").st_mtime_ns == 10**18


def test_a_time_changed_within_its_second_arrives(node: Node) -> None:
    """rsync compares times to the whole second by default: a directory or file whose mtime
    moved only within its second kept the old one on a whole-tree sync."""
    f = node.std / "usr/share/doc/big"
    os.utime(f, ns=(1_600_000_000_100_000_000, 1_600_000_000_100_000_000))
    os.utime(f.parent, ns=(1_600_000_000_100_000_000, 1_600_000_000_100_000_000))
    assert_ok(node.run())
    os.utime(f, ns=(1_600_000_000_900_000_000, 1_600_000_000_900_000_000))
    os.utime(f.parent, ns=(1_600_000_000_900_000_000, 1_600_000_000_900_000_000))
    r = node.run(CC_DELTA_SYNC="no")
    assert_ok(r)
    assert "(full, tree)" in r.out
    with node.mounted(2) as root:
        assert os.lstat(root / "usr/share/doc/big").st_mtime_ns == 1_600_000_000_900_000_000
        assert os.lstat(root / "usr/share/doc").st_mtime_ns == 1_600_000_000_900_000_000


def test_a_sparse_file_stays_sparse_through_the_nfs3_tar_copy(node: Node) -> None:
    """The tar first copy over the NFSv3-like view (which shows allocation as NFSv3 does)."""
    sparse = node.std / "var/log/lastlog"
    sparse.parent.mkdir(parents=True)
    with open(sparse, "wb") as f:
        f.seek(20 * 1024 * 1024)
        f.write(b"x" * 4096)
        f.truncate(30 * 1024 * 1024)
    nfs3(node)
    r = node.run()
    assert_ok(r)
    assert "(normal, tar)" in r.out
    with node.mounted(2) as root:
        st = (root / "var/log/lastlog").stat()
        assert st.st_size == 30 * 1024 * 1024 and st.st_blocks * 512 < 1024 * 1024


def test_a_delta_that_removes_a_directory_keeps_the_nodes_own_files_in_it(node: Node) -> None:
    """The standard drops /etc/ssh (openssh removed): the delta deleted the directory with the
    node's own host keys in it (only persistent paths were kept)."""
    assert_ok(node.run())
    with node.mounted(2) as root:
        (root / "etc/ssh/ssh_host_ed25519_key").write_text("THE NODE'S OWN KEY\n")
        (root / "etc/ssh/sshd_config").write_text("from the standard once\n")
    shutil.rmtree(node.std / "etc/ssh")
    r = node.run()
    assert_ok(r)
    assert "(normal, delta)" in r.out
    with node.mounted(2) as root:
        assert (root / "etc/ssh/ssh_host_ed25519_key").read_text() == "THE NODE'S OWN KEY\n"
        assert os.listdir(root / "etc/ssh") == ["ssh_host_ed25519_key"]


def test_restored_attributes_never_link_a_file_to_the_nodes_own(node: Node) -> None:
    """/etc/local.conf (persistent) and /usr/bin/tool2 are one file with a capability in the
    standard. The attribute archive stored the data with the first name, /etc/local.conf, and
    linked /usr/bin/tool2 to it: over NFS, the node's tool2 became a link to the node's own
    local.conf, with the node's content."""
    local = node.std / "etc/local.conf"
    (node.std / "usr/bin").mkdir(parents=True)
    os.link(local, node.std / "usr/bin/tool2")
    subprocess.run(["setcap", "cap_net_raw+ep", str(local)], check=True)
    nfs3(node)
    assert_ok(node.run())
    with node.mounted(2) as root:
        (root / "etc/local.conf").write_text("the node's own\n")
    node.cmdline += " clustcontrol.verify=1"
    assert_ok(node.run())
    with node.mounted(2) as root:
        assert (root / "usr/bin/tool2").read_text() == "standard version\n"
        assert os.getxattr(root / "usr/bin/tool2", "security.capability")
        assert (root / "etc/local.conf").read_text() == "the node's own\n"
        assert os.stat(root / "usr/bin/tool2").st_ino != os.stat(root / "etc/local.conf").st_ino


@pytest.mark.parametrize("transport", ["nfs", "rsync"])
def test_a_seeded_persistent_file_shares_no_inode_with_the_rest(
    node: Node, rsync_daemon: RsyncDaemon, transport: str
) -> None:
    """The standard hard-links /var/lib/keep/state to /usr/state. Seeded with the link, the
    node's own file changed with every chmod, chown or attribute change of /usr/state, and
    the node's writes into it changed /usr/state."""
    if transport == "rsync":
        over_rsync(node, rsync_daemon)
    else:
        nfs3(node)
    os.link(node.std / "var/lib/keep/state", node.std / "usr/state")
    r = node.run()
    assert_ok(r)
    assert "seeded persistent files hard-linked to files outside them" in r.out
    with node.mounted(2) as root:
        keep, usr = root / "var/lib/keep/state", root / "usr/state"
        assert os.stat(keep).st_ino != os.stat(usr).st_ino
        mode = stat.S_IMODE(os.stat(keep).st_mode)
        with open(keep, "a") as f:
            f.write("node data\n")
    (node.std / "usr/state").chmod(0o600)
    r = node.run()
    assert_ok(r)
    with node.mounted(2) as root:
        assert stat.S_IMODE(os.stat(root / "var/lib/keep/state").st_mode) == mode
        assert (root / "var/lib/keep/state").read_text() == "standard seed\nnode data\n"
        assert (root / "usr/state").read_text() == "standard seed\n"


def test_a_whole_tree_sync_compares_contents(node: Node) -> None:
    """A file changed with its size and mtime kept (the commit sees the ctime): a node that
    syncs the whole tree (no delta) compared size and mtime, kept the old content and recorded
    the new generation."""
    assert_ok(node.run())
    tool = node.std / "bin/tool"
    st = tool.stat()
    tool.write_text(tool.read_text().replace("echo tool", "echo TOOL"))
    os.utime(tool, ns=(st.st_atime_ns, st.st_mtime_ns))
    r = node.run(CC_DELTA_SYNC="no")
    assert_ok(r)
    assert "(full, tree)" in r.out
    with node.mounted(2) as root:
        assert "echo TOOL" in (root / "bin/tool").read_text()
        assert record(root)["CC_SYNC_GENERATION"] == node.generation


CUT_RSYNC = """#!/bin/sh
# rsync whose sync run copies all but var/lib/keep/b, then the node loses power.
case "$*" in
*--stats*) rsync --exclude=/var/lib/keep/b "$@"; sync; kill -9 0 ;;
*) exec rsync "$@" ;;
esac
"""


def test_a_persistent_path_brought_by_a_cut_sync_is_seeded_again(node: Node) -> None:
    """The first sync had no /var/lib/keep (its record names it all the same); the sync that
    brings it is cut half-way. The half-filled path counted as the node's own from then on:
    var/lib/keep/b never arrived. The marker now names what was the node's own at the start."""
    shutil.rmtree(node.std / "var/lib/keep")
    assert_ok(node.run())
    (node.std / "var/lib/keep").mkdir()
    (node.std / "var/lib/keep/a").write_text("a\n")
    (node.std / "var/lib/keep/b").write_text("b\n")
    node.commit()
    cut = node.tmp / "cut-rsync"
    cut.write_text(CUT_RSYNC)
    cut.chmod(0o755)
    proc = node.popen("cc_run", CC_RSYNC=str(cut), CC_DELTA_SYNC="no")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, out
    node.cleanup_mounts()
    with node.mounted(2) as root:
        assert (root / "var/lib/keep/a").exists() and not (root / "var/lib/keep/b").exists()
        assert (root / STATE / "sync-in-progress").exists()
    r = node.run()
    assert_ok(r)
    with node.mounted(2) as root:
        assert (root / "var/lib/keep/b").read_text() == "b\n"


@pytest.mark.parametrize("how", ["batch", "delta", "tree"])
def test_a_directory_the_standard_turns_into_a_symlink_keeps_the_nodes_own_paths(
    node: Node, how: str
) -> None:
    """The standard makes /var/lib a symlink. The batch replayed rsync's --force deletion of the
    directory without the node's filter: the persistent /var/lib/keep with the node's data,
    and the node's state, went with it (and the record could not be written)."""
    assert_ok(node.run())
    with node.mounted(2) as root:
        (root / "var/lib/keep/mine").write_text("THE NODE'S DATA\n")
    shutil.rmtree(node.std / "var/lib")
    (node.std / "var/lib").symlink_to("/srv/lib")
    if how == "delta":
        node.env["CC_DELTA_BATCH"] = "no"
    elif how == "tree":
        node.env["CC_DELTA_SYNC"] = "no"
    r = node.run()
    assert_ok(r)
    assert "the standard has no directory" in r.out or "kept" in r.out, r.out
    # Kept at the first attempt: no retries with back-off, no fallback to the whole tree.
    assert "attempt 1 of" not in r.out, r.out
    method = {"batch": "delta", "delta": "delta", "tree": "tree"}[how]
    assert f"sync done ({method})" in r.out, r.out
    with node.mounted(2) as root:
        assert (root / "var/lib/keep/mine").read_text() == "THE NODE'S DATA\n"
        assert record(root)["CC_SYNC_GENERATION"] == node.generation
        assert not (root / STATE / "sync-in-progress").exists()


@pytest.mark.parametrize(
    ("path", "flag"),
    [("usr/share/doc/big", "+i"), ("usr/share/doc/big", "+a"), ("usr/share/doc", "+i")],
)
@pytest.mark.parametrize("how", ["delta", "tree"])
def test_a_flag_set_on_the_node_never_stops_its_sync(
    node: Node, path: str, flag: str, how: str
) -> None:
    """chattr +i or +a on a synced file or directory of the node: rsync could neither replace
    nor delete it ("Operation not permitted"), every boot failed and retried. The flags are
    cleared (a generation has none); the node's own paths keep theirs."""
    assert_ok(node.run())
    with node.mounted(2) as root:
        (root / "var/lib/keep/mine").write_text("THE NODE'S DATA\n")
        subprocess.run(["chattr", "+i", str(root / "var/lib/keep/mine")], check=True)
        subprocess.run(["chattr", flag, str(root / path)], check=True)
    (node.std / "usr/share/doc/big").write_bytes(b"new content\n")
    (node.std / "usr/share/doc/new").write_text("new\n")
    if how == "tree":
        node.env["CC_DELTA_SYNC"] = "no"
    r = node.run()
    assert_ok(r)
    assert "clearing immutable/append-only flags set on the node" in r.out, r.out
    with node.mounted(2) as root:
        assert (root / "usr/share/doc/big").read_bytes() == b"new content\n"
        assert (root / "usr/share/doc/new").read_text() == "new\n"
        assert record(root)["CC_SYNC_GENERATION"] == node.generation
        flags = subprocess.run(
            ["lsattr", "-d", str(root / path), str(root / "var/lib/keep/mine")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
        assert "i" not in flags[0].split()[0] and "a" not in flags[0].split()[0], flags
        assert "i" in flags[1].split()[0], flags  # the node's own file keeps its flag
        subprocess.run(["chattr", "-i", str(root / "var/lib/keep/mine")], check=True)


def test_a_batch_carries_a_time_changed_within_its_second(node: Node) -> None:
    """A symlink's mtime moved by half a second: the batch replay compared whole seconds and
    left it, and the node recorded the generation."""
    link = node.std / "usr/share/doc/link"
    link.symlink_to("/nonexistent")
    os.utime(link, ns=(1_704_067_200_000_000_000,) * 2, follow_symlinks=False)
    assert_ok(node.run())
    os.utime(link, ns=(1_704_067_200_500_000_000,) * 2, follow_symlinks=False)
    r = node.run()
    assert_ok(r)
    assert "replaying the master's batch" in r.out, r.out
    with node.mounted(2) as root:
        assert os.lstat(root / "usr/share/doc/link").st_mtime_ns == 1_704_067_200_500_000_000


def test_node_files_and_the_log_never_follow_a_symlink_out_of_the_root(
    node: Node, tmp_path: Path
) -> None:
    """The standard's /etc/network and /var/log are absolute symlinks (the update node can
    plant them): the engine rewrote the interfaces file and wrote its log where they point,
    outside the node's root (the initramfs' files; in a rehearsal, the master's)."""
    outside = tmp_path / "outside"
    (outside / "net").mkdir(parents=True)
    (outside / "net/interfaces").write_text("iface eth0 inet dhcp\n")
    (outside / "log").mkdir()
    shutil.rmtree(node.std / "etc/network")
    (node.std / "etc/network").symlink_to(outside / "net")
    shutil.rmtree(node.std / "var/log", ignore_errors=True)
    (node.std / "var/log").symlink_to(outside / "log")
    for _ in range(2):  # a blank root, then a delta
        r = node.run()
        assert_ok(r)
        assert "is a symbolic link: /etc/network/interfaces.tmp not written" in r.out, r.out
        assert (outside / "net/interfaces").read_text() == "iface eth0 inet dhcp\n"
        assert sorted(os.listdir(outside / "net")) == ["interfaces"]
        assert os.listdir(outside / "log") == []
        (node.std / "etc/motd").write_text(f"{_}\n")


DENSE = ("swapfile", "swap.fallocated", "var/lib/db/table", "opt/db-link")
MTIME = 1_700_000_000_123_456_789


def write_dense_and_sparse(std: Path, version: int) -> None:
    """A swap file made as the swapon(8) manual says (dd from /dev/zero, mkswap), one made with
    fallocate(1) (unwritten extents), a preallocated table (data between zero blocks, a file
    capability, a time with nanoseconds, a second name), and a sparse lastlog. Each version
    writes other content: a node that has an earlier one rewrites them all."""
    swap = std / "swapfile"
    swap.write_bytes(bytes(1 << 20))
    subprocess.run(["mkswap", "-U", f"{version:08d}-0000-4000-8000-000000000000", str(swap)],
                   check=True, capture_output=True)  # fmt: skip
    fallocated = std / "swap.fallocated"
    fallocated.unlink(missing_ok=True)
    subprocess.run(["fallocate", "-l", str(1 << 20), str(fallocated)], check=True)
    subprocess.run(["mkswap", str(fallocated)], check=True, capture_output=True)
    table = std / "var/lib/db/table"
    table.parent.mkdir(parents=True, exist_ok=True)
    table.write_bytes(bytes(8192) + b"row %d\n" % version * 100 + bytes(20000) + b"end\n")
    subprocess.run(["setcap", "cap_net_raw+ep", str(table)], check=True)
    os.utime(table, ns=(MTIME + version, MTIME + version))
    (std / "opt").mkdir(exist_ok=True)
    if not (std / "opt/db-link").exists():
        os.link(table, std / "opt/db-link")
    lastlog = std / "var/log/lastlog"
    lastlog.parent.mkdir(parents=True, exist_ok=True)
    lastlog.unlink(missing_ok=True)
    with open(lastlog, "wb") as f:
        f.seek(4 << 20)
        f.write(b"login %d\n" % version)
        f.truncate(8 << 20)


def assert_dense_and_sparse(node: Node, root: Path) -> None:
    tree = node.tree()
    for rel in DENSE:
        assert (root / rel).read_bytes() == (tree / rel).read_bytes(), rel
        assert not filefrag_holes(root / rel), f"{rel}: holes on the node"
        assert os.lstat(root / rel).st_mtime_ns == os.lstat(tree / rel).st_mtime_ns, rel
    assert os.stat(root / "var/lib/db/table").st_ino == os.stat(root / "opt/db-link").st_ino
    assert os.getxattr(root / "var/lib/db/table", "security.capability")
    lastlog = os.lstat(root / "var/log/lastlog")
    assert lastlog.st_size == 8 << 20 and lastlog.st_blocks * 512 < 64 * 1024
    assert filefrag_holes(root / "var/log/lastlog")


@pytest.mark.skipif(not have_filefrag(), reason="needs filefrag (e2fsprogs)")
@pytest.mark.parametrize("transport", ["nfs", "rsync"])
def test_dense_files_stay_dense_and_sparse_files_sparse(
    node: Node, rsync_daemon: RsyncDaemon, transport: str
) -> None:
    """rsync --sparse and tar --sparse made a hole of every zero block: a swap file of the
    standard failed swapon on the node ("swapfile has holes"), a preallocated file lost its
    preallocation. The commit lists the dense files; the node allocates each one its copy wrote
    (first copy, batch, delta, whole tree) and gives back the time and capability fallocate
    moved; sparse files stay sparse."""
    if transport == "rsync":
        over_rsync(node, rsync_daemon)
    else:
        nfs3(node)
    steps: list[tuple[str, dict[str, str]]] = [
        ("tar" if transport == "nfs" else "tree", {}),
        ("batch", {}),
        ("delta", {"CC_DELTA_BATCH": "no"}),
        ("tree", {"CC_DELTA_SYNC": "no"}),
    ]
    for version, (method, env) in enumerate(steps):
        write_dense_and_sparse(node.std, version)
        node.commit()
        r = node.sh("cc_run", **env)
        assert_ok(r)
        assert f"sync done ({method})" in r.out, r.out
        assert "dense files allocated: 4 (fallocate)" in r.out, r.out
        listed = (node.tree() / DENSE_LIST).read_text().splitlines()
        assert [line.split(" ", 1)[1] for line in listed[1:-1]] == sorted(DENSE), listed
        with node.mounted(2) as root:
            assert_dense_and_sparse(node, root)
            assert record(root)["CC_SYNC_GENERATION"] == node.generation


def test_a_symlink_with_attributes_never_goes_by_batch(
    node: Node, rsync_daemon: RsyncDaemon
) -> None:
    """The standard turns /bin into a symlink with a trusted.* attribute. rsync's batch replay
    (--read-batch -X) created the link without it, and the node recorded the generation; such
    a delta now gets no batch, and the ordinary delta carries the attribute."""
    over_rsync(node, rsync_daemon)
    assert_ok(node.run())
    shutil.rmtree(node.std / "bin")
    (node.std / "bin").symlink_to("usr/bin")
    subprocess.run(["setfattr", "-h", "-n", "trusted.cc", "-v", "0x4b", str(node.std / "bin")],
                   check=True)  # fmt: skip
    r = node.run()
    assert_ok(r)
    assert "(normal, delta)" in r.out and "replaying the master's batch" not in r.out, r.out
    with node.mounted(2) as root:
        assert os.getxattr(root / "bin", "trusted.cc", follow_symlinks=False) == b"K"


@pytest.mark.parametrize("first", ["tar", "nfs-rsync", "rsync-daemon"])
def test_a_blank_node_follows_the_standards_symlink_to_its_state_directory(
    node: Node, rsync_daemon: RsyncDaemon, first: str
) -> None:
    """The standard's /var/lib is a relative symlink (../usr/varlib): a blank node made
    var/lib a directory for its state before the copy, kept it for its own paths, and the
    standard's /var/lib (dpkg's status and all) never appeared there."""
    shutil.move(node.std / "var/lib", node.std / "usr/varlib")
    (node.std / "var/lib").symlink_to("../usr/varlib")
    (node.std / "usr/varlib/dpkg").mkdir()
    (node.std / "usr/varlib/dpkg/status").write_text("Package: base-files\n")
    if first == "nfs-rsync":
        node.env["CC_FIRST_COPY"] = "rsync"
    if first == "rsync-daemon":
        over_rsync(node, rsync_daemon)
    r = node.run()
    assert_ok(r)
    assert "kept" not in r.out, r.out
    with node.mounted(2) as root:
        assert os.readlink(root / "var/lib") == "../usr/varlib"
        assert (root / "var/lib/dpkg/status").read_text() == "Package: base-files\n"
        assert record(root)["CC_SYNC_GENERATION"]
    r = node.run()
    assert_ok(r)
    assert "no transfer" in r.out or "in sync" in r.out, r.out
    with node.mounted(2) as root:
        assert os.readlink(root / "var/lib") == "../usr/varlib"


@pytest.mark.parametrize("target", ["absolute", "../../above"])
def test_a_state_directory_behind_a_symlink_out_of_the_root_is_a_directory(
    node: Node, target: str
) -> None:
    """A standard whose /var/lib leads out of the root: the node's state never follows it (it
    would land in the initramfs, or on the master); var/lib is a directory on the node, said
    so, and every boot finds its record there."""
    outside = node.tmp / "outside"
    outside.mkdir()
    shutil.rmtree(node.std / "var/lib")
    (node.std / "var/lib").symlink_to(outside if target == "absolute" else target)
    r = node.run()
    assert_ok(r)
    assert "/var/lib is a symbolic link to" in r.out, r.out
    assert list(outside.iterdir()) == []
    with node.mounted(2) as root:
        assert (root / "var/lib").is_dir() and not (root / "var/lib").is_symlink()
        assert record(root)["CC_SYNC_GENERATION"]
    r = node.run()
    assert_ok(r)
    assert "no transfer" in r.out, r.out
    assert list(outside.iterdir()) == []
