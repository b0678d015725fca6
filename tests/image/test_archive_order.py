"""The order of the archives a node extracts over its root (the attribute archive, the secrets
archive): GNU tar sets a directory's times once it reaches an entry outside it, so every
directory must come before what it contains and all it contains before anything else, or a
file extracted later moves the directory's mtime on the node (the oracle found "d.96" sorted
between "d" and "d/f")."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clustcontrol.image.commit import xattrs_archive_names
from clustcontrol.image.common import extraction_order, write_entries_archive
from clustcontrol.image.generation import scan
from clustcontrol.image.secrets import archive_names

# Names whose string order differs from their order by components: "." and "-" sort before "/".
NAME = st.sampled_from(["d", "d.96", "d-x", "d0", "e", ".h", "a b"])
PATH = st.lists(NAME, min_size=1, max_size=4).map("/".join)
OLD = 10**18  # every directory's mtime in the tree, 2001-09-09


def contiguous(order: list[str]) -> list[str]:
    """The directories of `order` with an entry outside them between them and an entry inside."""
    wrong = []
    for i, d in enumerate(order):
        inside = [j for j, rel in enumerate(order) if d == "." or rel.startswith(d + "/")]
        if inside and any(
            not (d == "." or order[j].startswith(d + "/")) for j in range(i + 1, max(inside))
        ):
            wrong.append(d)
        if any(j < i for j in inside):
            wrong.append(d)
    return wrong


@given(st.sets(PATH, max_size=12))
def test_extraction_order_keeps_each_directory_together(paths: set[str]) -> None:
    names = set(paths) | {"."}
    for p in paths:
        parts = p.split("/")
        names |= {"/".join(parts[:i]) for i in range(1, len(parts))}
    order = extraction_order(names)
    assert sorted(order) == sorted(names)
    assert contiguous(order) == []


@given(st.sets(PATH, min_size=1, max_size=8))
def test_the_secrets_archive_order_keeps_each_directory_together(paths: set[str]) -> None:
    files = {p for p in paths if not any(q.startswith(p + "/") for q in paths)}
    order = archive_names(files)
    assert order[0] == "."
    assert contiguous(order) == []


def build(root: Path, files: set[str]) -> None:
    """Files (each with a user.* attribute) and their directories, every mtime OLD."""
    for rel in sorted(files):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rel.encode())
        os.setxattr(path, "user.cc", b"1")
    for d in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        os.utime(d, ns=(OLD, OLD))


@pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar")
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.sets(PATH, min_size=1, max_size=8), st.sets(NAME, max_size=2))
def test_extracting_the_attribute_archive_keeps_directory_times(
    tmp_path_factory: pytest.TempPathFactory, paths: set[str], owned_names: set[str]
) -> None:
    """The property the order exists for, with the real GNU tar: extracting the attribute
    archive (the names a node owns last) over a copy of the tree, as cc_extract_xattrs does,
    leaves every directory's mtime as the generation has it."""
    files = {p for p in paths if not any(q.startswith(p + "/") for q in paths)}
    base = tmp_path_factory.mktemp("order")
    tree, node, archive = base / "tree", base / "node", base / "xattrs.tar"
    tree.mkdir()
    build(tree, files)
    subprocess.run(["cp", "-a", f"{tree}/.", str(node)], check=True)
    manifest = scan(tree)
    names = xattrs_archive_names(manifest, lambda rel: rel.split("/")[-1] in owned_names)
    write_entries_archive(tree, names, archive)
    subprocess.run(
        ["tar", "-C", str(node), "--extract", f"--file={archive}", "--numeric-owner",
         "--preserve-permissions", "--xattrs", "--xattrs-include=*", "--acls"],
        check=True,
    )  # fmt: skip
    moved = {
        rel: os.lstat(node / rel).st_mtime_ns
        for rel, entry in manifest.items()
        if entry.kind == "d" and os.lstat(node / rel).st_mtime_ns != OLD
    }
    if os.lstat(node).st_mtime_ns != OLD:
        moved["."] = os.lstat(node).st_mtime_ns
    assert moved == {}, f"archive order {names}"
