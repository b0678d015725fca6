"""Edits of the round-trip inventory document used by the CLI verbs (comments are preserved).

Every function takes the ruamel document and changes it in place; the caller (store.edit_inventory)
validates the whole result before anything is written. Values come checked and in canonical form
from inventory.normalize."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from clustcontrol.errors import InvalidInputError
from clustcontrol.inventory.normalize import NodeEntry, defined_image
from clustcontrol.inventory.types import shown

NODE_FIELDS = ("name", "mac", "ip", "image", "disk_layout")


def _section(document: Any, key: str, factory: type) -> Any:
    """The document's top-level `key` (a CommentedMap or CommentedSeq, `factory`), made when
    missing, in block style. Raises InvalidInputError when it holds something else (an
    `update_node: x`, a mapping where the nodes' list belongs)."""
    value = document.get(key)
    if value is None:
        value = factory()
        document[key] = value
    if not isinstance(value, factory):
        kind = "a mapping" if factory is CommentedMap else "a list"
        raise InvalidInputError([f"{key}: must be {kind}, not {shown(value)}"])
    if isinstance(value, CommentedSeq | CommentedMap) and value.fa.flow_style():
        value.fa.set_block_style()
    return value


def _quoted(key: str, value: str) -> Any:
    """A field's value as the document holds it. A bare MAC is a base-60 integer to YAML 1.1
    readers and breaks flow mappings: quoted. Several MACs (normalize.mac_addresses joins them
    with ',') become a flow list of quoted ones."""
    if key != "mac":
        return value
    if "," not in value:
        return DoubleQuotedScalarString(value)
    macs = CommentedSeq(DoubleQuotedScalarString(m) for m in value.split(","))
    macs.fa.set_flow_style()
    return macs


def _node_map(fields: Mapping[str, str | None]) -> CommentedMap:
    entry = CommentedMap((k, _quoted(k, v)) for k, v in fields.items() if v not in (None, ""))
    entry.fa.set_flow_style()
    return entry


def _find_node(document: Any, name: str) -> tuple[int, Any]:
    for index, entry in enumerate(document.get("nodes") or []):
        if isinstance(entry, dict) and str(entry.get("name", "")).lower() == name.lower():
            return index, entry
    raise InvalidInputError([f"nodes.{name}: no such node"])


def add_node(document: Any, node: NodeEntry) -> None:
    """Append node to the document's `nodes` list as a one-line flow mapping.

    Raises InvalidInputError when a node of that name (compared case-insensitively) exists."""
    name = node.name
    nodes = _section(document, "nodes", CommentedSeq)
    if any(str(e.get("name", "")).lower() == name.lower() for e in nodes if isinstance(e, dict)):
        raise InvalidInputError([f"nodes.{name}.name: {name!r} is defined more than once"])
    nodes.append(_node_map(node.fields()))


def set_node(document: Any, name: str, changes: Mapping[str, str | None]) -> None:
    """Change fields of the node called name (case-insensitive).

    changes maps a node field to its new value: None leaves the field alone, '' removes it.
    Raises InvalidInputError when there is no such node."""
    _index, entry = _find_node(document, name)
    for key, value in changes.items():
        if value is None:
            continue
        if value == "":
            entry.pop(key, None)
        else:
            entry[key] = _quoted(key, value)


def remove_node(document: Any, name: str) -> None:
    """Remove the node called name (case-insensitive); clear it as update node if it was one.

    Raises InvalidInputError when there is no such node."""
    index, _entry = _find_node(document, name)
    del document["nodes"][index]
    update = document.get("update_node")
    if isinstance(update, dict) and str(update.get("node") or "").lower() == name.lower():
        update["node"] = None


def import_nodes(document: Any, rows: Iterable[NodeEntry]) -> tuple[int, int]:
    """Add new nodes and update existing ones, matched by name (case-insensitive).

    An existing node gets the row's MAC, address and image (no image: the field is removed, so
    the default image applies); its other fields stay. Returns (added, updated) counts."""
    nodes = _section(document, "nodes", CommentedSeq)
    by_name = {str(e.get("name", "")).lower(): e for e in nodes if isinstance(e, dict)}
    added = updated = 0
    for row in rows:
        name = row.name
        existing = by_name.get(name.lower())
        if existing is None:
            entry = _node_map(row.fields())
            nodes.append(entry)
            by_name[name.lower()] = entry
            added += 1
        else:
            existing["mac"] = _quoted("mac", row.mac)
            existing["ip"] = row.ip
            if row.image:
                existing["image"] = row.image
            else:
                existing.pop("image", None)
            updated += 1
    return added, updated


def add_image(document: Any, name: str, fields: Mapping[str, Any]) -> None:
    """Add the image name to the document's `images` mapping.

    fields maps image fields (root, kernel, initrd, disk_layout, persistent, kernel_args,
    transport) to values; None, '' and [] are left out so that the defaults apply.
    Raises InvalidInputError when the image exists."""
    images = _section(document, "images", CommentedMap)
    if name in images:
        raise InvalidInputError([f"images.{name}: already defined"])
    images[name] = CommentedMap((k, v) for k, v in fields.items() if v not in (None, [], ""))


def remove_image(document: Any, name: str, *, force: bool = False) -> list[str]:
    """Remove the image name; raises InvalidInputError when there is no such image
    (normalize.defined_image).

    Nodes naming it make the validation of the edited document fail. Nodes naming no image
    use the default image (default_image, else the first image): when that is `name`, they
    would move to another image without a word, so the removal is refused naming them
    (InvalidInputError) unless `force`. Returns the nodes that moved to another image."""
    images = document.get("images") or {}
    key = defined_image(name, images)
    implicit = [
        str(node.get("name"))
        for node in document.get("nodes") or []
        if isinstance(node, dict) and not node.get("image")
    ]
    default = document.get("default_image") or next(iter(images))
    moved = implicit if key == default and len(images) > 1 else []
    if moved and not force:
        shown = ", ".join(moved[:8]) + (f" and {len(moved) - 8} more" if len(moved) > 8 else "")
        raise InvalidInputError(
            [f"images.{key}: the default image of {len(moved)} node(s) that name none: {shown}"],
            hint=f"give them an image first (node set NAME --image IMAGE), or --force to move "
            f"them to {next(k for k in images if k != key)!r}",
        )
    del images[key]
    return moved


def set_update_node(document: Any, name: str | None, image: str | None) -> None:
    """Make the node name (stored lower-cased) the update node; None clears it.

    image: the image the update node boots read-write; None leaves the setting alone.
    Raises InvalidInputError when there is no node called name."""
    if name is not None:
        _find_node(document, name)
    update = _section(document, "update_node", CommentedMap)
    update["node"] = name.lower() if name else None
    if image is not None:
        update["image"] = image
