"""Every generated config passes the real program's own checker, for several inventories.

The checkers run on the files as `render --out` writes them. The negative tests corrupt one line of
a rendered file and prove that each checker really rejects it (so a passing run means something)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from clustcontrol.render import RenderedTree
from tests.daemons.conftest import (
    Netns,
    base_nodes,
    cluster,
    in_netns,
    inventory,
    must,
    render_into,
    run,
)

pytestmark = pytest.mark.daemon

DHCPD_CONF = "/etc/dhcp/dhcpd.conf"
KEA_CONF = "/etc/kea/kea-dhcp4.conf"
DNSMASQ_CONF = "/etc/dnsmasq.d/clustcontrol.conf"
NAMED_OPTIONS = "/etc/bind/named.conf.options"
NAMED_ZONES = "/etc/bind/named.conf.clustcontrol"
ZONE_DIR = "/etc/bind/clustcontrol"


def _many_nodes(count: int) -> list[dict[str, str]]:
    return [
        {
            "name": f"n{i:03d}",
            "mac": f"52:54:00:00:{i // 256:02x}:{i % 256:02x}",
            "ip": f"10.10.{1 + i // 200}.{10 + i % 200}",
        }
        for i in range(count)
    ]


# id -> (inventory overrides, the zones it must produce)
INVENTORIES: dict[str, tuple[dict[str, object], set[str]]] = {
    "base": ({}, {"rostclust", "0.168.192.in-addr.arpa"}),
    "update-node": ({"update_node": {"node": "node01"}}, {"rostclust", "0.168.192.in-addr.arpa"}),
    "two-boot-nics": (
        {
            "nodes": [
                {**base_nodes()[0], "mac": ["52:54:00:00:00:01", "52:54:00:00:00:a1"]},
                base_nodes()[1],
            ],
            "update_node": {"node": "node01"},
        },
        {"rostclust", "0.168.192.in-addr.arpa"},
    ),
    "two-images": (
        {
            "images": {
                "default": {"root": "/srv/nfs4/clusternoderoot"},
                "second": {"root": "/srv/nfs4/second", "kernel_args": ["quiet"]},
            },
            "nodes": [base_nodes()[0], {**base_nodes()[1], "image": "second"}],
            "update_node": {"node": "node02", "image": "second"},
        },
        {"rostclust", "0.168.192.in-addr.arpa"},
    ),
    "slash22-gateway-forwarders": (
        {
            "cluster": cluster(
                network="192.168.0.0/22",
                gateway="192.168.0.254",
                dns_forwarders=["192.0.2.53", "198.51.100.53"],
            ),
            "nodes": [
                *base_nodes(),
                {"name": "node03", "mac": "52:54:00:00:00:03", "ip": "192.168.2.7"},
            ],
        },
        {
            "rostclust",
            "0.168.192.in-addr.arpa",
            "1.168.192.in-addr.arpa",
            "2.168.192.in-addr.arpa",
            "3.168.192.in-addr.arpa",
        },
    ),
    "dhcp-interface": (
        {"cluster": cluster(dhcp_interface="eth1")},
        {"rostclust", "0.168.192.in-addr.arpa"},
    ),
    "master-interface": (
        {
            "cluster": cluster(master={"name": "master", "ip": "192.168.0.1", "interface": "eth1"}),
            "update_node": {"node": "node02"},
        },
        {"rostclust", "0.168.192.in-addr.arpa"},
    ),
    "300-nodes": (
        {
            "cluster": cluster(
                network="10.10.0.0/16", master={"name": "master", "ip": "10.10.0.1"}
            ),
            "nodes": _many_nodes(300),
            "update_node": {"node": "n150"},
        },
        {"rostclust", "10.10.in-addr.arpa"},
    ),
}


@dataclass(frozen=True)
class Check:
    what: str
    argv: list[str]
    env: dict[str, str] | None = None


def checks(root: Path, tree: RenderedTree, work: Path) -> list[Check]:
    """The checker commands for a tree rendered under root, as the daemons' manuals give them."""

    def live(path: str) -> str:
        return str(root / path.lstrip("/"))

    kea_env = {"KEA_PIDFILE_DIR": str(work), "KEA_LOCKFILE_DIR": str(work)}
    result = [
        Check("dhcpd", ["dhcpd", "-t", "-4", "-cf", live(DHCPD_CONF)]),
        Check("kea", ["kea-dhcp4", "-t", live(KEA_CONF)], kea_env),
        Check("dnsmasq", ["dnsmasq", "--test", f"--conf-file={live(DNSMASQ_CONF)}"]),
        Check("named-checkconf options", ["named-checkconf", live(NAMED_OPTIONS)]),
        Check("named-checkconf zones", ["named-checkconf", live(NAMED_ZONES)]),
        # -z loads every zone through the absolute paths of the zone statements (chrooted by -t).
        Check("named-checkconf -z", ["named-checkconf", "-z", "-t", str(root), NAMED_ZONES]),
    ]
    for output in tree:
        if output.path.startswith(f"{ZONE_DIR}/db."):
            zone = output.path.removeprefix(f"{ZONE_DIR}/db.")
            result.append(
                Check(f"named-checkzone {zone}", ["named-checkzone", zone, live(output.path)])
            )
    return result


