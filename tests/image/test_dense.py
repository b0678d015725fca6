"""image/dense.py and the commit's list of dense files: what FIEMAP says against filefrag(8),
the zero blocks against a plain reading, and the list of a real commit against what the test
knows of the files it made (filefrag on the working tree, the content read block by block)."""

from __future__ import annotations

import itertools
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clustcontrol.contract import CONTROL_DIR, DENSE_LIST
from clustcontrol.image import dense
from clustcontrol.image.commit import commit_tree
from clustcontrol.image.generation import GenerationStore
from tests.holes import filefrag_holes, have_filefrag

pytestmark = pytest.mark.skipif(
    not (have_filefrag() and shutil.which("fallocate")), reason="needs filefrag and fallocate"
)

# Lengths around the block sizes a list records.
LENGTHS = (1, 100, 1023, 1024, 1025, 2047, 2048, 2049, 3000, 4095, 4096, 4097, 8192, 9000)
SEGMENTS = st.lists(st.tuples(st.booleans(), st.sampled_from(LENGTHS)), max_size=8)
# How a file is made: written whole, sparse (holes where nothing is written), preallocated
# (fallocate(1), then written in part: unwritten extents read as zeros), or written and then
# given a hole (fallocate --punch-hole).
HOW = st.sampled_from(["written", "sparse", "fallocated", "punched"])


def content_of(segments: list[tuple[bool, int]], seed: int) -> bytes:
    """Data segments (bytes 1-255: never a zero) and zero runs, in order."""
    rng = random.Random(seed)
    return b"".join(
        bytes(rng.randrange(1, 256) for _ in range(n)) if data else bytes(n) for data, n in segments
    )


def reference_tag(data: bytes) -> int:
    """The largest of 4096, 2048, 1024 such that data has an all-zero block of that size at a
    multiple of it (the last block cut at the end), else 0: read block by block."""
    for size in (4096, 2048, 1024):
        blocks = (data[i : i + size] for i in range(0, len(data), size))
        if any(block and not any(block) for block in blocks):
            return size
    return 0


