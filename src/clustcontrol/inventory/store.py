"""Load and save the inventory file.

Reads use ruamel's fast safe loader; edits use its round-trip mode so that an administrator's
comments and ordering survive `clustcontrol node add` and friends. Every save validates the
edited document as a whole first and writes atomically, so a failed edit writes nothing."""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Callable, Iterator
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

from clustcontrol.contract import CONTROL_DIR
from clustcontrol.errors import ClustcontrolError, InvalidInputError
from clustcontrol.fsutil import atomic_write, waiting_lock
from clustcontrol.gcpause import gc_paused
from clustcontrol.inventory.checks import check_inventory
from clustcontrol.inventory.model import Inventory
from clustcontrol.inventory.nodelines import NodesText, find_nodes
from clustcontrol.inventory.types import shown

#: The default inventory: in a directory of its own that only root reads (init makes it 0700,
#: the file 0600), outside every path the master serves. The control directory
#: (contract.CONTROL_DIR, /etc/clustcontrol) is bind-mounted into every standard, exported and
#: baked into the initramfs the nodes fetch over TFTP: the inventory never lives there.
DEFAULT_CONFIG = Path("/etc/clustcontrol-master/cluster.yaml")
#: Where the inventory was by default before: inside the control directory every node reads.
OLD_DEFAULT_CONFIG = Path(CONTROL_DIR) / "cluster.yaml"
CONFIG_ENV = "CLUSTCONTROL_CONFIG"
#: Modes `init` gives a new inventory and the directory it creates for it.
CONFIG_MODE = 0o600
CONFIG_DIR_MODE = 0o700
PARENT_DIR_MODE = 0o755
#: How long an inventory edit waits for another to finish, in seconds (edit_inventory).
EDIT_LOCK_WAIT = 60.0


def config_path(
    explicit: Path | None, *, default: Path = DEFAULT_CONFIG, old: Path = OLD_DEFAULT_CONFIG
) -> Path:
    """The inventory file to use: `explicit` (--config) if given, else $CLUSTCONTROL_CONFIG if
    set and not empty, else `default` (DEFAULT_CONFIG).

    Falling back to the default, an inventory still at `old` (OLD_DEFAULT_CONFIG, inside the
    control directory the nodes read) is refused rather than moved behind the administrator's
    back: InvalidInputError naming it, with the commands that move it (or, when the default
    exists too, that remove the old copy) as the hint. Nothing else is checked on disk."""
    if explicit is not None:
        return explicit
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    if old.exists() or old.is_symlink():
        served = f"inside the control directory {old.parent}, which every node reads"
        if default.exists():
            raise InvalidInputError(
                [f"{old}: an old copy of the inventory lies {served}; the inventory is {default}"],
                hint=f"remove the old copy: rm {old}",
            )
        raise InvalidInputError(
            [f"{old}: the inventory's old default location is {served}"],
            hint=f"move it (as root): install -d -m 0700 {default.parent} && mv {old} {default} "
            f"&& chmod 0600 {default}; an initramfs built meanwhile holds a copy of it: rebuild "
            "and publish them (README: Where the inventory lives)",
        )
    return default


def inventory_exposure(path: Path) -> list[str]:
    """Why someone other than root could decide what the inventory at `path` says, one line
    each (empty when nothing, or when not run as root): the file, or its directory without the
    sticky bit, writable by group or others or owned by another user (they can replace it, and
    apply installs what it renders as root). A missing file or directory says nothing."""
    if os.geteuid() != 0:
        return []
    found = []
    for where, is_dir in ((path, False), (path.parent, True)):
        try:
            st = where.stat()
        except OSError:
            continue
        mode = stat.S_IMODE(st.st_mode)
        writable = mode & (stat.S_IWGRP | stat.S_IWOTH) and not (is_dir and mode & stat.S_ISVTX)
        what = f"{'the directory of the inventory' if is_dir else 'the inventory'} {where}"
        if st.st_uid != 0:
            found.append(
                f"{what} belongs to uid {st.st_uid}: that user decides what apply installs"
            )
        elif writable:
            fix = f"chmod go-w {where}" if is_dir else f"chmod 0600 {where}"
            found.append(
                f"{what} is writable by others (mode {mode:04o}): whoever writes it decides what "
                f"apply installs as root ({fix})"
            )
    return found