def zones_of(tree: RenderedTree) -> set[str]:
    return {
        o.path.removeprefix(f"{ZONE_DIR}/db.") for o in tree if o.path.startswith(f"{ZONE_DIR}/db.")
    }


@pytest.mark.parametrize("case", list(INVENTORIES))
def test_generated_configs_pass_the_real_checkers(case: str, tmp_path: Path, netns: Netns) -> None:
    overrides, zones = INVENTORIES[case]
    inv = inventory(**overrides)
    root = tmp_path / "tree"
    tree = render_into(inv, root)
    assert zones_of(tree) == zones
    work = tmp_path / "work"
    work.mkdir()
    prefix: list[str] = []
    interface = inv.cluster.master_interface
    if interface is not None:
        # `kea-dhcp4 -t` insists that the named interface exists, as it does on the master:
        # check inside a namespace that has one (one end of a veth pair; no dummy module here).
        ns = netns.create("chk")
        must(["ip", "-n", ns, "link", "add", interface, "type", "veth", "peer", "name", "peer0"])
        prefix = in_netns(ns)
    failures = []
    for check in checks(root, tree, work):
        proc = run([*prefix, *check.argv], env=check.env)
        if proc.returncode != 0:
            failures.append(f"{check.what} (status {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    assert not failures, "\n\n".join(failures)


def test_zone_check_reports_every_zone_loaded(tmp_path: Path) -> None:
    """named-checkconf -z really loads the rendered zones (with their serial and records)."""
    root = tmp_path / "tree"
    render_into(inventory(), root)
    proc = run(["named-checkconf", "-z", "-t", root, NAMED_ZONES])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "zone rostclust/IN: loaded serial 1" in proc.stdout
    assert "zone 0.168.192.in-addr.arpa/IN: loaded serial 1" in proc.stdout


# (live path, text to replace, replacement, the check that must now fail)
CORRUPTIONS = {
    "dhcpd": (
        DHCPD_CONF,
        "hardware ethernet 52:54:00:00:00:01;",
        "hardware ethernet 52:54:00:00:00:01",
        "dhcpd",
    ),
    "kea": (KEA_CONF, '"valid-lifetime": 86400,', '"valid-lifetime": "a day",', "kea"),
    "dnsmasq": (DNSMASQ_CONF, "dhcp-authoritative", "dhcp-authoritativ", "dnsmasq"),
    "named-conf": (
        NAMED_ZONES,
        'file "/etc/bind/clustcontrol/db.rostclust";',
        'file "/etc/bind/clustcontrol/db.rostclust"',
        "named-checkconf zones",
    ),
    "zone": (
        f"{ZONE_DIR}/db.rostclust",
        "node01\tIN\tA\t192.168.0.11",
        "node01\tIN\tA\t192.168.0.311",
        "named-checkzone rostclust",
    ),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_checker_rejects_a_corrupted_file(case: str, tmp_path: Path) -> None:
    path, old, new, what = CORRUPTIONS[case]
    root = tmp_path / "tree"
    tree = render_into(inventory(), root)
    work = tmp_path / "work"
    work.mkdir()
    check = next(c for c in checks(root, tree, work) if c.what == what)
    clean = run(check.argv, env=check.env)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    target = root / path.lstrip("/")
    text = target.read_text()
    assert text.count(old) == 1, f"{old!r} is not once in {path}"
    target.write_text(text.replace(old, new))
    broken = run(check.argv, env=check.env)
    assert broken.returncode != 0, f"{what} accepted a corrupted {path}:\n{broken.stdout}"
