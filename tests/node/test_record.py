"""record.sh under busybox sh: marker, record, generations, when a comparison is due."""

from __future__ import annotations

from pathlib import Path

from tests.node.conftest import module_sh

STATE = "var/lib/clustcontrol-node"


def sh(body: str, **env: str) -> tuple[int, str]:
    return module_sh(["params", "net", "record"], body, **env)


def test_sync_age(tmp_path: Path) -> None:
    state = tmp_path / STATE
    state.mkdir(parents=True)
    (state / "last-sync").write_text("CC_SYNC_END='1000'\n")
    assert sh(f"cc_sync_age '{tmp_path}'", CC_NOW=str(1000 + 2 * 86400 + 3 * 3600)) == (
        0,
        "2 day(s) 3 hour(s) old\n",
    )
    assert sh(f"cc_has_complete_sync '{tmp_path}'")[0] == 0
    (state / "sync-in-progress").write_text("")
    assert sh(f"cc_has_complete_sync '{tmp_path}'")[0] == 1


def test_the_record_replaces_the_marker(tmp_path: Path) -> None:
    rc, out = sh(
        f"cc_write_marker '{tmp_path}' default nfs:/src && ls '{tmp_path}/{STATE}'\n"
        f"echo 3 >'{tmp_path}/{STATE}/generation-skips'\n"
        f"cc_write_record '{tmp_path}' default 'm nfs' 4-abc 1 2 300 0 normal"
        f" && ls '{tmp_path}/{STATE}'",
        CC_NOW="1",
    )
    # The count of boots since the last full comparison is the caller's to keep or reset.
    assert (rc, out) == (0, "sync-in-progress\ngeneration-skips\nlast-sync\n")
    record = (tmp_path / STATE / "last-sync").read_text()
    assert "CC_SYNC_GENERATION='4-abc'\n" in record and "CC_SYNC_BYTES='300'\n" in record
    assert sh(f"cc_has_complete_sync '{tmp_path}'")[0] == 0


def test_the_generation_the_node_recorded(tmp_path: Path) -> None:
    node = tmp_path / "node"
    (node / STATE).mkdir(parents=True)
    rc, out = sh(f"cc_recorded_generation '{node}'; echo \"[$CC_REC_GENERATION]\"")
    assert (rc, out) == (0, "[]\n")
    (node / STATE / "last-sync").write_text("CC_SYNC_GENERATION='6-def'\n")
    rc, out = sh(f"cc_recorded_generation '{node}'; echo \"[$CC_REC_GENERATION]\"")
    assert (rc, out) == (0, "[6-def]\n")


def test_verify_is_due_every_nth_boot(tmp_path: Path) -> None:
    (tmp_path / STATE).mkdir(parents=True)
    body = (
        f"if cc_verify_due '{tmp_path}'; then echo due; else cc_count_unverified '{tmp_path}'; fi\n"
    )
    rc, out = sh(body * 4, CC_VERIFY_EVERY="3")
    assert (rc, out) == (0, "due\ndue\n")  # boots 1, 2 skip; 3 and on are due until recorded
    assert sh(body, CC_VERIFY_EVERY="0", CC_ARG_VERIFY="") == (0, "")
    assert sh("cc_verify_every", CC_ARG_VERIFY="1") == (0, "1\n")
