"""Shared fixtures: small inline inventories and a runner for the real `clustcontrol` command."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clustcontrol.inventory.model import Inventory
from clustcontrol.inventory.store import parse_inventory

BASE: dict[str, Any] = {
    "cluster": {
        "domain": "rostclust",
        "network": "192.168.0.0/24",
        "master": {"name": "master", "ip": "192.168.0.1"},
    },
    "images": {"default": {"root": "/srv/nfs4/clusternoderoot"}},
    "nodes": [
        {"name": "node01", "mac": "52:54:00:00:00:01", "ip": "192.168.0.11"},
        {"name": "node02", "mac": "52:54:00:00:00:02", "ip": "192.168.0.12"},
    ],
}


def inventory_data(**overrides: object) -> dict[str, object]:
    """A deep copy of BASE with top-level keys replaced."""
    import copy

    data = copy.deepcopy(BASE)
    data.update(copy.deepcopy(overrides))
    return data


def make_inventory(**overrides: object) -> Inventory:
    return parse_inventory(inventory_data(**overrides))


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Cli:
    config: Path

    def __call__(self, *args: str | Path, config: bool = True) -> Result:
        argv = [sys.executable, "-m", "clustcontrol"]
        if config:
            argv += ["--config", str(self.config)]
        argv += [str(a) for a in args]
        env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
        return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "cluster.yaml")


@pytest.fixture
def initialized(cli: Cli) -> Cli:
    result = cli(
        "init", "--domain", "rostclust", "--network", "192.168.0.0/24", "--master-ip", "192.168.0.1"
    )
    assert result.code == 0, result.err
    return cli
