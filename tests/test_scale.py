"""A 5,000-node inventory renders and validates; the timing target lives in bench/, not here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clustcontrol.apply import Installer, apply_tree, selected_services
from clustcontrol.inventory.store import load_inventory
from clustcontrol.render import RenderContext, render_all

NODES = 5000


def write_large_inventory(path: Path, count: int) -> dict[str, Any]:
    """A /16 with count nodes, every 10th on its own image; returns the same data as a dict."""
    lines = [
        "cluster:",
        "  domain: bigclust",
        "  network: 10.20.0.0/16",
        "  master: {name: master, ip: 10.20.0.1}",
        "images:",
        "  default: {root: /srv/nfs4/clusternoderoot}",
        "  gpu: {root: /srv/nfs4/gpuroot, transport: rsync}",
        "nodes:",
    ]
    nodes: list[dict[str, str]] = []
    for i in range(count):
        ip = f"10.20.{1 + i // 250}.{1 + i % 250}"
        mac = f"52:54:00:{i >> 16 & 0xFF:02x}:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}"
        node = {"name": f"n{i:05d}", "mac": mac, "ip": ip}
        if i % 10 == 0:
            node["image"] = "gpu"
        nodes.append(node)
        image = ", image: gpu" if "image" in node else ""
        lines.append(f'  - {{name: n{i:05d}, mac: "{mac}", ip: {ip}{image}}}')
    lines.append("update_node: {node: n00001}")
    path.write_text("\n".join(lines) + "\n")
    return {
        "cluster": {
            "domain": "bigclust",
            "network": "10.20.0.0/16",
            "master": {"name": "master", "ip": "10.20.0.1"},
        },
        "images": {
            "default": {"root": "/srv/nfs4/clusternoderoot"},
            "gpu": {"root": "/srv/nfs4/gpuroot", "transport": "rsync"},
        },
        "nodes": nodes,
        "update_node": {"node": "n00001"},
    }


def test_render_and_apply_5000_nodes(tmp_path: Path) -> None:
    config = tmp_path / "cluster.yaml"
    write_large_inventory(config, NODES)
    inv = load_inventory(config)
    assert len(inv.nodes) == NODES
    tree = render_all(RenderContext(inv))
    dhcpd = tree["/etc/dhcp/dhcpd.conf"].data().decode()
    # The update node's MAC moves from its regular entry to the update address.
    assert dhcpd.count("\n    host n") == NODES - 1
    assert "host updatenode" in dhcpd
    forward = tree["/etc/bind/clustcontrol/db.bigclust"].data().decode()
    assert "n04999\tIN\tA\t10.20.20.250\n" in forward
    # /16 -> one reverse zone; every node has a PTR record.
    reverse = tree["/etc/bind/clustcontrol/db.20.10.in-addr.arpa"].data().decode()
    assert reverse.count("\tIN\tPTR\t") == NODES + 2
    # Every 10th node has its own image, hence its own PXELINUX file.
    update_file = "/pxelinux.cfg/0A14FFFD"  # 10.20.255.253, the update address of the /16
    assert any(p.endswith(update_file) for p in tree.outputs)
    own = [p for p in tree.outputs if "/pxelinux.cfg/0A14" in p and not p.endswith(update_file)]
    assert len(own) == NODES // 10
    root = tmp_path / "root"
    first = apply_tree(inv, tree, root, check=False)
    services = selected_services(inv)
    assert len(first.changes) == sum(1 for o in tree if o.service in services)
    second = apply_tree(inv, render_all(RenderContext(inv, previous=Installer(root).read)), root)
    assert second.changes == []
