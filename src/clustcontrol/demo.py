"""`clustcontrol demo`: a demo cluster in a scratch directory, built with the real verbs."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from clustcontrol.apply import Installer, apply_tree, write_tree
from clustcontrol.inventory import edit
from clustcontrol.inventory.normalize import NodeEntry
from clustcontrol.inventory.store import edit_inventory, load_inventory, save_new_document
from clustcontrol.render import RenderContext, render_all
from clustcontrol.render.base import render_template

DOMAIN = "rostclust"
NETWORK = "192.168.0.0/24"
MASTER_IP = "192.168.0.1"


def build_demo_inventory(config: Path, count: int) -> None:
    """The seed's cluster: rostclust on 192.168.0.0/24, two standard roots, one update node.

    Writes the inventory file `config` with `count` nodes node01.. (MAC 52:54:00:00:00:NN,
    address 192.168.0.10+N, every fourth on the "gpu" image); node01 is the update node (when
    count > 0). Raises InvalidInputError when the result does not validate (e.g. a count too
    large for the /24)."""
    text = render_template(
        "inventory/cluster.yaml.j2",
        domain=DOMAIN,
        network=NETWORK,
        master_ip=MASTER_IP,
        master_name="master",
        image_root="/srv/nfs4/clusternoderoot",
    ).decode()
    save_new_document(config, text)
    with edit_inventory(config) as document:
        edit.add_image(
            document,
            "gpu",
            {"root": "/srv/nfs4/gpunoderoot", "transport": "rsync", "persistent": ["/var/lib/gpu"]},
        )
        rows = [
            NodeEntry(
                name=f"node{i:02d}",
                mac=f"52:54:00:00:00:{i:02x}",
                ip=f"192.168.0.{10 + i}",
                image="gpu" if i % 4 == 0 else None,
            )
            for i in range(1, count + 1)
        ]
        edit.import_nodes(document, rows)
        if count:
            edit.set_update_node(document, "node01", None)


def run_demo(directory: Path | None, count: int, console: Console) -> Path:
    """Build the demo cluster with `count` nodes in `directory` (a new temp directory if None).

    Writes DIR/cluster.yaml (replacing an old one), renders every output into DIR/rendered,
    applies twice under DIR/root (the second apply changes nothing) and prints a summary table
    to `console`. Returns the directory. Errors of the steps (ClustcontrolError, OSError)
    propagate."""
    base = directory or Path(tempfile.mkdtemp(prefix="clustcontrol-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    config = base / "cluster.yaml"
    if config.exists():
        config.unlink()
    build_demo_inventory(config, count)
    inv = load_inventory(config)
    root = base / "root"
    tree = render_all(RenderContext(inv, previous=Installer(root).read))
    write_tree(tree, base / "rendered")
    first = apply_tree(inv, tree, root)
    again = apply_tree(inv, render_all(RenderContext(inv, previous=Installer(root).read)), root)

    per_service = Counter(o.service for o in tree)
    table = Table(
        title=f"demo cluster {DOMAIN} ({NETWORK}): {len(inv.nodes)} nodes", title_justify="left"
    )
    table.add_column("service")
    table.add_column("files", justify="right")
    table.add_column("example")
    for service, number in sorted(per_service.items()):
        example = next(o.path for o in tree if o.service == service)
        table.add_row(service, str(number), example)
    console.print(table)
    for check in first.checks:
        console.print(f"check {check.program} {check.target}: {check.status}")
    console.print(f"inventory:        {config}")
    console.print(f"rendered (all):   {base / 'rendered'}")
    console.print(f"applied under:    {root} ({len(first.changes)} files installed)")
    console.print(f"second apply:     {len(again.changes)} files changed (nothing to do)")
    return base
