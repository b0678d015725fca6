"""The zone serial through apply under a prefix: kept while the content is the same, +1 on change.

A real named serves the applied tree throughout, so the serial is checked as a resolver sees it,
and a reload (SIGHUP) picks up the new node together with the new serial."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from clustcontrol.apply import Installer, apply_tree
from clustcontrol.inventory.model import Inventory
from clustcontrol.render import RenderContext, RenderedTree, render_all
from tests.daemons.conftest import (
    Daemons,
    base_nodes,
    dig_short,
    inventory,
    poll,
    start_named,
)

pytestmark = pytest.mark.daemon

FORWARD = "/etc/bind/clustcontrol/db.rostclust"
REVERSE = "/etc/bind/clustcontrol/db.0.168.192.in-addr.arpa"
SERIAL = re.compile(r"^\s*(\d+)\s*; serial", re.MULTILINE)


def render(inv: Inventory, root: Path) -> RenderedTree:
    return render_all(RenderContext(inv, previous=Installer(root).read))


def file_serial(root: Path, path: str) -> int:
    match = SERIAL.search((root / path.lstrip("/")).read_text())
    assert match is not None, f"no serial in {path}"
    return int(match.group(1))


def served_serial(port: int, zone: str) -> int:
    soa = dig_short(port, zone, "SOA")
    assert len(soa) == 7, f"SOA of {zone}: {soa}"
    return int(soa[2])


def test_serial_kept_when_unchanged_and_bumped_on_change(tmp_path: Path, daemons: Daemons) -> None:
    root = tmp_path / "root"
    inv = inventory()

    first = apply_tree(inv, render(inv, root), root)
    assert {c.path for c in first.changes} >= {FORWARD, REVERSE}
    assert file_serial(root, FORWARD) == 1
    assert file_serial(root, REVERSE) == 1

    named = start_named(daemons, root, include="/etc/bind/named.conf.local")
    port = named.port
    assert served_serial(port, "rostclust") == 1
    assert served_serial(port, "0.168.192.in-addr.arpa") == 1

    # The same inventory again: same serial, nothing to install.
    again = render(inv, root)
    assert again[FORWARD].data() == (root / FORWARD.lstrip("/")).read_bytes()
    assert again[REVERSE].data() == (root / REVERSE.lstrip("/")).read_bytes()
    unchanged = apply_tree(inv, again, root)
    assert unchanged.changes == []
    assert file_serial(root, FORWARD) == 1

    # One node more: both zones change, both serials go up by one.
    node03 = {"name": "node03", "mac": "52:54:00:00:00:03", "ip": "192.168.0.13"}
    bigger = inventory(nodes=[*base_nodes(), node03])
    changed = apply_tree(bigger, render(bigger, root), root)
    assert {FORWARD, REVERSE} <= {c.path for c in changed.changes}
    assert file_serial(root, FORWARD) == 2
    assert file_serial(root, REVERSE) == 2

    named.daemon.proc.send_signal(signal.SIGHUP)
    poll(lambda: dig_short(port, "node03.rostclust", "A") == ["192.168.0.13"], "node03 in DNS")
    assert served_serial(port, "rostclust") == 2
    poll(lambda: served_serial(port, "0.168.192.in-addr.arpa") == 2, "the reverse zone reload")
    assert dig_short(port, "-x", "192.168.0.13") == ["node03.rostclust."]

    # And stable again at the new serial.
    assert apply_tree(bigger, render(bigger, root), root).changes == []
    assert file_serial(root, FORWARD) == 2
