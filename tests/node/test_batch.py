"""Deltas replayed from the master's rsync batch (image/batches.py): nothing goes up, about the
change comes down, and a node that is not exactly at the batch's generation falls back to
rsync's delta algorithm and still ends equal to the generation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.node.conftest import Node, RsyncDaemon, write_control
from tests.node.test_engine import STATE, assert_ok, later, record

BIG = "usr/share/doc/big"


def edit_big(std: Path) -> bytes:
    """Ten bytes changed in the middle of the 512 KiB file; its new content."""
    data = bytearray((std / BIG).read_bytes())
    data[200_000:200_010] = b"0123456789"
    (std / BIG).write_bytes(bytes(data))
    later(std / BIG)
    return bytes(data)


@pytest.mark.parametrize("transport", ["nfs", "rsync"])
def test_a_batch_moves_about_what_changed(
    node: Node, rsync_daemon: RsyncDaemon, transport: str
) -> None:
    if transport == "rsync":
        write_control(node.control, transport="rsync", rsync_port=rsync_daemon.port)
        node.cmdline = node.cmdline.replace("transport=nfs", "transport=rsync")
    assert_ok(node.run())
    first = node.generation
    new = edit_big(node.std)
    r = node.run()
    assert_ok(r)
    assert f"replaying the master's batch from generation {first}" in r.out, r.out
    batch = node.tree() / f"etc/clustcontrol-deltas/{first}.batch"
    assert batch.stat().st_size < 8 * 1024  # the edit and rsync's tokens, not 512 KiB
    with node.mounted(2) as root:
        assert (root / BIG).read_bytes() == new
        rec = record(root)
        assert rec["CC_SYNC_METHOD"] == "batch" and rec["CC_SYNC_GENERATION"] == node.generation
        # Bytes from the master: the batch, its list and its sums; nothing went up.
        assert int(rec["CC_SYNC_BYTES"]) < 10 * 1024, rec
        assert not (root / STATE / "delta.batch").exists()  # the fetched batch is gone


def test_a_node_not_at_the_batchs_generation_falls_back_to_the_delta(node: Node) -> None:
    """rsync replays a batch onto whatever the node holds: a node whose file differs (same size
    and time) fails rsync's verification of the rebuilt file, and rsync's own delta repairs
    it."""
    assert_ok(node.run())
    with node.mounted(2) as root:
        st = (root / BIG).stat()
        tampered = bytearray((root / BIG).read_bytes())
        tampered[100:110] = b"tampered!!"
        (root / BIG).write_bytes(bytes(tampered))
        os.utime(root / BIG, ns=(st.st_atime_ns, st.st_mtime_ns))
    new = edit_big(node.std)
    r = node.run()
    assert_ok(r)
    assert "on this node (rsync: failed verification)" in r.out, r.out
    with node.mounted(2) as root:
        assert (root / BIG).read_bytes() == new
        assert record(root)["CC_SYNC_METHOD"] == "delta"


def test_a_file_the_batch_leaves_alone_is_checked_by_its_sum(node: Node) -> None:
    """A hard link rsync makes (not a file it rebuilds) is checked against the sums: a node
    whose partner file differs is caught too."""
    assert_ok(node.run())
    os.link(node.std / "bin/tool", node.std / "bin/tool-third")  # a new name, same inode
    r = node.run()
    assert_ok(r)
    assert record_method(node) == "batch", r.out
    with node.mounted(2) as root:
        assert (root / "bin/tool-third").samefile(root / "bin/tool")


def record_method(node: Node) -> str:
    with node.mounted(2) as root:
        return record(root)["CC_SYNC_METHOD"]


def test_a_batch_for_other_paths_is_not_used(node: Node) -> None:
    """The batch covers the paths a node at FROM syncs with every persistent path its own. A
    node that never held a persistent path complete seeds it: its list differs, no batch."""
    assert_ok(node.run())
    with node.mounted(2) as root:
        rec = (root / STATE / "last-sync").read_text()
        (root / STATE / "last-sync").write_text(
            rec.replace("CC_SYNC_SEEDED='/var/lib/keep /etc/local.conf'", "CC_SYNC_SEEDED=''")
        )
    (node.std / "var/lib/keep/state").write_text("new seed\n")
    later(node.std / "var/lib/keep/state")
    r = node.run()
    assert_ok(r)
    assert "covers other paths than this node syncs" in r.out, r.out
    with node.mounted(2) as root:
        assert record(root)["CC_SYNC_METHOD"] == "delta"
        assert (root / "var/lib/keep/state").read_text() == "new seed\n"  # seeded again
