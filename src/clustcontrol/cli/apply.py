"""`clustcontrol validate`, `render` and `apply`: check the inventory, render and install the
service configs."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.table import Table

from clustcontrol.apply import (
    BIND_TARGET_HINT,
    ORIGINALS,
    ApplyResult,
    Installer,
    apply_tree,
    bind_mount_problems,
    ganesha_exposure,
    selected_services,
    write_tree,
)
from clustcontrol.cli.common import (
    State,
    dry_run_option,
    err,
    out,
    pass_state,
    path_option,
    prefix_option,
    printable,
    say,
    write_diff,
)
from clustcontrol.errors import InvalidInputError
from clustcontrol.inventory.layouts import sfdisk_problems
from clustcontrol.inventory.model import Inventory
from clustcontrol.render import RenderContext, RenderedTree, render_all


@click.command()
@pass_state
def validate(state: State) -> None:
    """Check the inventory, its disk layouts with the real sfdisk too, the control directory's
    mount points inside each standard (no link on the way) and with nfs-ganesha the file
    systems of what it would export (as apply does); print every problem, one per line (exit 2
    when there is one).

    \b
    Example:
      clustcontrol validate
    """
    inv = state.inventory()
    problems, hint, warnings = sfdisk_problems(inv), None, []
    if linked := bind_mount_problems(inv, Path("/")):
        problems, hint = problems + linked, BIND_TARGET_HINT
    if "nfs-ganesha" in selected_services(inv):
        try:
            warnings = ganesha_exposure(inv, Path("/"))
        except InvalidInputError as exc:
            problems, hint = problems + exc.problems, exc.hint
    if problems:
        raise InvalidInputError(problems, hint=hint)
    _warn_ganesha(warnings)
    out.print(f"{state.config}: valid ({len(inv.nodes)} nodes, {len(inv.images)} images)")


def _warn_ganesha(warnings: list[str]) -> None:
    for warning in warnings:
        err.print(f"clustcontrol: WARNING: nfs-ganesha exports {warning}")


def _render(inv: Inventory, root: Path) -> RenderedTree:
    return render_all(RenderContext(inv, previous=Installer(root).read))


@click.command()
@path_option("--out", "out_dir", "Staging directory; files land at OUT/<live path>.", required=True)
@prefix_option("Live root whose zone serials are continued.")
@pass_state
def render(state: State, out_dir: Path, root: Path) -> None:
    """Render every config (all DHCP servers, both NFS flavours) into a staging tree.

    \b
    Example:
      clustcontrol render --out /tmp/staging && less /tmp/staging/etc/dhcp/dhcpd.conf
    """
    inv = state.inventory()
    tree = _render(inv, root)
    written = write_tree(tree, out_dir)
    out.print(
        f"rendered {len(tree)} files into {out_dir} ({written} written, "
        f"{len(tree) - written} unchanged)"
    )


def _print_result(result: ApplyResult, verbose_diff: bool) -> None:
    if verbose_diff:
        for change in result.changes:
            write_diff(change.diff())
        sys.stdout.flush()
    verb = "would change" if result.dry_run else "changed"
    table = Table(
        title=f"apply: {len(result.changes)} files {verb}, {result.unchanged} unchanged",
        title_justify="left",
    )
    table.add_column("action")
    table.add_column("service")
    table.add_column("path")
    for change in result.changes[:50]:
        table.add_row(change.action, change.service or "", printable(change.path))
    if len(result.changes) > 50:
        table.add_row("...", "", f"and {len(result.changes) - 50} more")
    if result.changes:
        out.print(table)
    else:
        out.print(table.title)
    for path in result.kept:
        verb = "would keep" if result.dry_run else "kept"
        out.print(
            f"{verb} the original of {printable(path)} in {ORIGINALS} "
            "(put back when apply no longer writes it)"
        )
    if result.cleaned:
        count = len(result.cleaned)
        out.print(f"removed {count} temp file{'s' * (count != 1)} an interrupted apply left")
    for check in result.checks:
        say(f"check {check.program} {check.target}: {check.status}")
    for command in result.reloaded:
        out.print(f"reloaded: {command}")


@click.command()
@prefix_option("Install under this prefix instead of the live system.")
@dry_run_option
@click.option("--no-check", is_flag=True, help="Skip the daemons' own config checkers.")
@click.option("--reload", "reload_", is_flag=True, help="Reload each affected service once.")
@pass_state
def apply(state: State, root: Path, dry_run: bool, no_check: bool, reload_: bool) -> None:
    """Install the configs of the selected services; unchanged files are not touched.

    \b
    Examples:
      clustcontrol apply --dry-run          # unified diff of what would change
      clustcontrol apply --reload           # install, then reload changed services once
      clustcontrol apply --root /tmp/prefix # install under a prefix (tests, image builds)
    """
    inv = state.inventory()
    if not no_check and (problems := sfdisk_problems(inv)):
        raise InvalidInputError(problems)
    tree = _render(inv, root)
    result = apply_tree(inv, tree, root, dry_run=dry_run, check=not no_check, reload=reload_)
    _print_result(result, verbose_diff=dry_run)
    _warn_ganesha(result.warnings)
    if not dry_run:
        services = ", ".join(sorted(selected_services(inv)))
        out.print(f"services: {services}")
