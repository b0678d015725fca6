"""delta.sh under busybox sh: fetching and checking a generation delta, deleting its removed
paths without following a symlink out of the root."""

from __future__ import annotations

from pathlib import Path

from tests.node.conftest import module_sh


def sh(body: str, **env: str) -> tuple[int, str]:
    return module_sh(["params", "disk", "net", "record", "copy", "delta"], body, **env)


def fetch(tmp_path: Path, delta: str | None) -> tuple[int, str, Path]:
    std = tmp_path / "std"
    (std / "etc/clustcontrol-deltas").mkdir(parents=True, exist_ok=True)
    if delta is not None:
        (std / "etc/clustcontrol-deltas/1-a").write_text(delta)
    (tmp_path / "f").write_text("- /etc/fstab\n- /proc/**\n- /var/lib/keep\n- /var/lib/keep/**\n")
    rc, out = sh(
        "CC_REC_GENERATION=1-a CC_STD_GENERATION=2-b\n"
        f"cc_fetch_delta nfs '{std}/' '{tmp_path}/f' '{tmp_path}/list'",
        CC_RUN_DIR=str(tmp_path),
    )
    return rc, out, tmp_path / "list"


def test_a_good_delta_without_the_excluded_paths(tmp_path: Path) -> None:
    rc, out, lst = fetch(
        tmp_path,
        "# clustcontrol-delta 1 1-a 2-b\nbin/a\netc/fstab\nproc/x\nvar/lib/keep/y\n"
        "# removed\nold\nvar/lib/keep\n# end\n",
    )
    assert rc == 0, out
    assert lst.read_text() == "bin/a\netc/clustcontrol-generation\n"
    assert Path(f"{lst}.removed").read_text() == "old\n"
    assert "delta of 1 path(s) to copy, 1 to delete" in out


def test_bad_deltas_fall_back_to_the_whole_tree(tmp_path: Path) -> None:
    cases = {
        "# clustcontrol-delta 1 0-z 2-b\na\n# removed\n# end\n": "is not one to 2-b",
        "# clustcontrol-delta 1 1-a 2-b\na\n# removed\nb\n": "is truncated",
        "# clustcontrol-delta 1 1-a 2-b\n../etc/shadow\n# removed\n# end\n": "outside the root",
        "# clustcontrol-delta 1 1-a 2-b\na\n# removed\nx/../../y\n# end\n": "outside the root",
        "# clustcontrol-delta 1 1-a 2-b\n/etc/passwd\n# removed\n# end\n": "outside the root",
    }
    for n, (delta, why) in enumerate(cases.items()):
        (tmp_path / str(n)).mkdir()
        rc, out, _ = fetch(tmp_path / str(n), delta)
        assert rc == 1 and why in out, (delta, out)
    (tmp_path / "none").mkdir()
    rc, out, _ = fetch(tmp_path / "none", None)
    assert rc == 1 and "no delta from generation 1-a to 2-b" in out


def test_removed_paths_are_deleted_inside_the_root_only(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "a/b").mkdir(parents=True)
    (root / "a/b/f").write_text("")
    (root / "gone").write_text("")
    outside.mkdir()
    (outside / "precious").write_text("keep me\n")
    (root / "link").symlink_to(outside)  # absolute: leads out of the root
    (tmp_path / "removed").write_text("a/b\ngone\nlink/precious\nmissing/x\n")
    rc, out = sh(f"cc_delete_removed '{root}' '{tmp_path}/removed'")
    assert rc == 0, out
    assert not (root / "a/b").exists() and not (root / "gone").exists()
    assert (outside / "precious").read_text() == "keep me\n"
    assert "1 removed path(s) not deleted: a symlink on the way" in out


def test_a_removed_parent_keeps_the_persistent_path_in_it(tmp_path: Path) -> None:
    """The standard removes /opt/app; the node's persistent /opt/app/data stays, the rest of
    /opt/app goes. An unseeded persistent path (never complete on the node) goes with it."""
    root = tmp_path / "root"
    (root / "opt/app/data/sub").mkdir(parents=True)
    (root / "opt/app/data/sub/precious").write_text("node data\n")
    (root / "opt/app/bin").mkdir()
    (root / "opt/app/bin/tool").write_text("")
    (root / "opt/app/.hidden").write_text("")
    (root / "opt/other/cache").mkdir(parents=True)
    (root / "var/lib/clustcontrol-node").mkdir(parents=True)
    (root / "var/lib/clustcontrol-node/last-sync").write_text("CC_SYNC_SEEDED='/opt/app/data'\n")
    (tmp_path / "removed").write_text("opt/app\nopt/other\n")
    rc, out = sh(
        f"cc_delete_removed '{root}' '{tmp_path}/removed'",
        CC_PERSISTENT="/opt/app/data /opt/other/cache",
    )
    assert rc == 0, out
    assert (root / "opt/app/data/sub/precious").read_text() == "node data\n"
    assert sorted(p.name for p in (root / "opt/app").iterdir()) == ["data"]
    assert not (root / "opt/other").exists()  # /opt/other/cache was never seeded
    assert out.count("persistent /opt/app/data kept") == 1
