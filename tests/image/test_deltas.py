"""Generation deltas: what `image commit` tells nodes at an older generation to re-sync."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from bench import nodeside

from clustcontrol import fsutil
from clustcontrol.contract import DENSE_LIST, SECRETS_LIST
from clustcontrol.image.commit import CommitResult, commit_image, image_status
from clustcontrol.image.deltas import Delta
from clustcontrol.image.generation import (
    DELTAS_DIR,
    GENERATION_FILE,
    GenerationStore,
    InodeGroups,
    scan,
)
from tests.conftest import Cli, inventory_data, make_inventory
from tests.image.conftest import IMAGE_ROOT, have
from tests.node.conftest import BUSYBOX

WRITERS = ("clustcontrol.image.commit", "clustcontrol.image.deltas")  # atomic_write's callers
# What the node engine never copies: the deltas, the pseudo file systems' contents, the master's
# control directory; and what it writes: its state and log (under var, which this standard
# lacks).
NOT_ON_NODES = (DELTAS_DIR, SECRETS_LIST, DENSE_LIST, "proc/cpuinfo", "etc/clustcontrol", "var")


def node_sync(standard: Path, node: Path, tmp_path: Path) -> nodeside.SyncResult:
    """One boot's sync of node from standard by the node engine, the standard as if mounted."""
    bbdir = nodeside.busybox_bin(tmp_path / "busybox-bin")
    return nodeside.node_sync(standard, node, run_dir=tmp_path / "node.run", bbdir=bbdir)


def commit(prefix: Path, **kwargs: int) -> CommitResult:
    return commit_image(make_inventory(), "default", prefix, **kwargs)


def current_tree(prefix: Path) -> Path:
    """The tree of the current generation: what nodes sync from."""
    store = GenerationStore.for_image(prefix, "default")
    return store.tree(store.current() or "none")


def deltas_dir(prefix: Path) -> Path:
    return current_tree(prefix) / DELTAS_DIR


def delta_names(prefix: Path) -> list[str]:
    """The deltas in the current tree (FROM), without the batches beside them (FROM.batch ...)."""
    return sorted(n for n in os.listdir(deltas_dir(prefix)) if "." not in n)


def delta_lines(prefix: Path, source: str) -> list[str]:
    data = (deltas_dir(prefix) / source).read_bytes()
    assert data.endswith(b"\n") and b"\r" not in data
    return data.decode("utf-8").split("\n")[:-1]


def listed(prefix: Path, source: str, target: str) -> list[str]:
    """The paths of the delta from source, those to delete marked "-", after checking its
    first, separator and last line."""
    lines = delta_lines(prefix, source)
    assert lines[0] == f"# clustcontrol-delta 1 {source} {target}"
    assert lines[-1] == "# end" and lines.count("# removed") == 1
    split = lines.index("# removed")
    return lines[1:split] + [f"-{path}" for path in lines[split + 1 : -1]]


def test_delta_lists_added_changed_and_topmost_removed_paths(prefix: Path) -> None:
    root = prefix / IMAGE_ROOT
    (root / "opt/old/sub").mkdir(parents=True)
    (root / "opt/old/sub/data").write_text("gone\n")
    (root / "opt/was-dir").mkdir()
    (root / "opt/was-dir/inner").write_text("gone\n")
    (root / "opt/was-file").write_text("file\n")
    first = commit(prefix)
    assert first.deltas == ()
    (root / "etc/motd").write_text("changed\n")
    (root / "etc/new").write_text("new\n")
    (root / "usr/bin/alias").unlink()
    (root / "usr/bin").chmod(0o700)
    shutil.rmtree(root / "opt/old")
    shutil.rmtree(root / "opt/was-dir")
    (root / "opt/was-dir").write_text("now a file\n")
    (root / "opt/was-file").unlink()
    (root / "opt/was-file").mkdir()
    (root / "opt/was-file/child").write_text("x\n")
    second = commit(prefix)
    # Not listed: opt/old/sub and opt/old/sub/data (go with opt/old), opt/was-dir/inner (goes
    # when opt/was-dir becomes a file), the unchanged hard-linked usr/bin/tool. Listed: the
    # directories whose entries changed (their mtime is part of the generation).
    assert listed(prefix, first.generation, second.generation) == [
        "etc",
        "etc/motd",
        "etc/new",
        "opt",
        "opt/was-dir",
        "opt/was-file",
        "opt/was-file/child",
        "usr/bin",
        "-opt/old",
        "-usr/bin/alias",
    ]
    assert second.deltas == (Delta(first.generation, 10),)
    assert delta_names(prefix) == [first.generation]


