"""Inventory edits take turns: 20 concurrent `node add` calls all land (they printed "added"
and exited 0 while only 2-4 nodes remained), and an edit that waits too long says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clustcontrol.errors import LockedError
from clustcontrol.fsutil import waiting_lock
from tests.conftest import Cli


def test_concurrent_node_adds_all_land(initialized: Cli) -> None:
    cli = initialized
    argv = [sys.executable, "-m", "clustcontrol", "--config", str(cli.config), "node", "add"]
    procs = [
        subprocess.Popen(
            [
                *argv,
                f"node{i:02d}",
                "--mac",
                f"52:54:00:00:10:{i:02x}",
                "--ip",
                f"192.168.0.{30 + i}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(20)
    ]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    assert [rc for rc, _ in results] == [0] * 20, results
    names = {r["name"] for r in json.loads(cli("node", "list", "--output", "json").out)}
    assert names == {f"node{i:02d}" for i in range(20)}
    assert sorted(p.name for p in cli.config.parent.iterdir() if p.name.startswith(".")) == []


def test_an_edit_that_cannot_get_the_lock_fails_clearly(tmp_path: Path) -> None:
    lock = tmp_path
    with (
        waiting_lock(lock, 1.0),
        pytest.raises(LockedError, match=rf"holds the lock .* \(pid {os.getpid()}\) for 0.1 s"),
        waiting_lock(lock, 0.1),
    ):
        pass
    with waiting_lock(lock, 0.1):  # released
        pass
