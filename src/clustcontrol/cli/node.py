"""`clustcontrol node ...`: add, change, remove, list and import cluster nodes; rehearse a
node's boot sync."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from clustcontrol import rehearse
from clustcontrol.cli.common import (
    State,
    err,
    human_bytes,
    out,
    output_option,
    pass_state,
    prefix_option,
    print_rows,
    say,
)
from clustcontrol.errors import EXIT_FAILURE
from clustcontrol.inventory import edit, nodelines, normalize
from clustcontrol.inventory.store import edit_inventory, edit_nodes

#: --boot of node add and node set: the node's boot program, by firmware (inventory Node.boot).
boot_option = click.option(
    "--boot",
    type=click.Choice(["auto", "bios", "uefi"]),
    default=None,
    help="Network boot program: by the firmware's architecture (auto), or forced.",
)


@click.group()
def node() -> None:
    """Cluster nodes."""


@node.command("add")
@click.argument("name")
@click.option(
    "--mac",
    required=True,
    help="MAC of the node's boot interface; several separated by ',' (two boot NICs).",
)
@click.option("--ip", required=True, help="The node's fixed address.")
@click.option("--image", default=None, help="Standard root to sync to [the default image].")
@boot_option
@pass_state
def node_add(
    state: State, name: str, mac: str, ip: str, image: str | None, boot: str | None
) -> None:
    """Add a node.

    \b
    Example:
      clustcontrol node add node01 --mac 52:54:00:12:34:01 --ip 192.168.0.11
    """
    entry = normalize.new_node(name, mac, ip, image, boot)
    edit_nodes(
        state.config,
        lambda nodes: nodelines.add_entry(nodes, entry.fields()),
        lambda document: edit.add_node(document, entry),
    )
    out.print(f"added node {entry.name}")


@node.command("set")
@click.argument("name")
@click.option("--mac", default=None, help="New MAC(s), replacing the node's; ',' between.")
@click.option("--ip", default=None)
@click.option("--image", default=None, help="Standard root; '' for the default image.")
@click.option("--layout", "disk_layout", default=None, help="Disk layout; '' for the image's.")
@boot_option
@pass_state
def node_set(
    state: State,
    name: str,
    mac: str | None,
    ip: str | None,
    image: str | None,
    disk_layout: str | None,
    boot: str | None,
) -> None:
    """Change a node's MAC, address, image, disk layout or boot program.

    \b
    Example:
      clustcontrol node set node01 --image gpu
      clustcontrol node set node02 --boot uefi
    """
    changes = normalize.node_changes(
        mac=mac, ip=ip, image=image, disk_layout=disk_layout, boot=boot
    )
    edit_nodes(
        state.config,
        lambda nodes: nodelines.set_entry(nodes, name, changes),
        lambda document: edit.set_node(document, name, changes),
    )
    out.print(f"updated node {name}")


@node.command("remove")
@click.argument("name")
@pass_state
def node_remove(state: State, name: str) -> None:
    """Remove a node (and clear it as update node).

    \b
    Example:
      clustcontrol node remove node01
    """
    edit_nodes(
        state.config,
        lambda nodes: nodelines.remove_entry(nodes, name),
        lambda document: edit.remove_node(document, name),
    )
    out.print(f"removed node {name}")


@node.command("list")
@output_option
@pass_state
def node_list(state: State, output: str) -> None:
    """List the nodes, sorted by address.

    \b
    Example:
      clustcontrol node list --output json
    """
    inv = state.inventory()
    update_name = inv.update_node.node
    rows = [
        {
            "name": n.name,
            "mac": " ".join(n.mac),
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


@node.command("rehearse")
@click.argument("name")
@click.option(
    "--disk", required=True, metavar="FILE", help="Disk image file; created sparse when missing."
)
@prefix_option("Installation prefix the generation store and control directory are under.")
@click.option(
    "--size",
    default=None,
    metavar="SIZE",
    help="Size of a new disk file: bytes, or a whole number of K, M, G or T (binary units), "
    "optionally followed by iB: 512M, 32G, 4GiB; at least what the node's layout needs "
    "[the smallest of 4G, 8G, 16G ... the layout fits].",
)
@click.option(
    "--transport",
    type=click.Choice(["nfs", "rsync"]),
    default=None,
    help="Transport to rehearse [the image's].",
)
@output_option
@pass_state
def node_rehearse(
    state: State,
    name: str,
    disk: str,
    root: Path,
    size: str | None,
    transport: str | None,
    output: str,
) -> None:
    """Rehearse a node's boot sync on this master, against a disk image file.

    The real node engine runs in a private mount namespace with the node's kernel command line
    (its PXELINUX label), the control files rendered from the inventory and the image's
    current generation, served read-only: over NFS as a bind mount, over rsync by a private
    daemon on 127.0.0.1. Shows what the node did. Run it again on the same disk to see the
    next boot. Exit status 0 when the node synced, 1 when it failed or fell back to its old
    copy, 2 for bad input (nothing written).

    \b
    Example:
      clustcontrol image commit default
      clustcontrol node rehearse node01 --disk /var/tmp/node01.img
    """
    plan = rehearse.plan_rehearsal(
        state.inventory(), name, disk, root_prefix=root, size=size, transport=transport
    )
    result = rehearse.rehearse(plan)
    if output == "json":
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        _print_rehearsal(result)
    if not result.ok:
        sys.exit(EXIT_FAILURE)


def _print_rehearsal(r: rehearse.Rehearsal) -> None:
    disk = f"{r.layout} -> {r.layout_action}" if r.layout else "not reached"
    copy = f"{r.method} ({r.mode})" if r.method and r.method != "skip" else r.method or "none"
    moved = f"{human_bytes(r.bytes_moved)} ({r.bytes_moved} bytes)"
    files = "not counted (tar stream)"
    if r.files is not None and r.file_bytes is not None:
        files = f"{r.files} ({human_bytes(r.file_bytes)} of file data)"
    rows = [
        ("layout", disk),
        ("copy", copy),
        ("moved", moved),
        ("files", files),
        ("duration", f"{r.seconds:.1f} s"),
        ("result", r.result),
        ("generation", f"{r.generation or 'none'} (master: {r.current_generation})"),
    ]
    table = Table(
        title=Text(f"node {r.node} rehearsed on {r.disk}: image {r.image} over {r.transport}"),
        title_justify="left",
    )
    table.add_column("step")
    table.add_column("what the node did")
    for label, value in rows:
        table.add_row(label, Text(value))
    out.print(table)
    out.print(f"kernel command line: {r.cmdline}", markup=False)
    for note in r.notes:
        say(f"note: {note}")
    if not r.ok:
        for line in r.console:
            if any(mark in line for mark in ("ERROR", "WARNING", "!!!")):
                say(line, err)