def test_hard_link_partners_are_listed(prefix: Path) -> None:
    root = prefix / IMAGE_ROOT
    first = commit(prefix)
    os.link(root / "usr/bin/tool", root / "usr/bin/tool-third")
    second = commit(prefix)
    assert listed(prefix, first.generation, second.generation) == [
        "usr/bin",
        "usr/bin/tool",
        "usr/bin/tool-hardlink",
        "usr/bin/tool-third",
    ]
    (root / "etc/motd").write_text("changed\n")
    third = commit(prefix)
    assert listed(prefix, second.generation, third.generation) == ["etc/motd"]


def test_scan_collects_inode_groups(prefix: Path) -> None:
    links: InodeGroups = {}
    manifest = scan(prefix / IMAGE_ROOT, links=links)
    assert manifest == scan(prefix / IMAGE_ROOT)
    assert sorted(sorted(group) for group in links.values()) == [
        ["usr/bin/tool", "usr/bin/tool-hardlink"]
    ]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (b"etc/new\nline", "line break"),
        (b"etc/carriage\rreturn", "line break"),
        (b"#top-level", "comment"),
        (b";top-level", "comment"),
        (b"etc/latin1-\xe9", "not valid UTF-8"),
    ],
)
def test_unlistable_path_means_no_delta(prefix: Path, name: bytes, reason: str) -> None:
    root = prefix / IMAGE_ROOT
    first = commit(prefix)
    odd = os.fsencode(root) + b"/" + name
    os.close(os.open(odd, os.O_CREAT | os.O_WRONLY, 0o644))
    second = commit(prefix)
    (skipped,) = second.deltas
    assert skipped.source == first.generation and reason in (skipped.skipped or "")
    assert not deltas_dir(prefix).exists()
    # Gone again: listable from the first generation (it never had it; its directory's mtime
    # moved), not from the second.
    os.unlink(odd)
    third = commit(prefix)
    assert [d.source for d in third.deltas if d.skipped is None] == [first.generation]
    parent = ["etc"] if name.startswith(b"etc/") else []  # the image root has no entry
    assert listed(prefix, first.generation, third.generation) == parent
    assert delta_names(prefix) == [first.generation]


@pytest.mark.parametrize("damage", [b"not gzip", gzip.compress(b"one\tfield too few\n")])
def test_unreadable_old_manifest_means_no_delta(prefix: Path, damage: bytes) -> None:
    motd = prefix / IMAGE_ROOT / "etc/motd"
    first = commit(prefix)
    motd.write_text("second\n")
    second = commit(prefix)
    store = GenerationStore.for_image(prefix, "default")
    (store.base / "generations" / f"{first.generation}.manifest.gz").write_bytes(damage)
    motd.write_text("third\n")
    third = commit(prefix)
    assert third.deltas[1] == Delta(second.generation, 1)
    assert third.deltas[0].source == first.generation
    assert "manifest is unreadable" in (third.deltas[0].skipped or "")
    assert delta_names(prefix) == [second.generation]
    assert (current_tree(prefix) / GENERATION_FILE).read_text() == f"{third.generation}\n"


def test_deltas_from_the_last_k_generations_only(prefix: Path) -> None:
    motd = prefix / IMAGE_ROOT / "etc/motd"
    generations = []
    for number in range(11):
        motd.write_text(f"edit {number}\n")
        generations.append(commit(prefix).generation)
    latest = generations[-1]
    assert delta_names(prefix) == sorted(generations[2:10])
    for source in generations[2:10]:
        assert listed(prefix, source, latest) == ["etc/motd"]
    motd.write_text("edit 11\n")
    newest = commit(prefix, deltas=2)
    assert [d.source for d in newest.deltas] == [generations[-2], latest]
    assert delta_names(prefix) == sorted([latest, generations[-2]])


def test_each_tree_has_the_deltas_to_it_only(prefix: Path) -> None:
    """A generation's tree holds the deltas from the last K generations to it, nothing else:
    a file left in an older tree's delta directory does not travel on."""
    first = commit(prefix)
    (prefix / IMAGE_ROOT / "etc/motd").write_text("changed\n")
    second = commit(prefix)
    (deltas_dir(prefix) / "leftover").write_text("# clustcontrol-delta 1 0-x 1-y\n# end\n")
    (prefix / IMAGE_ROOT / "etc/new").write_text("new\n")
    third = commit(prefix, deltas=1)
    assert delta_names(prefix) == [second.generation]
    assert listed(prefix, second.generation, third.generation) == ["etc", "etc/new"]
    assert first.generation not in delta_names(prefix)


