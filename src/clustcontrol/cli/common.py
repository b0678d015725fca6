"""What the verb modules share: the consoles, the State of one invocation, the common options
and the printing of rows as a table or JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click
from rich.console import Console
from rich.table import Table

from clustcontrol.inventory.model import Inventory
from clustcontrol.inventory.store import config_path, inventory_exposure, load_inventory

P = ParamSpec("P")
R = TypeVar("R")

# Piped output (scripts, logs) is not cut to 80 columns: tables keep full MACs and paths.
# Everything printed is data, shown verbatim: no rich markup ("[b]" in a path), no emoji codes
# (the MAC 52:54:00:ab:cd:03 holds ":ab:"), no highlighting.
out = Console(
    highlight=False,
    markup=False,
    emoji=False,
    soft_wrap=True,
    width=None if sys.stdout.isatty() else 250,
)
err = Console(stderr=True, highlight=False, markup=False, emoji=False, soft_wrap=True)


class State:
    """The global options of one invocation, passed to the verbs by pass_state.

    config: the --config path, or None for $CLUSTCONTROL_CONFIG or the default path
    (store.config_path); debug: --debug was given."""

    def __init__(self, config: Path | None, debug: bool) -> None:
        self.explicit_config = config
        self.debug = debug

    @cached_property
    def config(self) -> Path:
        """The inventory file (store.config_path), found when a verb first asks for it, so that
        verbs without an inventory never see its errors (an inventory left at the old default
        location: InvalidInputError). A WARNING line each when others can replace it
        (store.inventory_exposure)."""
        path = config_path(self.explicit_config)
        for line in inventory_exposure(path):
            err.print(f"clustcontrol: WARNING: {printable(line)}", markup=False)
        return path

    def inventory(self) -> Inventory:
        """The validated inventory at self.config; raises what store.load_inventory raises."""
        return load_inventory(self.config)


pass_state = click.make_pass_decorator(State)


def printable(line: str, keep: str = "") -> str:
    """line with every character str.isprintable refuses (line breaks of every kind, NUL, other
    controls such as ESC, Unicode separators, surrogates standing for bytes that are not UTF-8)
    written as its Python escape ("\\x1b", "\\u2028"), but those in `keep`: what a file of
    the standard, an error or a name given on the command line holds is shown, never acted on
    by the terminal, and one line stays one visible line. The one place that does it."""
    return "".join(c if c.isprintable() or c in keep else repr(c)[1:-1] for c in line)


def say(text: str, console: Console | None = None) -> None:
    """Print one line (on stdout, or `console`) through printable: for lines that hold paths or
    names taken from a standard, a manifest or the running system."""
    (console or out).print(printable(text), markup=False)


def write_diff(diff: str) -> None:
    """Write a unified diff (apply.Change.diff) to stdout, each line (split at "\\n" only)
    through printable with tabs kept: a file's control characters are shown as escapes."""
    lines = diff.split("\n")
    sys.stdout.write("\n".join(printable(line, keep="\t") for line in lines))


def print_rows(as_json: bool, rows: list[dict[str, Any]], title: str, columns: list[str]) -> None:
    """Print rows on stdout: all their keys as a JSON array, or columns as a titled table.

    In the table a missing or None value is an empty cell and every cell goes through
    printable; JSON writes non-JSON values with str (json.dumps escapes control characters)."""
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        cells = (str(row.get(c)) if row.get(c) is not None else "" for c in columns)
        table.add_row(*(printable(cell) for cell in cells))
    out.print(table)


def human_bytes(count: int) -> str:
    """A byte count for people, in binary units: "0 B", "512 B", "1.5 KiB", "12.0 MiB"."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_age(seconds: float) -> str:
    """An age in seconds for people, in its largest whole unit: "40 s", "5 min", "3 h", "2 d"."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{max(int(seconds), 0)} s"


dry_run_option = click.option("--dry-run", is_flag=True, help="Show a unified diff; write nothing.")


def path_option(
    flag: str, dest: str, help: str, **settings: Any
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """An option whose value is a pathlib.Path: flag (e.g. '--out') stored as parameter dest.

    settings are further click.option settings (default, required, show_default)."""
    return click.option(flag, dest, type=click.Path(path_type=Path), help=help, **settings)


def prefix_option(help: str, dest: str = "root") -> Callable[[Callable[P, R]], Callable[P, R]]:
    """--root PREFIX: where live paths are resolved (default /; tests use a scratch prefix)."""
    return path_option("--root", dest, help, default=Path("/"), show_default=True)


output_option = click.option(
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Table for people, JSON for scripts.",
)
