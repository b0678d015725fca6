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


def shell_scripts(base: Path = REPO) -> list[Path]:
    """Every shipped shell file: all node-side files (the engine's modules have no shebang: they
    are sourced) and the helper scripts with a sh shebang."""
    found = [p for p in sorted((base / "src/clustcontrol/node").rglob("*")) if p.is_file()]
    for path in sorted((base / "scripts").rglob("*")):
        first = path.read_bytes().split(b"\n", 1)[0] if path.is_file() else b""
        if first.startswith(b"#!") and b"sh" in first:
            found.append(path)
    return found


def shellcheck(base: Path = REPO) -> subprocess.CompletedProcess[str]:
    """shellcheck -s sh on every shell file under base, each named on the command line (a file
    only reached by `-x` through another is not reported on)."""
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is not installed (scripts/install-deps installs it)")
    scripts = shell_scripts(base)
    assert scripts, "no shell scripts found"
    return subprocess.run(
        [
            "shellcheck",
            "-s",
            "sh",
            "-x",
            "-P",
            "SCRIPTDIR",
            *(str(p.relative_to(base)) for p in scripts),
        ],
        cwd=base,
        capture_output=True,
        text=True,
        timeout=600,
    )


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
    names = {p.name for p in shell_scripts()}
    assert {"engine.sh", "contract.sh", "sync.sh", "clustcontrol"} <= names
    result = shellcheck()
    assert result.returncode == 0, result.stdout


# A bash-ism each, put into a different kind of node file: sourced modules (no shebang), the
# generated contract, conf.d, an initramfs-tools script.
BASHISMS = {
    "engine/copy.sh": '[[ -n "$x" ]] && echo x',
    "engine/contract.sh": 'arr=(a b)\necho "${arr[0]}"',
    "engine/engine.sh": "function cc_bad { echo x; }",
    "initramfs-tools/conf.d/clustcontrol": "x=$'a\\tb'\necho \"$x\"",
    "initramfs-tools/scripts/local-top/clustcontrol": 'read -r x <<< "a"\necho "$x"',
}


@pytest.mark.parametrize("module", sorted(BASHISMS))
def test_a_bashism_in_any_node_file_fails_the_lint(tmp_path: Path, module: str) -> None:
    """The lint test is real: the same check on a copy of the tree with one bash-ism put into a
    sourced module (no shebang) fails and names that file."""
    shutil.copytree(REPO / "src/clustcontrol/node", tmp_path / "src/clustcontrol/node")
    shutil.copytree(REPO / "scripts", tmp_path / "scripts")
    assert shellcheck(tmp_path).returncode == 0
    target = tmp_path / "src/clustcontrol/node" / module
    text = target.read_text()
    if "\nexit 0\n" in text:  # before a script's last line, where it is reached
        text = text[: text.rindex("\nexit 0\n")]
    target.write_text(text + "\n" + BASHISMS[module] + "\nexit 0\n")
    result = shellcheck(tmp_path)
    assert result.returncode != 0
    assert f"In src/clustcontrol/node/{module} line" in result.stdout, result.stdout