def make_file(path: Path, data: bytes, how: str) -> None:
    """Write data at path the way `how` says; the content is `data` in every case."""
    if how == "written":
        path.write_bytes(data)
        return
    path.unlink(missing_ok=True)
    if how == "fallocated" and data:
        subprocess.run(["fallocate", "-l", str(len(data)), str(path)], check=True)
    with open(path, "r+b" if path.exists() else "wb") as f:
        if how == "punched":
            f.write(data)
        else:  # sparse, fallocated: only the non-zero bytes are written
            for offset in range(0, len(data), 512):
                piece = data[offset : offset + 512]
                if any(piece):
                    f.seek(offset)
                    f.write(piece)
        f.truncate(len(data))
    if how == "punched" and len(data) > 8192:
        start = 4096 * (len(data) // 8192)
        zeroed = data[:start] + bytes(4096) + data[start + 4096 :]
        subprocess.run(
            ["fallocate", "--punch-hole", "-o", str(start), "-l", "4096", str(path)], check=True
        )
        assert path.read_bytes() == zeroed[: len(data)]


def test_fully_allocated_agrees_with_filefrag(tmp_path: Path) -> None:
    """FIEMAP read by dense.fully_allocated, and filefrag's extents, on every way to make a file."""
    made = 0
    for n, (how, segments) in enumerate(
        itertools.product(
            ("written", "sparse", "fallocated", "punched"),
            ([], [(False, 4096)], [(True, 100)], [(True, 5000), (False, 9000), (True, 10)]),
        )
    ):
        path = tmp_path / f"f{n}"
        make_file(path, content_of(segments, n), how)
        fd = os.open(path, os.O_RDONLY)
        try:
            assert dense.fully_allocated(fd, os.fstat(fd).st_size) == (not filefrag_holes(path))
        finally:
            os.close(fd)
        made += 1
    assert made == 16


@given(segments=SEGMENTS, seed=st.integers(0, 99), cuts=st.lists(st.integers(1, 4), max_size=4))
def test_zero_block_reads_chunks_as_the_whole(
    segments: list[tuple[bool, int]], seed: int, cuts: list[int]
) -> None:
    """zero_block over chunks that start at multiples of 4096 (any number of them) says what
    reading the whole content block by block says."""
    data = content_of(segments, seed)
    found = offset = 0
    for size in (*(4096 * c for c in cuts), len(data)):
        chunk = data[offset : offset + size]
        if chunk:
            found = dense.zero_block(chunk, offset, len(data), found)
        offset += len(chunk)
    assert found == reference_tag(data)


def test_the_list_reads_back_and_rejects_what_is_not_one(tmp_path: Path) -> None:
    tags = {"swapfile": 4096, "a b/c d": 1024, "usr/bin/x": 2048}
    dense.write_list(tmp_path / "l", "3-abc", tags)
    assert (tmp_path / "l").read_text().splitlines() == [
        "# clustcontrol-dense 1 3-abc", "1024 a b/c d", "4096 swapfile", "2048 usr/bin/x", "# end"
    ]  # fmt: skip
    assert dense.read_list(tmp_path / "l") == tags
    assert dense.read_list(tmp_path / "missing") is None
    for broken in (
        "# clustcontrol-dense 1 3-abc\n4096 swapfile\n",  # truncated
        "# clustcontrol-dense 1 3-abc\n512 swapfile\n# end\n",  # not a recorded size
        "# clustcontrol-dense 1 3-abc\n4096\n# end\n",  # no path
        "# clustcontrol-secrets 1 3-abc\n# end\n",
    ):
        (tmp_path / "l").write_text(broken)
        assert dense.read_list(tmp_path / "l") is None, broken


FILES = st.lists(st.tuples(HOW, SEGMENTS, st.booleans()), min_size=1, max_size=6)


def commit(work: Path, store: Path) -> tuple[Path, dict[str, int]]:
    result = commit_tree("t", work, GenerationStore(store), control_dir=CONTROL_DIR, keep=3)
    tree = GenerationStore(store).tree(result.generation)
    tags = dense.read_list(tree / DENSE_LIST)
    assert tags is not None
    assert result.dense == len(tags)
    return tree, tags


def expected(work: Path, names: list[str]) -> dict[str, int]:
    """What the list must hold, known without image/dense.py: the files filefrag shows without
    holes in the working tree whose content has an aligned zero block."""
    want = {}
    for rel in names:
        tag = reference_tag((work / rel).read_bytes())
        if tag and not filefrag_holes(work / rel):
            want[rel] = tag
    return want


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(files=FILES, seed=st.integers(0, 99), rewrite=st.integers(0, 5))
def test_the_commit_lists_the_dense_files_with_zero_blocks(
    tmp_path_factory: pytest.TempPathFactory,
    files: list[tuple[str, list[tuple[bool, int]], bool]],
    seed: int,
    rewrite: int,
) -> None:
    """Random files made every way (written, sparse, preallocated, punched), some with a second
    name: the commit lists exactly the dense ones with a zero block, with the largest such
    block; their copies in the generation have no holes either. A second commit after one file
    changed lists the same way (the unchanged files linked, their entries carried over)."""
    base = tmp_path_factory.mktemp("dense")
    work, store = base / "work", base / "store"
    (work / "etc").mkdir(parents=True)
    names = []
    for n, (how, segments, linked) in enumerate(files):
        rel = f"f{n}"
        make_file(work / rel, content_of(segments, seed + n), how)
        names.append(rel)
        if linked:
            os.link(work / rel, work / f"etc/link{n}")
            names.append(f"etc/link{n}")
    tree, tags = commit(work, store)
    assert tags == expected(work, names)
    for rel in tags:
        assert (tree / rel).read_bytes() == (work / rel).read_bytes()
        assert not filefrag_holes(tree / rel), f"{rel}: holes in the generation"
    # One file made again (another way, maybe): the rest is linked to the first tree.
    n = rewrite % len(files)
    how, segments, _linked = files[(n + 1) % len(files)]
    make_file(work / f"f{n}", content_of(segments, seed + 50), how)
    tree, tags = commit(work, store)
    assert tags == expected(work, names)
    for rel in tags:
        assert not filefrag_holes(tree / rel), f"{rel}: holes in the second generation"


def test_a_dense_file_the_list_cannot_hold_is_named(tmp_path: Path) -> None:
    """A name an rsync --files-from list cannot hold (a leading #, a line break) is left out of
    the list and named in the result."""
    work = tmp_path / "work"
    (work / "etc").mkdir(parents=True)
    for name in ("#swap", "swap\nfile", "swap"):
        (work / name).write_bytes(bytes(8192))
    result = commit_tree(
        "t", work, GenerationStore(tmp_path / "store"), control_dir=CONTROL_DIR, keep=3
    )
    tree = GenerationStore(tmp_path / "store").tree(result.generation)
    assert dense.read_list(tree / DENSE_LIST) == {"swap": 4096}
    assert result.dense_unlisted == ("#swap", "swap\nfile")


def test_a_tree_of_an_earlier_version_is_read_and_not_linked_when_sparse(tmp_path: Path) -> None:
    """The previous generation has no list (an earlier version committed it) and its copy of a
    swap file made with fallocate has holes (its copy skipped unwritten extents): the next
    commit reads the working tree's files to list them, and copies the swap file in full
    instead of linking the copy with holes."""
    work, store = tmp_path / "work", tmp_path / "store"
    (work / "etc").mkdir(parents=True)
    make_file(work / "swapfile", bytes(4096) + b"SWAPSPACE2" + bytes(30000), "fallocated")
    (work / "dd-swap").write_bytes(bytes(16384))
    (work / "motd").write_text("one\n")
    first = commit_tree("t", work, GenerationStore(store), control_dir=CONTROL_DIR, keep=3)
    old = GenerationStore(store).tree(first.generation)
    (old / DENSE_LIST).unlink()
    holed = old / "swapfile.holed"
    subprocess.run(["cp", "-a", "--sparse=always", str(old / "swapfile"), str(holed)], check=True)
    holed.rename(old / "swapfile")
    assert filefrag_holes(old / "swapfile")
    (work / "motd").write_text("two\n")
    second = commit_tree("t", work, GenerationStore(store), control_dir=CONTROL_DIR, keep=3)
    new = GenerationStore(store).tree(second.generation)
    assert dense.read_list(new / DENSE_LIST) == {"dd-swap": 4096, "swapfile": 4096}
    assert second.tree is not None and second.tree.copied == 2  # motd, swapfile
    assert not filefrag_holes(new / "swapfile")
    assert os.stat(new / "dd-swap").st_ino == os.stat(old / "dd-swap").st_ino
