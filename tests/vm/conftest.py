"""The VM tier: one test cluster per module, timings reported at the end of the session."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.vm.cluster import E2ECluster

TIMINGS: list[dict[str, object]] = []

REQUIRED = (
    "qemu-system-x86_64",
    "qemu-img",
    "ganesha.nfsd",
    "rpcbind",
    "dhcpd",
    "in.tftpd",
    "rsync",
    "debootstrap",
    "losetup",
)


def require_vm_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("the VM tests need root (namespaces, tap devices, loop devices)")
    missing = [p for p in REQUIRED if shutil.which(p) is None]
    if missing:
        pytest.fail(f"missing programs: {', '.join(missing)} (run scripts/install-deps)")


def record(cluster: E2ECluster) -> None:
    TIMINGS.extend(cluster.timings)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TIMINGS:
        return
    terminalreporter.section("e2e boot timings")
    for row in TIMINGS:
        moved = row["bytes_moved"]
        terminalreporter.write_line(
            f"{row['scenario']:<28} {row['node']:<8} {row['wall_s']:>7} s  "
            f"{'-' if moved is None else f'{moved:,} bytes moved':>24}"
            f"{'  (killed mid-sync)' if row['killed'] else ''}"
        )
    out = Path(os.environ.get("CLUSTCONTROL_E2E_TIMINGS", "e2e-timings.json"))
    out.write_text(json.dumps(TIMINGS, indent=2) + "\n")
    terminalreporter.write_line(f"written to {out}")


@pytest.fixture(scope="module")
def vm_work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require_vm_tools()
    yield tmp_path_factory.mktemp("e2e")
