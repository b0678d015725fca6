"""Edits of the round-trip inventory document used by the CLI verbs (comments are preserved).

Every function takes the ruamel document and changes it in place; the caller (store.edit_inventory)
validates the whole result before anything is written."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from clustcontrol.errors import InvalidInputError

NODE_FIELDS = ("name", "mac", "ip", "image", "disk_layout")


def _section(document: Any, key: str, factory: type) -> Any:
    value = document.get(key)
    if value is None:
        value = factory()
        document[key] = value
    if isinstance(value, CommentedSeq | CommentedMap) and value.fa.flow_style():
        value.fa.set_block_style()
    return value


def _quoted(key: str, value: str) -> str:
    # A bare MAC is a base-60 integer to YAML 1.1 readers and breaks flow mappings: quote it.
    return DoubleQuotedScalarString(value) if key == "mac" else value


def _node_map(fields: dict[str, str | None]) -> CommentedMap:
    entry = CommentedMap((k, _quoted(k, v)) for k, v in fields.items() if v not in (None, ""))
    entry.fa.set_flow_style()
    return entry


def _find_node(document: Any, name: str) -> tuple[int, Any]:
    for index, entry in enumerate(document.get("nodes") or []):
        if isinstance(entry, dict) and str(entry.get("name", "")).lower() == name.lower():
            return index, entry
    raise InvalidInputError([f"nodes.{name}: no such node"])


def add_node(document: Any, name: str, mac: str, ip: str, image: str | None) -> None:
    nodes = _section(document, "nodes", CommentedSeq)
    if any(str(e.get("name", "")).lower() == name.lower() for e in nodes if isinstance(e, dict)):
        raise InvalidInputError([f"nodes.{name}.name: {name!r} is defined more than once"])
    nodes.append(_node_map({"name": name, "mac": mac, "ip": ip, "image": image}))


def set_node(document: Any, name: str, changes: dict[str, str | None]) -> None:
    _index, entry = _find_node(document, name)
    for key, value in changes.items():
        if value is None:
            continue
        if value == "":
            entry.pop(key, None)
        else:
            entry[key] = _quoted(key, value)


def remove_node(document: Any, name: str) -> None:
    index, _entry = _find_node(document, name)
    del document["nodes"][index]
    update = document.get("update_node")
    if isinstance(update, dict) and str(update.get("node") or "").lower() == name.lower():
        update["node"] = None


def read_node_csv(path: Path) -> list[dict[str, str | None]]:
    """Rows of a `name,mac,ip,image` CSV file (image may be empty)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidInputError([f"{path}: cannot read: {exc.strerror}"]) from None
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in reader.fieldnames or []]
    if header[:3] != ["name", "mac", "ip"] or not set(header) <= {"name", "mac", "ip", "image"}:
        raise InvalidInputError(
            [f"{path}:1: header must be 'name,mac,ip,image', not {','.join(header)!r}"]
        )
    rows: list[dict[str, str | None]] = []
    problems: list[str] = []
    for number, row in enumerate(reader, start=2):
        clean = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        if None in row or any(not clean.get(k) for k in ("name", "mac", "ip")):
            problems.append(f"{path}:{number}: expected name,mac,ip[,image], got {row!r}")
            continue
        rows.append(
            {
                "name": clean["name"],
                "mac": clean["mac"],
                "ip": clean["ip"],
                "image": clean.get("image") or None,
            }
        )
    if problems:
        raise InvalidInputError(problems)
    return rows


def import_nodes(document: Any, rows: list[dict[str, str | None]]) -> tuple[int, int]:
    """Add new nodes and update existing ones (by name); returns (added, updated)."""
    nodes = _section(document, "nodes", CommentedSeq)
    by_name = {str(e.get("name", "")).lower(): e for e in nodes if isinstance(e, dict)}
    added = updated = 0
    for row in rows:
        name = str(row["name"])
        existing = by_name.get(name.lower())
        if existing is None:
            entry = _node_map(row)
            nodes.append(entry)
            by_name[name.lower()] = entry
            added += 1
        else:
            existing["mac"] = _quoted("mac", str(row["mac"]))
            existing["ip"] = row["ip"]
            if row.get("image"):
                existing["image"] = row["image"]
            else:
                existing.pop("image", None)
            updated += 1
    return added, updated


def add_image(document: Any, name: str, fields: dict[str, Any]) -> None:
    images = _section(document, "images", CommentedMap)
    if name in images:
        raise InvalidInputError([f"images.{name}: already defined"])
    images[name] = CommentedMap((k, v) for k, v in fields.items() if v not in (None, [], ""))


def remove_image(document: Any, name: str) -> None:
    images = document.get("images") or {}
    if name not in images:
        raise InvalidInputError([f"images.{name}: no such image"])
    del images[name]


def set_update_node(document: Any, name: str | None, image: str | None) -> None:
    if name is not None:
        _find_node(document, name)
    update = _section(document, "update_node", CommentedMap)
    update["node"] = name.lower() if name else None
    if image is not None:
        update["image"] = image
