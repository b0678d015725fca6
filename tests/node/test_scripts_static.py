"""Every node script parses under busybox sh and has the right mode (shellcheck -s sh runs
on every shipped shell script in tests/test_lint.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.node.conftest import BUSYBOX, NODE_DIR

SCRIPTS = [
    *sorted((NODE_DIR / "engine").glob("*.sh")),
    NODE_DIR / "initramfs-tools/conf.d/clustcontrol",
    NODE_DIR / "initramfs-tools/hooks/clustcontrol",
    NODE_DIR / "initramfs-tools/scripts/local-top/clustcontrol",
    NODE_DIR / "initramfs-tools/scripts/local-bottom/clustcontrol",
]


def test_all_node_scripts_are_listed() -> None:
    found = {
        p
        for sub in ("engine", "initramfs-tools")
        for p in (NODE_DIR / sub).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert found == set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(Path(p).relative_to(NODE_DIR)))
def test_busybox_sh_parses(script: Path) -> None:
    proc = subprocess.run([BUSYBOX, "sh", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_modes() -> None:
    """Hook and scripts executable (run by initramfs-tools), conf.d and engine modules not."""
    for script in SCRIPTS:
        executable = "/hooks/" in str(script) or "/scripts/" in str(script)
        assert bool(script.stat().st_mode & 0o111) == executable, script
