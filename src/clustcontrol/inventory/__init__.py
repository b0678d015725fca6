"""The inventory: model, checks, loading and saving."""

from clustcontrol.inventory.model import Inventory, Node
from clustcontrol.inventory.store import load_inventory, parse_inventory

__all__ = ["Inventory", "Node", "load_inventory", "parse_inventory"]
