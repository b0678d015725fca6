"""copy.sh under busybox sh: the filter built from the contract's exclusions, and the tar and
grep forms derived from it (the whole copies run in test_engine.py)."""

from __future__ import annotations

from pathlib import Path

from clustcontrol.contract import exclusions
from tests.node.conftest import module_sh

SETUP = (
    "CC_CONTROL_DIR=/srv/clustcontrol.d CC_PERSISTENT='/var/lib/keep /etc/local.conf /opt/absent'\n"
    "CC_PARTITIONS='1:swap:swap::0 2:root:ext4:/:0 3:data:ext4:/scratch:1'\n"
)


def sh(body: str, **env: str) -> tuple[int, str]:
    return module_sh(["params", "record", "copy"], SETUP + body, **env)


def filter_rules(tmp_path: Path) -> list[str]:
    (tmp_path / "var/lib/keep").mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/local.conf").symlink_to("/nowhere")  # a dangling link still counts
    # The last complete sync held them complete: they are the node's own now.
    (tmp_path / "var/lib/clustcontrol-node").mkdir(parents=True)
    (tmp_path / "var/lib/clustcontrol-node/last-sync").write_text(
        "CC_SYNC_SEEDED='/var/lib/keep /etc/local.conf /opt/absent'\n"
    )
    rc, out = sh(f"cc_write_filter '{tmp_path}' '{tmp_path}/f' && cat '{tmp_path}/f'")
    assert rc == 0, out
    return out.splitlines()


def test_filter_has_every_exclusion_once(tmp_path: Path) -> None:
    rules = filter_rules(tmp_path)
    assert len(rules) == len(set(rules))
    values = {
        "CC_CONTROL_DIR": "/srv/clustcontrol.d",
        "CC_STATE_DIR": "/var/lib/clustcontrol-node",
        "CC_LOG_DIR": "/var/log/clustcontrol",
    }
    for path, contents in exclusions(values, sync=True):
        assert f"- /{path}/**" in rules, path
        assert (f"- /{path}" in rules) != contents, path
    assert "- /scratch/**" in rules  # the data partition's mount point
    assert "- /var/lib/keep" in rules and "- /etc/local.conf/**" in rules  # seeded: kept
    assert not any("absent" in r for r in rules)  # absent: nothing to keep
    assert "- /etc/clustcontrol-generation" not in rules  # nodes copy the generation id


def test_tar_and_grep_forms_match_the_same_paths(tmp_path: Path) -> None:
    filter_rules(tmp_path)
    rc, tar = sh(f"cc_tar_excludes '{tmp_path}/f'")
    assert rc == 0
    assert "./proc/*" in tar.splitlines() and "./srv/clustcontrol.d" in tar.splitlines()
    assert all(line.startswith("./") for line in tar.splitlines())
    excluded = [
        "proc/1/status", "lost+found", "srv/clustcontrol.d/default", "etc/ssh/ssh_host_rsa_key",
        "etc/fstab", "var/lib/keep/x", "scratch/data", "var/lib/clustcontrol-node/last-sync",
    ]  # fmt: skip
    kept = [
        "proc", "etc/ssh/sshd_config", "usr/lost+found", "etc/fstab.d/x", "srv/clustcontrol.dx",
        "etc/clustcontrol-generation", "opt/absent/seed",
    ]  # fmt: skip
    (tmp_path / "paths").write_text("\n".join(excluded + kept) + "\n")
    # As a delta's list goes through it: grep -v -f (busybox grep, as on the node).
    rc, out = sh(
        f"cc_filter_regex '{tmp_path}/f' >'{tmp_path}/re'\n"
        f"grep -v -f '{tmp_path}/re' '{tmp_path}/paths'"
    )
    assert rc == 0, out
    assert out.splitlines() == kept


def test_root_blank_ignores_lost_and_found(tmp_path: Path) -> None:
    (tmp_path / "lost+found").mkdir()
    assert sh(f"cc_root_blank '{tmp_path}'")[0] == 0
    (tmp_path / ".hidden").write_text("")
    assert sh(f"cc_root_blank '{tmp_path}'")[0] == 1


def test_rsync_flags_follow_the_build() -> None:
    assert sh("cc_rsync_flags") == (0, "-aHAXx\n")
    assert sh("cc_rsync_flags", CC_RSYNC_FLAGS="-a") == (0, "-a\n")


def test_persistent_paths_are_kept_only_once_seeded_completely(tmp_path: Path) -> None:
    """A persistent path is the node's own once a complete sync left it there (CC_SYNC_SEEDED of
    the record); before that (a first sync cut half-way) it is seeded again. A record written
    by an earlier version (no CC_SYNC_SEEDED) counts every existing path."""
    (tmp_path / "var/lib/keep").mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/local.conf").write_text("")
    record = tmp_path / "var/lib/clustcontrol-node/last-sync"
    record.parent.mkdir(parents=True)
    check = (
        f"for p in /var/lib/keep /etc/local.conf; do cc_seeded '{tmp_path}' $p && echo $p; done"
        "; true"
    )
    assert sh(check) == (0, "")  # no record: never complete
    record.write_text("CC_SYNC_SEEDED='/etc/local.conf'\n")
    assert sh(check) == (0, "/etc/local.conf\n")
    record.write_text("CC_SYNC_GENERATION='g1'\n")
    assert sh(check) == (0, "/var/lib/keep\n/etc/local.conf\n")