def test_current_is_written_last(prefix: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """roots/current names the new generation only once its tree is complete and in place:
    deltas, then the generation file, then current (nodes never see a tree being built)."""
    first = commit(prefix)
    (prefix / IMAGE_ROOT / "etc/motd").write_text("changed\n")
    second = commit(prefix)
    (prefix / IMAGE_ROOT / "etc/motd").write_text("changed again\n")
    store = GenerationStore.for_image(prefix, "default")
    writes: list[tuple[str, bool]] = []

    def recording(path: Path, data: bytes, mode: int | None = None) -> None:
        if path.parent == store.roots:  # current: the new tree must be complete
            new = store.tree(data.decode().strip())
            writes.append((path.name, (new / GENERATION_FILE).is_file()))
        else:
            writes.append((path.name, False))
        fsutil.atomic_write(path, data, mode)

    for module in (*WRITERS, "clustcontrol.image.generation"):
        monkeypatch.setattr(f"{module}.atomic_write", recording)
    third = commit(prefix)
    names = [name for name, _ in writes]
    assert names == [
        f"{third.generation}.manifest.gz",
        first.generation,
        second.generation,
        Path(GENERATION_FILE).name,
        "current",
    ]
    assert writes[-1] == ("current", True)
    assert delta_names(prefix) == sorted([first.generation, second.generation])


def test_unchanged_commit_writes_nothing(prefix: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = commit(prefix)
    (prefix / IMAGE_ROOT / "etc/motd").write_text("changed\n")
    second = commit(prefix)

    def refuse(path: Path, data: bytes, mode: int | None = None) -> None:
        raise AssertionError(f"unchanged commit wrote {path}")

    with monkeypatch.context() as patch:
        for module in (*WRITERS, "clustcontrol.image.generation"):
            patch.setattr(f"{module}.atomic_write", refuse)
        again = commit(prefix)
    assert not again.created and again.deltas == ()
    # Content unchanged but the current tree lost: a new generation of the same content.
    shutil.rmtree(current_tree(prefix))
    repaired = commit(prefix)
    assert repaired.created and repaired.generation.startswith("3-")
    assert repaired.generation.split("-")[1] == second.generation.split("-")[1]
    assert [d.source for d in repaired.deltas] == [first.generation, second.generation]
    assert listed(prefix, second.generation, repaired.generation) == []


def test_deltas_are_not_content(prefix: Path) -> None:
    commit(prefix)
    (prefix / IMAGE_ROOT / "etc/motd").write_text("changed\n")
    commit(prefix)
    (deltas_dir(prefix) / "someone-elses-file").write_text("x\n")
    assert not any(path.startswith(DELTAS_DIR) for path in scan(prefix / IMAGE_ROOT))
    status = image_status(make_inventory(), "default", prefix)
    assert status.warning is None and status.uncommitted is not None
    assert status.uncommitted.empty


def test_cli_reports_deltas(cli: Cli, prefix: Path) -> None:
    cli.config.write_text(json.dumps(inventory_data()))
    assert "deltas" not in cli("image", "commit", "default", "--root", prefix).out
    (prefix / IMAGE_ROOT / "etc/motd").write_text("changed\n")
    second = cli("image", "commit", "default", "--root", prefix)
    assert second.code == 0 and "deltas: from 1 earlier generation(s)" in second.out, second.err
    (prefix / IMAGE_ROOT / "etc/[odd]\nname").write_text("x\n")
    third = cli("image", "commit", "default", "--root", prefix)
    assert "deltas: from 0 earlier generation(s)" in third.out
    for source in ("1-", "2-"):
        assert f"no delta from {source}" in third.out
    assert "'etc/[odd]\\nname' contains a line break" in third.out


def tree_state(top: Path, skip: tuple[str, ...]) -> dict[str, tuple[object, ...]]:
    """Every path under top: kind, mode, and the size, mtime and content of a file or the target
    of a symlink; plus, under the key "hard links", the groups of names sharing an inode."""
    state: dict[str, tuple[object, ...]] = {}
    inodes: dict[int, list[str]] = {}
    for dirpath, dirs, names in os.walk(top):
        for name in (*dirs, *names):
            path = Path(dirpath, name)
            rel = str(path.relative_to(top))
            if rel in skip or rel.startswith(tuple(f"{s}/" for s in skip)):
                continue
            st = path.lstat()
            detail: tuple[object, ...] = ()
            if stat.S_ISREG(st.st_mode):
                detail = (st.st_size, st.st_mtime_ns, path.read_bytes())
                if st.st_nlink > 1:
                    inodes.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                detail = (os.readlink(path),)
            state[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), *detail)
    state["hard links"] = tuple(sorted(tuple(sorted(group)) for group in inodes.values()))
    return state


@pytest.mark.skipif(
    not (have("rsync") and Path(BUSYBOX).exists()), reason="needs rsync and busybox"
)
def test_node_engine_brings_a_node_to_the_new_generation(prefix: Path, tmp_path: Path) -> None:
    """The master's delta read by the real node engine (busybox sh, the standard as its NFS
    mount): after the first copy and one commit, the node syncs the delta and equals the
    standard again."""
    root = prefix / IMAGE_ROOT
    (root / "opt/old/sub").mkdir(parents=True)
    (root / "opt/old/sub/data").write_text("gone\n")
    (root / "opt/was-file").write_text("file\n")
    (root / "opt/was-dir").mkdir()
    (root / "opt/was-dir/inner").write_text("gone\n")
    (root / "opt/link").symlink_to("was-file")
    (root / "opt/merged").mkdir()
    (root / "opt/merged/lib.so").write_text("so\n")
    (root / "opt/pair-a").write_text("unchanged pair\n")
    os.link(root / "opt/pair-a", root / "opt/pair-b")
    first = commit(prefix)
    node = tmp_path / "node"
    result = node_sync(current_tree(prefix), node, tmp_path)  # a blank root: the first copy
    assert result.rc == 0 and "(normal, tar)" in result.output, result.output

    with (root / "usr/bin/tool").open("ab") as tool:  # in place: both names change
        tool.write(b"patched")
    os.link(root / "usr/bin/tool", root / "usr/bin/tool-new")  # a new name for a changed file
    os.link(root / "opt/pair-a", root / "opt/pair-c")  # and for an unchanged one
    shutil.rmtree(root / "opt/old")
    (root / "opt/was-file").unlink()
    (root / "opt/was-file").mkdir()
    (root / "opt/was-file/child").write_text("x\n")
    shutil.rmtree(root / "opt/was-dir")
    (root / "opt/was-dir").write_text("now a file\n")
    (root / "opt/link").unlink()
    (root / "opt/link").symlink_to("was-dir")
    shutil.rmtree(root / "opt/merged")  # a directory replaced by a symlink (merged /usr)
    (root / "opt/usr-merged").mkdir()
    (root / "opt/usr-merged/lib.so").write_text("so\n")
    (root / "opt/merged").symlink_to("usr-merged")
    (root / "etc").chmod(0o750)
    (root / "etc/motd").write_text("new motd\n")
    (root / "etc/new").write_text("new\n")
    (root / "usr/bin/alias").unlink()
    second = commit(prefix)
    assert listed(prefix, first.generation, second.generation) == [
        "etc",
        "etc/motd",
        "etc/new",
        "opt",
        "opt/link",
        "opt/merged",
        "opt/pair-a",
        "opt/pair-b",
        "opt/pair-c",
        "opt/usr-merged",
        "opt/usr-merged/lib.so",
        "opt/was-dir",
        "opt/was-file",
        "opt/was-file/child",
        "usr/bin",
        "usr/bin/tool",
        "usr/bin/tool-hardlink",
        "usr/bin/tool-new",
        "-opt/old",
        "-usr/bin/alias",
    ]
    result = node_sync(current_tree(prefix), node, tmp_path)
    assert result.rc == 0 and "(normal, delta)" in result.output, result.output
    # The node has no deltas, nor the files the engine keeps as the node's own.
    assert tree_state(node, NOT_ON_NODES) == tree_state(current_tree(prefix), NOT_ON_NODES)
    assert tree_state(node, NOT_ON_NODES)["hard links"] == (
        ("opt/pair-a", "opt/pair-b", "opt/pair-c"),
        ("usr/bin/tool", "usr/bin/tool-hardlink", "usr/bin/tool-new"),
    )


def test_writing_batches_leaves_the_earlier_tree_as_it_was(prefix: Path) -> None:
    """rsync --only-write-batch runs against the earlier generation's tree, which must never
    change: not by a directory that became a file (--force), not by anything else."""
    root = prefix / IMAGE_ROOT
    (root / "opt/was-dir").mkdir(parents=True)
    (root / "opt/was-dir/inner").write_text("inner\n")
    first = commit(prefix)
    store = GenerationStore.for_image(prefix, "default")
    before = tree_state(store.tree(first.generation), ())
    shutil.rmtree(root / "opt/was-dir")
    (root / "opt/was-dir").write_text("now a file\n")
    (root / "etc/motd").write_text("changed\n")
    second = commit(prefix)
    assert second.batches == (first.generation,)
    assert tree_state(store.tree(first.generation), ()) == before
    listed_paths = (deltas_dir(prefix) / f"{first.generation}.list").read_text().split("\n")
    assert listed_paths[-2:] == [GENERATION_FILE, ""]
    assert "opt/was-dir" in listed_paths
