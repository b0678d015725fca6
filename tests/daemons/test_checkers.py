"""Every generated config passes the real program's own checker, for several inventories.

The checkers run on the files as `render --out` writes them. The negative tests corrupt one line of
a rendered file and prove that each checker really rejects it (so a passing run means something)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clustcontrol.inventory.model import Inventory
from clustcontrol.inventory.store import parse_inventory
from clustcontrol.render import RenderedTree
from clustcontrol.render.grub import GRUB_CONFIG
from clustcontrol.render.nfs import EXPORTS, exported_directories
from clustcontrol.render.view import ClusterView
from tests.conftest import inventory_data
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
GRUB_CFG = "/var/lib/tftpboot/grub/grub.cfg"
GRUB_DIR = "/var/lib/tftpboot/cluster_node/grub"


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
    "forced-boot": (
        {
            "nodes": [
                {**base_nodes()[0], "mac": ["52:54:00:00:00:01", "52:54:00:00:00:a1"]}
                | {"boot": "uefi"},
                {**base_nodes()[1], "boot": "bios"},
                {"name": "node03", "mac": "52:54:00:00:00:03", "ip": "192.168.0.13"}
                | {"boot": "uefi"},
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
        if GRUB_CONFIG.fullmatch(output.path):
            result.append(
                Check(f"grub-script-check {output.path}", ["grub-script-check", live(output.path)])
            )
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
    "grub": (
        GRUB_CFG,
        "configfile /cluster_node/grub/default.cfg",
        'if [ "$net_default_ip" = x ]; then configfile /cluster_node/grub/default.cfg',
        f"grub-script-check {GRUB_CFG}",
    ),
    "grub-entry": (
        f"{GRUB_DIR}/common.cfg",
        "menuentry 'linux' --id 'linux' {",
        "menuentry 'linux' --id 'linux' {{",
        f"grub-script-check {GRUB_DIR}/common.cfg",
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


# --- the kernel server's exports: exportfs(8) ------------------------------------------------

# exportfs reads /etc/exports and /etc/exports.d/*.exports and records what it exported, with
# every option spelled out, in /var/lib/nfs/etab; the kernel's export table is per network
# namespace. In new mount and network namespaces it reads the rendered file alone and touches
# neither the host's files nor its NFS server (the host needs none: a kernel without nfsd
# works, exportfs exports into its etab all the same).
_EXPORTFS = """
mount --bind "$1" /etc/exports
if [ -d /etc/exports.d ]; then mount -t tmpfs none /etc/exports.d; fi
mount -t tmpfs none /var/lib/nfs
status=0
exportfs -r -a -v || status=$?
cp /var/lib/nfs/etab "$2"
exit "$status"
"""


def exportfs(exports: Path, etab: Path) -> subprocess.CompletedProcess[str]:
    """`exportfs -rav` with `exports` as the only exports file; its etab copied to `etab`."""
    argv = ["unshare", "--mount", "--net", "--propagation", "private"]
    return run([*argv, "sh", "-euc", _EXPORTFS, "sh", exports, etab])


def relocated(case: str, tmp_path: Path) -> Inventory:
    """INVENTORIES[case] with the state directory and the image roots under tmp_path, each
    exported directory made (exportfs refuses a path it cannot stat)."""
    overrides, _ = INVENTORIES[case]
    data: dict[str, Any] = inventory_data(**overrides)
    data["cluster"] = {**data["cluster"], "state_dir": str(tmp_path / "state")}
    data["images"] = {
        name: {**image, "root": str(tmp_path / "standards" / name)}
        for name, image in data["images"].items()
    }
    inv = parse_inventory(data)
    for directory in exported_directories(ClusterView(inv))[1:]:  # not the control directory
        Path(directory.path).mkdir(parents=True, exist_ok=True)
    return inv


def entries(text: str) -> set[tuple[str, str, str]]:
    """(path, client, options) of every client of every exports(5) entry of `text` (a trailing
    backslash continues a line)."""
    found = set()
    for line in text.replace("\\\n", " ").splitlines():
        if line.startswith("/"):
            path, *clients = line.split()
            for client in clients:
                match = re.fullmatch(r"([^(]+)\((.*)\)", client)
                assert match is not None, client
                found.add((path, match[1], match[2]))
    return found


@pytest.mark.parametrize("case", list(INVENTORIES))
def test_kernel_exports_pass_exportfs(case: str, tmp_path: Path) -> None:
    """exportfs takes every entry without a warning, and exports each client with the options
    rendered: subtree_check on every one (exports(5); forged handles stay in their export),
    read-only but for the update node's working tree, secure on the secrets."""
    inv = relocated(case, tmp_path)
    root = tmp_path / "tree"
    render_into(inv, root)
    rendered = entries((root / EXPORTS.lstrip("/")).read_text())
    etab = tmp_path / "etab"
    proc = exportfs(root / EXPORTS.lstrip("/"), etab)
    assert proc.returncode == 0 and proc.stderr == "", proc.stdout + proc.stderr
    exported = {
        (path, *client.removesuffix(")").split("(", 1))
        for path, client in (line.split("\t") for line in etab.read_text().splitlines())
    }
    assert {(p, c) for p, c, _ in exported} == {(p, c) for p, c, _ in rendered}
    update = inv.update_image_name if inv.update_node.node else None
    for path, client, options in exported:
        flags = options.split(",")
        assert "subtree_check" in flags and "no_subtree_check" not in flags, (path, options)
        writable = update is not None and path == inv.images[update].root
        assert ("rw" if writable else "ro") in flags, (path, client, options)
        if path.endswith("/secrets"):
            assert "secure" in flags and "crossmnt" not in flags, (path, options)


def test_exportfs_rejects_a_corrupted_exports_file(tmp_path: Path) -> None:
    """The check above means something: exportfs refuses a misspelt option."""
    inv = relocated("base", tmp_path)
    root = tmp_path / "tree"
    render_into(inv, root)
    exports = root / EXPORTS.lstrip("/")
    text = exports.read_text()
    exports.write_text(text.replace(",subtree_check,", ",subtree_chek,", 1))
    proc = exportfs(exports, tmp_path / "etab")
    assert proc.returncode != 0
    assert 'unknown keyword "subtree_chek"' in proc.stderr, proc.stderr
