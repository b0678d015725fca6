"""Linters run as tests: ruff, mypy --strict, shellcheck -s sh on every node-side script."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)


def shell_scripts() -> list[Path]:
    """Every shipped file that starts with a sh shebang (node scripts, helper scripts)."""
    found = []
    for base in (REPO / "src/clustcontrol/node", REPO / "scripts"):
        for path in sorted(base.rglob("*")):
            if (
                path.is_file()
                and path.read_bytes()[:2] == b"#!"
                and b"sh" in path.read_bytes().split(b"\n")[0]
            ):
                found.append(path)
    return found


def test_ruff_check() -> None:
    result = run([str(BIN / "ruff"), "check", "src", "tests", "bench"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = run([str(BIN / "ruff"), "format", "--check", "src", "tests", "bench"])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_strict() -> None:
    result = run([str(BIN / "mypy")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_posix_sh() -> None:
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is not installed (scripts/install-deps installs it)")
    scripts = shell_scripts()
    assert scripts, "no shell scripts found"
    # -x -P SCRIPTDIR: follow the `. file` lines (conf.d, the functions library) as the scripts
    # name them, relative to each script.
    result = run(["shellcheck", "-s", "sh", "-x", "-P", "SCRIPTDIR", *map(str, scripts)])
    assert result.returncode == 0, result.stdout
