"""`clustcontrol update-node ...`: which node boots its image read-write."""

from __future__ import annotations

import click

from clustcontrol.cli.common import State, out, output_option, pass_state, print_rows
from clustcontrol.inventory import edit
from clustcontrol.inventory.store import edit_inventory


@click.group("update-node")
def update_node() -> None:
    """The update node: boots its image read-write over NFS."""


@update_node.command("set")
@click.argument("name")
@click.option("--image", default=None, help="Image it edits [the default image].")
@pass_state
def update_node_set(state: State, name: str, image: str | None) -> None:
    """Make NAME the update node: its MAC gets the update address at its next boot.

    \b
    Example:
      clustcontrol update-node set node01 && clustcontrol apply --reload
    """
    with edit_inventory(state.config) as document:
        edit.set_update_node(document, name, image)
    inv = state.inventory()
    out.print(f"update node: {name.lower()} -> {inv.update_ip} (image {inv.update_image_name})")


@update_node.command("clear")
@pass_state
def update_node_clear(state: State) -> None:
    """No node boots as the update node.

    \b
    Example:
      clustcontrol update-node clear
    """
    with edit_inventory(state.config) as document:
        edit.set_update_node(document, None, None)
    out.print("update node cleared")


@update_node.command("show")
@output_option
@pass_state
def update_node_show(state: State, output: str) -> None:
    """Show the update node's address, image and node.

    \b
    Example:
      clustcontrol update-node show
    """
    inv = state.inventory()
    row = {"ip": str(inv.update_ip), "image": inv.update_image_name, "node": inv.update_node.node}
    print_rows(output == "json", [row], "update node", ["ip", "image", "node"])