def served_paths(inv: Inventory) -> list[tuple[str, str]]:
    """What the master serves to the nodes or the cluster network, as (inventory field, path):
    the control directory, the state directory (each image's generation roots lie in it), each
    image's working tree (exported read-write to the update node, bind-mounted with the control
    directory) and the TFTP root."""
    served = [
        ("cluster.control_dir", inv.cluster.control_dir),
        ("cluster.state_dir", inv.cluster.state_dir),
    ]
    served += [(f"images.{name}.root", image.root) for name, image in inv.images.items()]
    served.append(("cluster.tftp_root", inv.cluster.tftp_root))
    return served


def check_location(path: Path, inv: Inventory) -> None:
    """Refuse an inventory file that lies inside a path the master serves (served_paths), both
    resolved (symbolic links followed, as far as they exist), so no link hides it.

    Raises InvalidInputError with one line naming the inventory, the served path and its field.
    """
    where = path.resolve()
    for field, served in served_paths(inv):
        if where.is_relative_to(Path(served).resolve()):
            raise InvalidInputError(
                [
                    f"{path}: the inventory lies inside {served} ({field}), which the master "
                    "serves to the nodes"
                ],
                hint=f"keep it where only the master reads it, e.g. {DEFAULT_CONFIG}",
            )


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
        if isinstance(item, int) and not isinstance(cursor, list):
            continue  # one value where a list is allowed (a node's single MAC)
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
    return f"{where}: {shown(error['input'])}: {message}"


def _problems_of_the_rest(data: dict[str, Any], errors: list[Any]) -> list[str]:
    """The cross-field problems of `data` without the nodes that have field errors, when those
    are its only errors; [] otherwise."""
    if any(tuple(e["loc"][:1]) != ("nodes",) or len(e["loc"]) < 2 for e in errors):
        return []
    bad = {e["loc"][1] for e in errors}
    nodes = data.get("nodes")
    if not isinstance(nodes, list) or not all(isinstance(i, int) for i in bad):
        return []
    rest = {**data, "nodes": [n for i, n in enumerate(nodes) if i not in bad]}
    try:
        return check_inventory(Inventory.model_validate(rest))
    except ValidationError:
        return []


