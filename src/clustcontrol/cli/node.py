"""`clustcontrol node ...`: add, change, remove, list and import cluster nodes."""

from __future__ import annotations

from pathlib import Path

import click

from clustcontrol.cli.common import (
    State,
    out,
    output_option,
    pass_state,
    print_rows,
    remove_command,
)
from clustcontrol.inventory import edit, normalize
from clustcontrol.inventory.store import edit_inventory


@click.group()
def node() -> None:
    """Cluster nodes."""


@node.command("add")
@click.argument("name")
@click.option("--mac", required=True, help="MAC of the node's boot interface.")
@click.option("--ip", required=True, help="The node's fixed address.")
@click.option("--image", default=None, help="Standard root to sync to [the default image].")
@pass_state
def node_add(state: State, name: str, mac: str, ip: str, image: str | None) -> None:
    """Add a node.

    \b
    Example:
      clustcontrol node add node01 --mac 52:54:00:12:34:01 --ip 192.168.0.11
    """
    entry = normalize.new_node(name, mac, ip, image)
    with edit_inventory(state.config) as document:
        edit.add_node(document, entry)
    out.print(f"added node {entry.name}")


@node.command("set")
@click.argument("name")
@click.option("--mac", default=None)
@click.option("--ip", default=None)
@click.option("--image", default=None, help="Standard root; '' for the default image.")
@click.option("--layout", "disk_layout", default=None, help="Disk layout; '' for the image's.")
@pass_state
def node_set(
    state: State,
    name: str,
    mac: str | None,
    ip: str | None,
    image: str | None,
    disk_layout: str | None,
) -> None:
    """Change a node's MAC, address, image or disk layout.

    \b
    Example:
      clustcontrol node set node01 --image gpu
    """
    changes = normalize.node_changes(mac=mac, ip=ip, image=image, disk_layout=disk_layout)
    with edit_inventory(state.config) as document:
        edit.set_node(document, name, changes)
    out.print(f"updated node {name}")


node.add_command(
    remove_command("node", edit.remove_node, "Remove a node (and clear it as update node).")
)


@node.command("list")
@output_option
@pass_state
def node_list(state: State, output: str) -> None:
    """List the nodes."""
    inv = state.inventory()
    update_name = inv.update_node.node
    rows = [
        {
            "name": n.name,
            "mac": n.mac,
            "ip": str(n.ip),
            "image": inv.image_of(n),
            "disk_layout": inv.layout_of(n),
            "update_node": n.name == update_name,
        }
        for n in sorted(inv.nodes, key=lambda n: n.ip)
    ]
    print_rows(
        output == "json",
        rows,
        f"{len(rows)} nodes",
        ["name", "mac", "ip", "image", "disk_layout", "update_node"],
    )


@node.command("import")
@click.argument("csv_file", type=click.Path(path_type=Path))
@pass_state
def node_import(state: State, csv_file: Path) -> None:
    """Add or update nodes from a CSV file with the header name,mac,ip,image.

    All rows are validated together with the rest of the inventory: all or nothing.

    \b
    Example:
      clustcontrol node import rack3.csv
    """
    rows = normalize.read_node_csv(csv_file)
    with edit_inventory(state.config) as document:
        added, updated = edit.import_nodes(document, rows)
    out.print(f"imported {len(rows)} rows: {added} added, {updated} updated")
