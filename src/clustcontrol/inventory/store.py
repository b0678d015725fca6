"""Load and save the inventory file.

Reads use ruamel's fast safe loader; edits use its round-trip mode so that an administrator's
comments and ordering survive `clustcontrol node add` and friends. Every save validates the
edited document as a whole first and writes atomically, so a failed edit writes nothing."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.resolver import VersionedResolver

from clustcontrol.errors import ClustcontrolError, InvalidInputError
from clustcontrol.fsutil import atomic_write
from clustcontrol.gcpause import gc_paused
from clustcontrol.inventory.checks import check_inventory
from clustcontrol.inventory.model import Inventory

DEFAULT_CONFIG = Path("/etc/clustcontrol/cluster.yaml")
CONFIG_ENV = "CLUSTCONTROL_CONFIG"


def config_path(explicit: Path | None) -> Path:
    """The inventory file to use: `explicit` (--config) if given, else $CLUSTCONTROL_CONFIG if
    set and not empty, else /etc/clustcontrol/cluster.yaml. Nothing is checked on disk."""
    if explicit is not None:
        return explicit
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else DEFAULT_CONFIG


def _part(name: str) -> str:
    """A key or node name as a part of a location: as it is when plain (printable ASCII, no
    blank), else its repr, so that a problem stays one line whatever the key holds."""
    return name if name.isascii() and name.isprintable() and " " not in name else repr(name)


def _loc(data: Any, loc: tuple[int | str, ...]) -> str:
    """Name an error location by path, with node names instead of list indexes. Keys and names
    are the raw input: parts that are not plain are shown by repr (see _part)."""
    parts: list[str] = []
    cursor = data
    for item in loc:
        if isinstance(item, int) and isinstance(cursor, list) and 0 <= item < len(cursor):
            entry = cursor[item]
            name = entry.get("name") if isinstance(entry, dict) else None
            if isinstance(name, str) and name:
                parts.append(_part(name))
            elif parts:
                parts[-1] += f"[{item}]"
            else:
                parts.append(f"[{item}]")
            cursor = entry
            continue
        parts.append(_part(str(item)))
        cursor = cursor.get(item) if isinstance(cursor, dict) else None
    return ".".join(parts) or "(top level)"


def _describe(error: Any, data: Any) -> str:
    where = _loc(data, tuple(error["loc"]))
    message = str(error["msg"])
    if message.startswith("Value error, "):
        # Our validators already name the value.
        return f"{where}: {message.removeprefix('Value error, ')}"
    if error["type"] == "missing":
        return f"{where}: required field is missing"
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown field"
    return f"{where}: {error['input']!r}: {message}"


def parse_inventory(data: Any, source: str = "inventory") -> Inventory:
    """Validate a plain-data document; raise InvalidInputError listing every problem.

    `data` is the parsed YAML (dicts, lists, scalars), `source` the name used when the document
    is not a mapping. Field errors are named by their path, nodes by name (e.g.
    "nodes.node01.ip: ..."); when the fields are valid, the cross-field checks of checks.py
    run. Returns the frozen Inventory."""
    if not isinstance(data, dict):
        raise InvalidInputError([f"{source}: the document must be a mapping with a 'cluster' key"])
    try:
        inventory = Inventory.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(err, data) for err in exc.errors(include_url=False)]
        raise InvalidInputError(lines) from None
    problems = check_inventory(inventory)
    if problems:
        raise InvalidInputError(problems)
    return inventory


def _yaml_error(path: Path, exc: YAMLError) -> InvalidInputError:
    if isinstance(exc, MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return InvalidInputError([f"{path}:{mark.line + 1}: {exc.problem}"])
    return InvalidInputError([f"{path}: {str(exc).splitlines()[0]}"])


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise ClustcontrolError(
            f"inventory {path} does not exist",
            hint="create one with: clustcontrol --config FILE init --domain ... --network ... "
            "--master-ip ...",
        ) from None
    except OSError as exc:
        raise ClustcontrolError(f"cannot read inventory {path}: {exc.strerror}") from None


class _FixedVersionResolver(VersionedResolver):
    """ruamel's resolver, looking its rules up once per document instead of once per scalar.

    With the C parser the YAML version is fixed for the whole load (a %YAML directive never
    reaches the resolver), so the lookup always has the same answer."""

    @cached_property
    def versioned_resolver(self) -> Any:
        return super().versioned_resolver


_STR_TAG = "tag:yaml.org,2002:str"


class _SafeConstructor(SafeConstructor):
    """ruamel's safe constructor with a short cut for plain strings, most of an inventory.

    A string is immutable, so it needs none of the bookkeeping that keeps an aliased (or
    recursive) collection one object."""

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        if node.__class__ is ScalarNode and node.tag == _STR_TAG:
            return node.value
        return super().construct_object(node, deep)


def _safe_yaml() -> YAML:
    yaml = YAML(typ="safe", pure=False)
    yaml.Resolver = _FixedVersionResolver
    yaml.Constructor = _SafeConstructor
    return yaml


def load_inventory(path: Path) -> Inventory:
    """Read, parse (YAML 1.2, safe loader) and validate the inventory file at `path`.

    Raises ClustcontrolError when the file does not exist or cannot be read, and
    InvalidInputError for a YAML syntax error (with its line) or an invalid inventory (every
    problem, see parse_inventory)."""
    text = _read_text(path)
    with gc_paused():
        try:
            data = _safe_yaml().load(text)
        except YAMLError as exc:
            raise _yaml_error(path, exc) from None
        return parse_inventory(data, str(path))


def _round_trip() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    return yaml


def to_plain(node: Any) -> Any:
    """Round-trip containers -> plain dicts and lists (what pydantic validates)."""
    if isinstance(node, dict):
        return {str(k): to_plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [to_plain(v) for v in node]
    return node


def dump_document(document: Any) -> str:
    """A round-trip document as YAML text, comments, quotes and key order kept."""
    buffer = io.StringIO()
    _round_trip().dump(document, buffer)
    return buffer.getvalue()


def load_document(text: str, path: Path) -> Any:
    """Parse YAML text in round-trip mode (ruamel CommentedMap/CommentedSeq, comments kept).

    `path` only names the file in errors: InvalidInputError with the line of a syntax error.
    The document is not validated."""
    try:
        return _round_trip().load(text)
    except YAMLError as exc:
        raise _yaml_error(path, exc) from None


@contextmanager
def edit_inventory(path: Path) -> Iterator[Any]:
    """Yield the round-trip document; on normal exit validate it whole and save it atomically.

    Nothing is written when the block raises or the edited document does not validate.
    Raises ClustcontrolError when the file cannot be read, InvalidInputError when it (before
    or after the edit) is not valid, and OSError when it cannot be written."""
    document = load_document(_read_text(path), path)
    yield document
    parse_inventory(to_plain(document), str(path))
    atomic_write(path, dump_document(document).encode())


def save_new_document(path: Path, text: str) -> None:
    """Validate a freshly written document (e.g. from `init`) and save it atomically.

    A new file gets mode 0644 (an existing one keeps its mode). Raises InvalidInputError when
    `text` is not a valid inventory (nothing is written) and OSError when it cannot be
    written."""
    parse_inventory(to_plain(load_document(text, path)), str(path))
    atomic_write(path, text.encode(), mode=0o644)
