"""The update node's read-write paths exist only while an update node is set (issue 11, case 3).

The generator: inventories over networks of several sizes, one to three images (NFS or rsync),
either NFS server, a few nodes, an update address and image of their own or the defaults, and
update_node.node set to one of the nodes or unset.

The oracle, over every rendered file of every service:
- no update node: the update address (dotted or as PXELINUX's hex name) and the update label
  appear nowhere, no export is read-write (exports(5) `rw`, ganesha `Access_Type = RW`), no
  PXELINUX label boots an NFS root;
- an update node: exactly one read-write export in each NFS server's file, of the update
  image's working tree to the update address alone, and the update address's PXELINUX file
  boots `linuxnfsroot` (the node's own file at its regular address, if it had one, goes);
  every other file is the same as without it, but for the DHCP and DNS
  files (the MAC moves to the update address, the address gets its name), pxelinux-common (the
  NFS-root labels) and the exports."""

from __future__ import annotations

import re
from ipaddress import IPv4Network
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from clustcontrol.inventory.model import UPDATE_NODE_LABEL
from clustcontrol.inventory.store import parse_inventory
from clustcontrol.render import RenderContext, render_all
from clustcontrol.render.nfs import EXPORTS, GANESHA_CONF
from clustcontrol.render.view import hex_ip

NETWORKS = ("192.168.0.0/24", "10.1.4.0/22", "10.20.0.0/16", "172.16.9.128/25")


@st.composite
def inventories(draw: st.DrawFn) -> dict[str, Any]:
    """A valid inventory (plain data) with update_node.node unset; see the module docstring."""
    network = IPv4Network(draw(st.sampled_from(NETWORKS)))
    hosts = list(network.hosts())
    # The master is the first address, the update address (when its own) one of the next
    # ten, nodes from further up: never two on one address.
    update_ip = draw(st.none() | st.sampled_from(hosts[1:11]))
    names = draw(st.lists(st.sampled_from(["default", "gpu", "big"]), min_size=1, unique=True))
    images = {
        name: {
            "root": f"/srv/nfs4/{name}root",
            "transport": draw(st.sampled_from(["nfs", "rsync"])),
        }
        for name in names
    }
    count = draw(st.integers(1, 5))
    nodes = [
        {
            "name": f"node{i:02d}",
            "mac": f"52:54:00:00:00:{i:02x}",
            "ip": str(hosts[20 + i]),
            "image": draw(st.sampled_from(names)),
        }
        for i in range(count)
    ]
    return {
        "cluster": {
            "domain": "rostclust",
            "network": str(network),
            "master": {"name": "master", "ip": str(hosts[0])},
            "nfs_server": draw(st.sampled_from(["kernel", "ganesha"])),
        },
        "images": images,
        "nodes": nodes,
        "update_node": {
            "ip": None if update_ip is None else str(update_ip),
            "image": draw(st.none() | st.sampled_from(names)),
        },
    }


def rendered(data: dict[str, Any]) -> dict[str, str]:
    inv = parse_inventory(data)
    return {o.path: o.data().decode("latin-1") for o in render_all(RenderContext(inv))}


def rw_exports(files: dict[str, str]) -> tuple[list[str], list[str]]:
    """The read-write exports: exports(5) lines with (rw, and ganesha EXPORT blocks with an RW
    client (their Path and Clients lines)."""
    kernel = [line for line in files[EXPORTS].splitlines() if "(rw," in line]
    ganesha = [
        " ".join(re.findall(r"(?:Path|Clients) = [^;]+;", block))
        for block in files[GANESHA_CONF].split("\nEXPORT {")[1:]
        if "Access_Type = RW;" in block
    ]
    return kernel, ganesha


@settings(max_examples=60, deadline=None, database=None)
@given(data=inventories(), which=st.integers(0, 4))
def test_read_write_paths_only_while_an_update_node_is_set(
    data: dict[str, Any], which: int
) -> None:
    inv = parse_inventory(data)
    update_ip = str(inv.update_ip)
    hex_name = hex_ip(inv.update_ip)
    address = re.compile(rf"(?<![0-9.]){re.escape(update_ip)}(?![0-9])")

    plain = rendered(data)
    for path, text in plain.items():
        assert hex_name not in path, path
        assert not address.search(text), path
        assert UPDATE_NODE_LABEL not in text, path
        assert "boot=nfs" not in text and "nfsroot=" not in text, path
    assert rw_exports(plain) == ([], [])

    node = data["nodes"][which % len(data["nodes"])]
    updated = rendered({**data, "update_node": {**data["update_node"], "node": node["name"]}})
    root = inv.images[inv.update_image_name].root
    kernel, ganesha = rw_exports(updated)
    assert kernel == [f"{root} {update_ip}(rw,sync,subtree_check,no_root_squash,crossmnt)"]
    assert ganesha == [f'Path = "{root}"; Clients = {update_ip};']
    boot = f"{inv.cluster.tftp_root}/{inv.cluster.boot_dir}"
    host_file = f"{boot}/pxelinux.cfg/{hex_name}"
    grub_file = f"{boot}/grub/{hex_name}.cfg"
    # The node booting as the update node loses its own files, if it had them: its regular
    # address is not handed out meanwhile.
    own_hex = hex_ip(inv.node(node["name"]).ip)  # type: ignore[union-attr]
    own_files = {f"{boot}/pxelinux.cfg/{own_hex}", f"{boot}/grub/{own_hex}.cfg"}
    assert set(updated) == (set(plain) - own_files) | {host_file, grub_file}
    assert "DEFAULT linuxnfsroot\n" in updated[host_file]
    assert "set default='linuxnfsroot'\n" in updated[grub_file]
    changed = {path for path in plain if path not in own_files and plain[path] != updated[path]}
    # grub.cfg sends the update address to its file; common.cfg gains the NFS-root entries.
    allowed = {EXPORTS, GANESHA_CONF, f"{boot}/pxelinux-common", f"{boot}/grub/common.cfg"}
    allowed.add(f"{inv.cluster.tftp_root}/grub/grub.cfg")
    allowed |= {p for p in plain if p.startswith(("/etc/dhcp/", "/etc/kea/", "/etc/dnsmasq.d/"))}
    allowed |= {p for p in plain if p.startswith("/etc/bind/clustcontrol/db.")}
    assert changed <= allowed, changed - allowed
    assert EXPORTS in changed and GANESHA_CONF in changed