def parse_inventory(data: Any, source: str = "inventory") -> Inventory:
    """Validate a plain-data document; raise InvalidInputError listing every problem.

    `data` is the parsed YAML (dicts, lists, scalars), `source` the name used when the document
    is not a mapping. Field errors are named by their path, nodes by name (e.g.
    "nodes.node01.ip: ..."); then the cross-field checks of checks.py run, so one run names
    every problem: on the whole inventory when its fields are valid, else, when only nodes have
    bad fields, on the rest of it (a bad MAC no longer hides two nodes sharing an address).
    Returns the frozen Inventory."""
    if not isinstance(data, dict):
        raise InvalidInputError([f"{source}: the document must be a mapping with a 'cluster' key"])
    try:
        inventory = Inventory.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        lines = [_describe(err, data) for err in errors]
        raise InvalidInputError(lines + _problems_of_the_rest(data, errors)) from None
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
    """The inventory's text (UTF-8, as YAML 1.2 files are). Raises InvalidInputError (exit 2,
    like every input named wrongly) when it does not exist or is not UTF-8, ClustcontrolError
    (exit 1) when it cannot be read."""
    try:
        data = path.read_bytes()
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            [f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"],
            hint="convert it, e.g. iconv -f latin1 -t utf-8",
        ) from None
    except FileNotFoundError:
        raise InvalidInputError(
            [f"inventory {path} does not exist"],
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
    InvalidInputError for a YAML syntax error (with its line), an invalid inventory (every
    problem, see parse_inventory) or one inside a path the master serves (check_location)."""
    text = _read_text(path)
    with gc_paused():
        inventory = parse_inventory(_load_data(text, path), str(path))
    check_location(path, inventory)
    return inventory


def _load_data(text: str, path: Path) -> Any:
    """The text as the safe loader reads it (plain dicts, lists, scalars): its nodes line by
    line when the text has that shape (nodelines.find_nodes, the same result), else by ruamel.
    Raises InvalidInputError for a YAML syntax error (`path` names the file)."""
    nodes = find_nodes(text)
    if nodes is not None:
        return nodes.data()
    try:
        return _safe_yaml().load(text)
    except YAMLError as exc:
        raise _yaml_error(path, exc) from None


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

    The whole edit, from reading the file to replacing it, holds a flock on the inventory's
    directory (fsutil.waiting_lock, waiting up to EDIT_LOCK_WAIT seconds for another edit):
    concurrent edits take turns, none is lost. Nothing is written when the block raises or the
    edited document does not validate. Raises ClustcontrolError when the file cannot be read,
    InvalidInputError when it (before or after the edit, as written: _checked_dump) is not
    valid or lies inside a path the master serves (check_location), LockedError when another
    edit held the lock all that time, and OSError when it cannot be written."""
    with waiting_lock(path.parent, EDIT_LOCK_WAIT):
        document = load_document(_read_text(path), path)
        yield document
        atomic_write(path, _checked_dump(document, path).encode())


def _checked_dump(document: Any, path: Path) -> str:
    """The edited round-trip document as text, validated as it will be read back: ruamel's
    dump is parsed again and that is validated (parse_inventory, check_location), so a dump
    that reads differently (ruamel wrote `update_node: node:` after removing the last node of
    a list with a blank line after its key) is refused, not written. Raises InvalidInputError.
    """
    text = dump_document(document)
    check_location(path, parse_inventory(_load_data(text, path), str(path)))
    return text


def edit_nodes(
    path: Path,
    fast: Callable[[NodesText], NodesText | None],
    slow: Callable[[Any], None],
) -> None:
    """Edit the inventory's nodes: the item lines of the text (`fast`, see nodelines) when the
    text has that shape and `fast` can write the result, else the round-trip document
    (`slow`, as in edit_inventory). Either way the edited inventory is validated whole
    (parse_inventory, check_location) before it is written atomically, under the edit lock.

    `fast` takes the text's NodesText and returns the edited one, or None to leave the edit to
    `slow`; `slow` edits the ruamel document in place. Both raise InvalidInputError for an
    edit that cannot be made (no such node ...). Raises what edit_inventory raises."""
    with waiting_lock(path.parent, EDIT_LOCK_WAIT):
        text = _read_text(path)
        with gc_paused():
            nodes = find_nodes(text)
            edited = fast(nodes) if nodes is not None else None
            if edited is not None:
                check_location(path, parse_inventory(edited.data(), str(path)))
        if edited is not None:
            new = edited.text()
        else:
            document = load_document(text, path)
            slow(document)
            new = _checked_dump(document, path)
        atomic_write(path, new.encode())


def save_new_document(path: Path, text: str) -> None:
    """Validate a freshly written document (e.g. from `init`) and save it atomically.

    A missing directory is created with mode 0700 (CONFIG_DIR_MODE, whatever the umask: its
    editors' backup and swap files stay private too), missing directories above it 0755
    (PARENT_DIR_MODE: under umask 000 a world-writable parent let a local user rename the
    inventory's directory away and put one of their own in its place), a new file gets mode
    0600 (CONFIG_MODE; an existing one keeps its mode): the inventory is the master's alone,
    and will hold BMC credentials. Raises InvalidInputError when `text` is not a valid
    inventory or `path` lies inside a path the master serves (check_location), nothing written
    then; OSError when it cannot be written."""
    check_location(path, parse_inventory(to_plain(load_document(text, path)), str(path)))
    if not path.parent.exists():
        missing = [d for d in reversed(path.parent.parents) if not d.exists()]
        for parent in missing:  # 0755 whatever the umask, as apply makes its directories
            parent.mkdir(mode=PARENT_DIR_MODE, exist_ok=True)
            parent.chmod(PARENT_DIR_MODE)
        path.parent.mkdir(mode=CONFIG_DIR_MODE)
        path.parent.chmod(CONFIG_DIR_MODE)
    with waiting_lock(path.parent, EDIT_LOCK_WAIT):
        atomic_write(path, text.encode(), mode=CONFIG_MODE)
