"""The `nodes:` list of the inventory text, read and edited line by line.

A large inventory is mostly its nodes, one flow mapping a line, as the editing verbs write them:

    nodes:
      - {name: node01, mac: "52:54:00:12:34:01", ip: 192.168.0.11}  # a comment
      # a comment line
      - {name: node03, mac: ["52:54:00:12:34:03", "52:54:00:12:34:13"], ip: 192.168.0.13}

Composing such a list with ruamel costs tens of microseconds a node (its round trip far more);
reading it here costs one regular expression match a line. `find_nodes` takes the fast road only
when the text has a shape whose meaning is certain, and says None otherwise, for the caller to
use ruamel for the whole file:

* no character ruamel treats as a line break besides "\\n" (CR, NEL, U+2028, U+2029), no
  character YAML forbids (ruamel's Reader.NON_PRINTABLE), no directive line ("%YAML");
* exactly one line `nodes:` at column 0 (a comment after it allowed), followed by item lines
  of one indentation, blank lines and comment lines, ending at the end of the text or at a line
  that starts at column 0 and is neither an item nor a comment;
* every item one flow mapping on its line: keys among the node fields, each once; values
  double-quoted or single-quoted scalars of printable ASCII without escapes, plain scalars of
  [A-Za-z0-9._/=+-] (starting with a letter, digit or '/') that YAML resolves to a string (the
  loader's own resolver decides), or flow lists of those;
* the rest of the text (the item lines taken out) parses, with the safe loader, to a mapping
  whose `nodes` is null.

The parsed entries are then exactly the list the safe loader builds for the whole text (a
property test compares them, tests/test_nodelines.py). The edits (add_entry, set_entry,
remove_entry) change one item line and give the new text with the entries it parses to, or
None when the result would need what this module does not write (then ruamel's round trip
does the edit)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ruamel.yaml.reader import Reader

from clustcontrol.errors import InvalidInputError

#: The keys an item may have (the Node model's fields): anything else is ruamel's to read.
NODE_KEYS = frozenset({"name", "mac", "ip", "image", "disk_layout", "kernel_args", "boot"})

_PLAIN = r"[A-Za-z0-9/][A-Za-z0-9._/=+-]*"
_DOUBLE = r'"[ !#-\[\]-~]*"'
_SINGLE = r"'[ -&(-~]*'"
_SCALAR = rf"(?:{_PLAIN}|{_DOUBLE}|{_SINGLE})"
_LIST = rf"\[ *(?:{_SCALAR}(?: *, *{_SCALAR})*)? *\]"
_PAIR = re.compile(rf"([a-z_]+): +({_SCALAR}|{_LIST})")
_SCALAR_RE = re.compile(_SCALAR)
_ITEM = re.compile(
    rf"( *)- +\{{ *((?:[a-z_]+): +(?:{_SCALAR}|{_LIST})"
    rf"(?: *, *(?:[a-z_]+): +(?:{_SCALAR}|{_LIST}))*) *\}}( +#.*| *)"
)
_BLANK_OR_COMMENT = re.compile(r" *(?:#.*)?")
_NODES_KEY = re.compile(r"nodes:(?: +#.*| *)")
_BREAKS = ("\r", "\x85", "\u2028", "\u2029")


class _Resolver:
    """Whether a plain scalar is a string to the safe loader: the implicit resolvers of the
    store's resolver (the same class, the same YAML version), looked up as
    VersionedResolver.resolve does."""

    def __init__(self) -> None:
        from clustcontrol.inventory.store import _FixedVersionResolver

        resolver = _FixedVersionResolver()
        assert not resolver.yaml_path_resolvers
        table = resolver.versioned_resolver

        def compiled(rx: Any) -> re.Pattern[str]:
            # ruamel keeps its patterns behind a lazy wrapper that costs an attribute lookup
            # a use: the same pattern, compiled here.
            return re.compile(rx.pattern, rx.flags)

        anywhere = [compiled(rx) for _tag, rx in table.get(None, [])]
        self.first: dict[str, list[re.Pattern[str]]] = {
            key: [compiled(rx) for _tag, rx in rules] + anywhere
            for key, rules in table.items()
            if key is not None
        }
        self.anywhere = anywhere

    def is_string(self, value: str) -> bool:
        rules = self.first.get(value[0], self.anywhere)
        return not any(rx.match(value) for rx in rules)


_RESOLVER: _Resolver | None = None


def _resolver() -> _Resolver:
    global _RESOLVER
    if _RESOLVER is None:
        _RESOLVER = _Resolver()
    return _RESOLVER


def _scalar(raw: str) -> str | None:
    """The string a scalar token stands for, or None when it is plain and YAML reads it as
    something else (an int, a date, null ...)."""
    if raw[0] in "\"'":
        return raw[1:-1]
    return raw if _resolver().is_string(raw) else None


def _value(raw: str) -> str | list[str] | None:
    if raw[0] != "[":
        return _scalar(raw)
    values = [_scalar(m.group()) for m in _SCALAR_RE.finditer(raw, 1, len(raw) - 1)]
    if any(v is None for v in values):
        return None
    return [v for v in values if v is not None]


@dataclass
class Item:
    """One item line: its indentation, its pairs as (key, raw value text) in order, the
    comment after it (with its leading blanks, or ""), and the entry it parses to."""

    indent: str
    pairs: list[tuple[str, str]]
    comment: str
    entry: dict[str, Any]

    def line(self) -> str:
        """The item as a line (without its newline): `INDENT- {KEY: VALUE, ...}COMMENT`."""
        body = ", ".join(f"{key}: {raw}" for key, raw in self.pairs)
        return f"{self.indent}- {{{body}}}{self.comment}"


def parse_item(line: str) -> Item | None:
    """An item line as an Item, or None when it is not one of the shapes this module reads
    (see the module docstring): then ruamel reads the file."""
    match = _ITEM.fullmatch(line)
    if match is None:
        return None
    # After the whole line matched, the pairs follow one another: each match of _PAIR from
    # the end of the last is the one the line's match used (a value ends at a character that
    # cannot continue it).
    pairs: list[tuple[str, str]] = _PAIR.findall(match.group(2))
    entry: dict[str, Any] = {}
    for key, raw in pairs:
        if key not in NODE_KEYS or key in entry:
            return None
        value = _value(raw)
        if value is None:
            return None
        entry[key] = value
    return Item(match.group(1), pairs, match.group(3), entry)


@dataclass
class NodesText:
    """The inventory text split around its `nodes:` list (see find_nodes).

    lines: the text's lines without their "\\n" (the last one may be "" when the text ends
    with a newline); key: the index of the `nodes:` line; items: the index of each item line
    in `lines`, in order; parsed: the Item of each; rest: the document without the item lines,
    as the safe loader reads it (a dict, its "nodes" None)."""

    lines: list[str]
    key: int
    items: list[int]
    parsed: list[Item]
    rest: dict[str, Any]

    def data(self) -> dict[str, Any]:
        """The whole document as the safe loader reads it: `rest` with the entries as its
        nodes (a new dict; the entries are shared)."""
        return {**self.rest, "nodes": [item.entry for item in self.parsed]}

    def text(self) -> str:
        """The text, joined again."""
        return "\n".join(self.lines)

    def index(self, name: str) -> int:
        """The position (in `items`) of the node called `name`, compared lower-cased as
        edit._find_node does. Raises InvalidInputError "nodes.NAME: no such node"."""
        wanted = name.lower()
        for position, item in enumerate(self.parsed):
            if str(item.entry.get("name", "")).lower() == wanted:
                return position
        raise InvalidInputError([f"nodes.{name}: no such node"])


def _rest_data(lines: list[str], items: list[int]) -> dict[str, Any] | None:
    from ruamel.yaml.error import YAMLError

    from clustcontrol.inventory.store import _safe_yaml

    skip = set(items)
    rest = "\n".join(line for i, line in enumerate(lines) if i not in skip)
    try:
        data = _safe_yaml().load(rest)
    except YAMLError:
        return None
    if not isinstance(data, dict) or "nodes" not in data or data["nodes"] is not None:
        return None
    return data


def find_nodes(text: str) -> NodesText | None:
    """The text's `nodes:` list read line by line, or None when the text has not the shape
    described in the module docstring (at least one item): then ruamel reads it whole.

    Never raises for any text: a text that is not YAML gives None too."""
    if any(b in text for b in _BREAKS) or Reader.NON_PRINTABLE.search(text):
        return None
    lines = text.split("\n")
    keys = [i for i, line in enumerate(lines) if line.startswith("nodes:")]
    if len(keys) != 1 or not _NODES_KEY.fullmatch(lines[keys[0]]):
        return None
    if any(line.startswith("%") for line in lines):
        return None
    items: list[int] = []
    parsed: list[Item] = []
    for i in range(keys[0] + 1, len(lines)):
        line = lines[i]
        if _BLANK_OR_COMMENT.fullmatch(line):
            continue
        if line.lstrip(" ").startswith("-"):
            item = parse_item(line)
            if item is None or (parsed and item.indent != parsed[0].indent):
                return None
            items.append(i)
            parsed.append(item)
            continue
        if line[:1] in (" ", "-"):
            return None  # indented content that is no item: ruamel's to read
        break
    if not items:
        return None
    rest = _rest_data(lines, items)
    if rest is None:
        return None
    return NodesText(lines, keys[0], items, parsed, rest)


def _raw(key: str, value: str) -> str | None:
    """A value as an item writes it, as ruamel's round trip does (edit._quoted): a MAC
    double-quoted, several MACs (joined by ",") a flow list of double-quoted ones, anything
    else plain, or double-quoted when plain it would not be a string (ruamel quotes it
    too). None when neither reads back as the same string."""
    if key == "mac":
        raws = [f'"{m}"' for m in value.split(",")]
        if not all(re.fullmatch(_DOUBLE, r) for r in raws):
            return None
        return raws[0] if len(raws) == 1 else f"[{', '.join(raws)}]"
    if re.fullmatch(_PLAIN, value) and _resolver().is_string(value):
        return value
    quoted = f'"{value}"'
    return quoted if re.fullmatch(_DOUBLE, quoted) else None


def _item(indent: str, pairs: list[tuple[str, str]], comment: str) -> Item | None:
    line = Item(indent, pairs, comment, {}).line()
    return parse_item(line)


def add_entry(nodes: NodesText, fields: Mapping[str, str | None]) -> NodesText | None:
    """The text with a node appended after the last item line, as edit.add_node appends it
    (fields: NodeEntry.fields(); None and "" are left out). Raises InvalidInputError when a
    node of that name exists (compared lower-cased). None when a value would need quoting this
    module does not write."""
    name = str(fields["name"])
    wanted = name.lower()
    if any(str(i.entry.get("name", "")).lower() == wanted for i in nodes.parsed):
        raise InvalidInputError([f"nodes.{name}.name: {name!r} is defined more than once"])
    pairs = []
    for key, value in fields.items():
        if value in (None, ""):
            continue
        raw = _raw(key, str(value))
        if raw is None:
            return None
        pairs.append((key, raw))
    item = _item(nodes.parsed[0].indent, pairs, "")
    if item is None:
        return None
    at = nodes.items[-1] + 1
    lines = [*nodes.lines[:at], item.line(), *nodes.lines[at:]]
    items = [*nodes.items, at]
    return NodesText(lines, nodes.key, items, [*nodes.parsed, item], nodes.rest)


def set_entry(nodes: NodesText, name: str, changes: Mapping[str, str | None]) -> NodesText | None:
    """The text with the node called `name` changed as edit.set_node changes it: a value
    None leaves the field alone, "" removes it, another replaces it in place (a new field
    goes last). Raises InvalidInputError when there is no such node; None when a value would
    need quoting this module does not write."""
    position = nodes.index(name)
    old = nodes.parsed[position]
    pairs = list(old.pairs)
    for key, value in changes.items():
        if value is None:
            continue
        if value == "":
            pairs = [(k, r) for k, r in pairs if k != key]
            continue
        raw = _raw(key, value)
        if raw is None:
            return None
        keys = [k for k, _r in pairs]
        if key in keys:
            pairs[keys.index(key)] = (key, raw)
        else:
            pairs.append((key, raw))
    if not pairs:
        return None  # an empty mapping: ruamel's to write
    item = _item(old.indent, pairs, old.comment)
    if item is None:
        return None
    lines = list(nodes.lines)
    lines[nodes.items[position]] = item.line()
    parsed = list(nodes.parsed)
    parsed[position] = item
    return NodesText(lines, nodes.key, nodes.items, parsed, nodes.rest)


def remove_entry(nodes: NodesText, name: str) -> NodesText | None:
    """The text without the item line of the node called `name` (its comment after it goes
    too; comment lines stay), as edit.remove_node removes it. Raises InvalidInputError when
    there is no such node. None when it is the update node (edit.remove_node clears
    update_node.node too: ruamel's to write). The last node leaves `nodes: []`."""
    position = nodes.index(name)
    update = nodes.rest.get("update_node")
    if isinstance(update, dict) and str(update.get("node") or "").lower() == name.lower():
        return None
    at = nodes.items[position]
    lines = nodes.lines[:at] + nodes.lines[at + 1 :]
    if len(nodes.items) == 1:
        # The last node: an empty flow list, as the round trip writes it.
        lines[nodes.key] = "nodes: []" + nodes.lines[nodes.key].removeprefix("nodes:")
    items = [i if i < at else i - 1 for i in nodes.items if i != at]
    parsed = nodes.parsed[:position] + nodes.parsed[position + 1 :]
    return NodesText(lines, nodes.key, items, parsed, nodes.rest)
