"""Holes in a file as filefrag(8) (e2fsprogs) reports its extents: a second opinion, in another
program, on what image/dense.py's FIEMAP reading says, for the tests."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

_SIZE = re.compile(r"^File size of .* is (\d+) \((\d+) blocks? of (\d+) bytes\)$", re.MULTILINE)
_EXTENT = re.compile(r"^\s*\d+:\s*(\d+)\.\.\s*(\d+):", re.MULTILINE)


def have_filefrag() -> bool:
    """Whether filefrag(8) is installed."""
    return shutil.which("filefrag") is not None


def filefrag_holes(path: Path) -> bool:
    """Whether the regular file at `path` has a hole: a block of its size that no extent of
    `filefrag -v` covers (written, unwritten and delayed-allocation extents all count). Raises
    subprocess.CalledProcessError when filefrag fails, AssertionError when its output does not
    parse."""
    out = subprocess.run(
        ["filefrag", "-v", str(path)], capture_output=True, text=True, check=True
    ).stdout
    size = _SIZE.search(out)
    assert size is not None, out
    blocks = -(-int(size.group(1)) // int(size.group(3)))
    covered = 0
    for first, last in sorted((int(a), int(b)) for a, b in _EXTENT.findall(out)):
        if first > covered:
            return True
        covered = max(covered, last + 1)
    return covered < blocks
