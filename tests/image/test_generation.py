"""Image generations: manifests, commit, status (uncommitted changes are never silent)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from clustcontrol.image import generation
from clustcontrol.image.commit import commit_image, commit_tree, image_status
from clustcontrol.image.generation import (
    GENERATION_FILE,
    Difference,
    GenerationStore,
    compare,
    deserialize,
    differing_entries,
    manifest_lines,
    scan,
    serialize,
)
from tests.conftest import Cli, inventory_data, make_inventory
from tests.image.conftest import IMAGE_ROOT


def test_scan_records_types_and_skips_excluded(prefix: Path) -> None:
    manifest = scan(prefix / IMAGE_ROOT)
    assert manifest["usr/bin/alias"].kind == "l" and manifest["usr/bin/alias"].digest == "tool"
    assert manifest["usr/bin/tool"].mode == 0o755 and len(manifest["usr/bin/tool"].digest) == 64
    assert manifest["usr/bin/tool-hardlink"].digest == manifest["usr/bin/tool"].digest
    assert "proc" in manifest and "proc/cpuinfo" not in manifest
    assert not any(p.startswith("etc/clustcontrol") for p in manifest)


def test_manifest_round_trip_with_awkward_names(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    (root / "tab\there").write_text("a")
    (root / "new\nline").write_text("b")
    (root / "back\\slash").write_text("c")
    os.close(os.open(os.fsencode(root) + b"/latin1-\xe9", os.O_CREAT | os.O_WRONLY, 0o644))
    manifest = scan(root)
    assert deserialize(serialize(manifest)) == manifest
    assert len(manifest) == 4


def test_differing_lines_give_the_whole_difference(prefix: Path) -> None:
    root = prefix / IMAGE_ROOT
    old = scan(root)
    (root / "usr/bin/tool").chmod(0o755)  # ctime only (and of tool-hardlink): not a change
    (root / "usr/bin/alias").unlink()
    (root / "usr/bin/alias").symlink_to("tool-hardlink")
    (root / "etc/motd").unlink()
    (root / "etc/new").write_text("new\n")
    new = scan(root, old)
    old_only, new_only = differing_entries(set(manifest_lines(old)), set(manifest_lines(new)))
    # Lines differ for a new ctime and for a directory's mtime, neither of them content.
    assert set(old_only) == {
        "etc",
        "etc/motd",
        "usr/bin",
        "usr/bin/alias",
        "usr/bin/tool",
        "usr/bin/tool-hardlink",
    }
    assert compare(old_only, new_only) == compare(old, new)
    # A directory's mtime is part of the generation: etc and usr/bin changed with their entries.
    assert compare(old, new) == Difference(
        ("etc/new",), ("etc/motd",), ("etc", "usr/bin", "usr/bin/alias")
    )


def test_commit_then_unchanged(prefix: Path) -> None:
    inv = make_inventory()
    first = commit_image(inv, "default", prefix)
    assert first.created and first.generation.startswith("1-") and first.previous is None
    store = GenerationStore.for_image(prefix, "default")
    gen_file = store.tree(first.generation) / GENERATION_FILE
    assert gen_file.read_text() == f"{first.generation}\n"
    assert not (prefix / IMAGE_ROOT / GENERATION_FILE).exists()  # the working tree is left alone
    stamp = gen_file.stat().st_mtime_ns
    again = commit_image(inv, "default", prefix)
    assert not again.created and again.generation == first.generation
    assert gen_file.stat().st_mtime_ns == stamp


def test_commit_rehashes_only_changed_files(prefix: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inv = make_inventory()
    first = commit_image(inv, "default", prefix)
    hashed: list[str] = []
    real = generation._sha256

    def counting(path: str, shown: str | None = None) -> str:
        hashed.append(shown or path)
        return real(path, shown)

    monkeypatch.setattr(generation, "_sha256", counting)
    motd = prefix / IMAGE_ROOT / "etc/motd"
    old = motd.stat()
    motd.write_text("HELLO\n")  # same size ...
    os.utime(motd, ns=(old.st_atime_ns, old.st_mtime_ns))  # ... and same mtime: ctime tells
    (prefix / IMAGE_ROOT / "etc/new").write_text("new\n")
    (prefix / IMAGE_ROOT / "usr/bin/alias").unlink()
    second = commit_image(inv, "default", prefix)
    assert second.created and second.generation.startswith("2-")
    assert second.previous == first.generation
    assert second.difference.changed == ("etc", "etc/motd", "usr/bin")
    assert second.difference.added == ("etc/new",)
    assert second.difference.removed == ("usr/bin/alias",)
    assert sorted(Path(p).name for p in hashed) == ["motd", "new"]


def test_status_warns_about_uncommitted_changes(prefix: Path) -> None:
    inv = make_inventory()
    never = image_status(inv, "default", prefix)
    assert never.committed is None and "no generation committed" in (never.warning or "")
    commit_image(inv, "default", prefix)
    clean = image_status(inv, "default", prefix)
    assert clean.warning is None and clean.uncommitted is not None and clean.uncommitted.empty
    (prefix / IMAGE_ROOT / "etc/edited-on-update-node").write_text("x\n")
    dirty = image_status(inv, "default", prefix)
    assert dirty.warning is not None and "UNCOMMITTED CHANGES" in dirty.warning
    assert dirty.uncommitted is not None and dirty.uncommitted.added == (
        "etc/edited-on-update-node",
    )
    # Same size, same mtime, new content: ctime gives it away without reading the file.
    motd = prefix / IMAGE_ROOT / "etc/motd"
    old = motd.stat()
    motd.write_text("HELLO\n")
    os.utime(motd, ns=(old.st_atime_ns, old.st_mtime_ns))
    sneaky = image_status(inv, "default", prefix)
    assert sneaky.uncommitted is not None and sneaky.uncommitted.changed == ("etc", "etc/motd")


def test_generation_store_layout(prefix: Path) -> None:
    result = commit_image(make_inventory(), "default", prefix)
    store = GenerationStore.for_image(prefix, "default")
    assert store.base == prefix / "var/lib/clustcontrol/images/default"
    assert store.current() == result.generation
    assert (store.base / "generations" / f"{result.generation}.manifest.gz").is_file()


def test_cli_commit_and_status(cli: Cli, prefix: Path) -> None:
    cli.config.write_text(json.dumps(inventory_data()))
    never = cli("status", "--root", prefix)
    assert never.code == 1 and "no generation committed" in never.err  # nodes cannot sync
    committed = cli("image", "commit", "default", "--root", prefix)
    assert committed.code == 0 and "generation 1-" in committed.out, committed.err
    assert (
        "unchanged since generation 1-" in cli("image", "commit", "default", "--root", prefix).out
    )
    assert cli("status", "--root", prefix).code == 0
    (prefix / IMAGE_ROOT / "etc/motd").write_text("changed and longer\n")
    dirty = cli("status", "--root", prefix, "--output", "json")
    assert dirty.code == 1
    assert "UNCOMMITTED CHANGES" in dirty.err
    assert json.loads(dirty.out)[0]["uncommitted"] == "0 added, 1 changed, 0 removed"


@pytest.mark.parametrize(
    "change",
    ["capability", "xattr", "acl", "owner", "directory mtime", "hard link", "mode"],
)
def test_a_change_of_metadata_alone_is_a_generation_and_status_agrees(
    prefix: Path, change: str
) -> None:
    """What defines a file on a node is all recorded: a change of any of it alone makes a new
    generation, `status` sees it before the commit, and is clean after."""
    inv = make_inventory()
    root = prefix / IMAGE_ROOT
    first = commit_image(inv, "default", prefix)
    tool = root / "usr/bin/tool"
    if change == "capability":
        if shutil.which("setcap") is None:
            pytest.skip("needs setcap (libcap2-bin)")
        subprocess.run(["setcap", "cap_net_raw+ep", str(tool)], check=True)
    elif change == "xattr":
        os.setxattr(tool, "user.cc.note", b"x")
    elif change == "acl":
        if shutil.which("setfacl") is None:
            pytest.skip("needs setfacl (acl)")
        subprocess.run(["setfacl", "-m", "u:1234:r", str(root / "etc/motd")], check=True)
    elif change == "owner":
        os.chown(root / "etc/motd", 1234, 1234)
    elif change == "directory mtime":
        os.utime(root / "etc", ns=(0, 10**9))
    elif change == "hard link":
        os.link(root / "etc/motd", root / "etc/motd-link")
        os.unlink(root / "etc/motd-link")  # back to one name: the link count moved, not content
        os.unlink(root / "usr/bin/tool-hardlink")
        (root / "usr/bin/tool-hardlink").write_bytes(tool.read_bytes())  # same bytes, own inode
        st = tool.stat()
        os.utime(root / "usr/bin/tool-hardlink", ns=(st.st_atime_ns, st.st_mtime_ns))
        os.utime(root / "usr/bin", ns=(0, (root / "usr/bin").stat().st_mtime_ns))
    elif change == "mode":
        (root / "etc/motd").chmod(0o600)
    dirty = image_status(inv, "default", prefix)
    assert dirty.uncommitted is not None and not dirty.uncommitted.empty, change
    second = commit_image(inv, "default", prefix)
    assert second.created and second.generation != first.generation, change
    clean = image_status(inv, "default", prefix)
    assert clean.warning is None and clean.uncommitted is not None and clean.uncommitted.empty
    assert not commit_image(inv, "default", prefix).created


def test_the_tree_is_what_the_manifest_says(prefix: Path) -> None:
    """The generation's tree, scanned again, gives its manifest: owners, modes, times, xattrs,
    hard links and sparse files as recorded (the commit wrote what it recorded)."""
    inv = make_inventory()
    root = prefix / IMAGE_ROOT
    with (root / "var-sparse").open("wb") as f:
        f.truncate(64 << 20)
        f.seek(32 << 20)
        f.write(b"data")
    os.setxattr(root / "etc/motd", "user.cc.note", b"\x00\xff")
    os.chown(root / "etc/motd", 4321, 0)
    result = commit_image(inv, "default", prefix)
    store = GenerationStore.for_image(prefix, "default")
    tree = store.tree(result.generation)
    recorded = store.manifest(result.generation)
    rescanned = scan(tree)
    assert {k: v.content() for k, v in rescanned.items()} == {
        k: v.content() for k, v in recorded.items()
    }
    assert (tree / "var-sparse").stat().st_blocks * 512 < 1 << 20  # holes stay holes
    assert os.getxattr(tree / "etc/motd", "user.cc.note") == b"\x00\xff"


def test_sockets_are_no_part_of_a_generation(prefix: Path) -> None:
    """A socket in the working tree (left by a daemon of the update node) is neither in the
    manifest nor in the tree, and status does not report it."""
    inv = make_inventory()
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(prefix / IMAGE_ROOT / "etc/daemon.sock"))
    try:
        result = commit_image(inv, "default", prefix)
        store = GenerationStore.for_image(prefix, "default")
        assert "etc/daemon.sock" not in store.manifest(result.generation)
        assert not (store.tree(result.generation) / "etc/daemon.sock").exists()
        status = image_status(inv, "default", prefix)
        assert status.uncommitted is not None and status.uncommitted.empty
    finally:
        listener.close()


def test_a_working_tree_reached_through_a_symlink_keeps_its_root_s_metadata(
    prefix: Path, tmp_path: Path
) -> None:
    """The tree's root gets the working tree's mode, not the link's (regression: every node's
    root became 0700, the mode the tree is made with, when images.NAME.root was a symlink)."""
    real = prefix / IMAGE_ROOT
    real.chmod(0o755)
    os.utime(real, ns=(1_000_000_000, 1_700_000_000_123_456_789))
    link = tmp_path / "linked-root"
    link.symlink_to(real)
    store = GenerationStore(tmp_path / "store")
    result = commit_tree("default", link, store, control_dir="/etc/clustcontrol", keep=3)
    st = store.tree(result.generation).stat()
    assert (st.st_mode & 0o7777, st.st_mtime_ns) == (0o755, 1_700_000_000_123_456_789)
