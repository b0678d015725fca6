"""The clustcontrol command line: verbs only, and the one error boundary.

Exit status: 0 success, 1 failure (a program failed, a lock is held), 2 invalid input
(nothing was written)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click
from rich.console import Console
from rich.table import Table

from clustcontrol import __version__
from clustcontrol.apply import ApplyResult, Installer, apply_tree, selected_services, write_tree
from clustcontrol.errors import EXIT_FAILURE, EXIT_INVALID, ClustcontrolError
from clustcontrol.image import ImageResult, prepare_image, publish_image
from clustcontrol.image.commit import commit_image, image_status
from clustcontrol.inventory import edit, normalize
from clustcontrol.inventory.model import Inventory
from clustcontrol.inventory.store import (
    config_path,
    edit_inventory,
    load_inventory,
    save_new_document,
)
from clustcontrol.render import RenderContext, RenderedTree, render_all
from clustcontrol.render.base import render_template

P = ParamSpec("P")
R = TypeVar("R")

# Piped output (scripts, logs) is not cut to 80 columns: tables keep full MACs and paths.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 250)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class State:
    def __init__(self, config: Path | None, debug: bool) -> None:
        self.config = config_path(config)
        self.debug = debug

    def inventory(self) -> Inventory:
        return load_inventory(self.config)


pass_state = click.make_pass_decorator(State)


def _json_or_table(
    as_json: bool, rows: list[dict[str, Any]], title: str, columns: list[str]
) -> None:
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row.get(c) if row.get(c) is not None else "") for c in columns))
    out.print(table)


dry_run_option = click.option("--dry-run", is_flag=True, help="Show a unified diff; write nothing.")


def prefix_option(help: str, dest: str = "root") -> Callable[[Callable[P, R]], Callable[P, R]]:
    """--root PREFIX: where live paths are resolved (default /; tests use a scratch prefix)."""
    return click.option(
        "--root",
        dest,
        type=click.Path(path_type=Path),
        default=Path("/"),
        show_default=True,
        help=help,
    )


output_option = click.option(
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Table for people, JSON for scripts.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path),
    default=None,
    help="Inventory file [default: $CLUSTCONTROL_CONFIG or /etc/clustcontrol/cluster.yaml].",
)
@click.option("--debug", is_flag=True, help="Show tracebacks and the commands run.")
@click.version_option(__version__)
@click.pass_context
def cli(ctx: click.Context, config: Path | None, debug: bool) -> None:
    """Keep cluster nodes identical to a standard root, synced at every boot.

    \b
    Typical use:
      clustcontrol --config cluster.yaml init --domain rostclust \\
          --network 192.168.0.0/24 --master-ip 192.168.0.1
      clustcontrol --config cluster.yaml node add node01 --mac 52:54:00:00:00:01 --ip 192.168.0.11
      clustcontrol --config cluster.yaml apply --dry-run
    """
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(message)s")
    ctx.obj = State(config, debug)


# --- init -----------------------------------------------------------------------------------


@cli.command()
@click.option("--domain", required=True, help="DNS domain of the cluster, e.g. rostclust.")
@click.option("--network", required=True, help="Cluster subnet, e.g. 192.168.0.0/24.")
@click.option("--master-ip", required=True, help="The master's address in that subnet.")
@click.option("--master-name", default="master", show_default=True)
@click.option(
    "--image-root",
    default="/srv/nfs4/clusternoderoot",
    show_default=True,
    help="Root of the standard image 'default'.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing inventory.")
@pass_state
def init(
    state: State,
    domain: str,
    network: str,
    master_ip: str,
    master_name: str,
    image_root: str,
    force: bool,
) -> None:
    """Write a commented starter inventory with one image 'default'.

    \b
    Example:
      clustcontrol --config /etc/clustcontrol/cluster.yaml init --domain rostclust \\
          --network 192.168.0.0/24 --master-ip 192.168.0.1
    """
    normalize.check_cluster_settings(
        domain=domain,
        network=network,
        master_ip=master_ip,
        master_name=master_name,
        image_root=image_root,
    )
    if state.config.exists() and not force:
        raise ClustcontrolError(
            f"{state.config} already exists", hint="use --force to overwrite it"
        )
    text = render_template(
        "inventory/cluster.yaml.j2",
        domain=domain,
        network=network,
        master_ip=master_ip,
        master_name=master_name,
        image_root=image_root,
    ).decode()
    save_new_document(state.config, text)
    out.print(f"wrote {state.config}")


# --- image ----------------------------------------------------------------------------------


@cli.group()
def image() -> None:
    """Standard node roots (images)."""


@image.command("add")
@click.argument("name")
@click.option("--root", "root", required=True, help="Absolute path of the standard root.")
@click.option("--kernel", default=None, help="Kernel file name under ROOT/boot [newest].")
@click.option("--initrd", default=None, help="Initrd file name under ROOT/boot [newest].")
@click.option("--layout", "disk_layout", default=None, help="Disk layout name [default].")
@click.option("--persistent", multiple=True, help="A path kept on the node (repeatable).")
@click.option(
    "--kernel-arg", "kernel_args", multiple=True, help="Extra kernel argument (repeatable)."
)
@click.option("--transport", type=click.Choice(["nfs", "rsync"]), default=None)
@pass_state
def image_add(
    state: State,
    name: str,
    root: str,
    kernel: str | None,
    initrd: str | None,
    disk_layout: str | None,
    persistent: tuple[str, ...],
    kernel_args: tuple[str, ...],
    transport: str | None,
) -> None:
    """Add a standard root.

    \b
    Example:
      clustcontrol image add gpu --root /srv/nfs4/gpunoderoot --persistent /var/lib/gpu
    """
    name = normalize.image_name(name)
    fields = {
        "root": root,
        "kernel": kernel,
        "initrd": initrd,
        "disk_layout": disk_layout,
        "persistent": list(persistent),
        "kernel_args": list(kernel_args),
        "transport": transport,
    }
    with edit_inventory(state.config) as document:
        edit.add_image(document, name, fields)
    out.print(f"added image {name}")


@image.command("remove")
@click.argument("name")
@pass_state
def image_remove(state: State, name: str) -> None:
    """Remove a standard root (nodes using it must be moved first)."""
    with edit_inventory(state.config) as document:
        edit.remove_image(document, name)
    out.print(f"removed image {name}")


@image.command("list")
@output_option
@pass_state
def image_list(state: State, output: str) -> None:
    """List the standard roots and how many nodes use each."""
    inv = state.inventory()
    counts: dict[str, int] = {}
    for node in inv.nodes:
        counts[inv.image_of(node)] = counts.get(inv.image_of(node), 0) + 1
    rows = [
        {
            "name": name,
            "root": img.root,
            "transport": inv.transport_of(name),
            "disk_layout": img.disk_layout,
            "nodes": counts.get(name, 0),
            "default": name == inv.default_image_name,
            "persistent": " ".join(img.persistent),
        }
        for name, img in inv.images.items()
    ]
    _json_or_table(
        output == "json",
        rows,
        "images",
        ["name", "root", "transport", "disk_layout", "nodes", "default", "persistent"],
    )


def _print_image_result(result: ImageResult, what: str) -> None:
    if result.dry_run:
        for change in result.changes:
            sys.stdout.write(change.diff())
        sys.stdout.flush()
    for change in result.changes:
        out.print(f"{change.action:7} {change.path}")
    for note in result.notes:
        out.print(f"note: {note}")
    verb = "would change" if result.dry_run else "changed"
    out.print(f"{what}: {len(result.changes)} files {verb}")


@image.command("prepare")
@click.argument("name")
@prefix_option("Installation prefix the image root is resolved under.", dest="prefix")
@dry_run_option
@click.option(
    "--rebuild-initramfs",
    is_flag=True,
    help="Run update-initramfs in a chroot of the image afterwards.",
)
@click.option(
    "--bootable-disk",
    is_flag=True,
    help="Install the rc.local part that makes each node's disk bootable (extlinux).",
)
@pass_state
def image_prepare(
    state: State,
    name: str,
    prefix: Path,
    dry_run: bool,
    rebuild_initramfs: bool,
    bootable_disk: bool,
) -> None:
    """Make a standard root sync-on-boot capable (idempotent).

    Installs the initramfs-tools hook and scripts and the node functions library, sets
    initramfs.conf for a network boot, comments out the root line of etc/fstab, disables the
    udev persistent-net generator, sets the boot interface to 'manual', installs an update-grub
    stub.

    \b
    Example:
      clustcontrol image prepare default --dry-run
      clustcontrol image prepare default --rebuild-initramfs && clustcontrol image publish default
    """
    result = prepare_image(
        state.inventory(),
        name,
        dry_run=dry_run,
        rebuild_initramfs=rebuild_initramfs,
        bootable_disk=bootable_disk,
        root_prefix=prefix,
    )
    _print_image_result(result, f"image prepare {name}")


@image.command("publish")
@click.argument("name")
@prefix_option("Installation prefix (image root and TFTP tree under it).", dest="prefix")
@click.option("--dry-run", is_flag=True, help="Show what would be copied; write nothing.")
@pass_state
def image_publish(state: State, name: str, prefix: Path, dry_run: bool) -> None:
    """Copy the image's kernel and initrd into the TFTP tree and refresh the PXELINUX files.

    \b
    Example:
      clustcontrol image publish default   # -> /var/lib/tftpboot/cluster_node/default/vmlinuz
    """
    result = publish_image(state.inventory(), name, dry_run=dry_run, root_prefix=prefix)
    _print_image_result(result, f"image publish {name}")


@image.command("commit")
@click.argument("name")
@prefix_option("Installation prefix the image root and the manifests are resolved under.")
@pass_state
def image_commit(state: State, name: str, root: Path) -> None:
    """Record a new generation of the standard root when its content changed.

    Nodes that already hold the committed generation skip the transfer at boot; run this after
    every change to the standard (from the update node, a chroot, a package install).

    \b
    Example:
      clustcontrol image commit default
    """
    result = commit_image(state.inventory(), name, root_prefix=root)
    if not result.created:
        out.print(
            f"image {name}: unchanged since generation {result.generation} "
            f"({result.files} files, {result.seconds:.1f} s)"
        )
        return
    since = f" since {result.previous}" if result.previous else ""
    out.print(
        f"image {name}: generation {result.generation} ({result.difference.summary()}"
        f"{since}; {result.files} files, {result.seconds:.1f} s)"
    )
    if result.deltas:
        written = sum(delta.skipped is None for delta in result.deltas)
        out.print(f"deltas: from {written} earlier generation(s)")
    for delta in result.deltas:
        if delta.skipped is not None:
            out.print(
                f"no delta from {delta.source} (its nodes sync the whole tree): {delta.skipped}",
                markup=False,
            )


# --- node -----------------------------------------------------------------------------------


@cli.group()
def node() -> None:
    """Cluster nodes."""


@node.command("add")
@click.argument("name")
@click.option("--mac", required=True, help="MAC of the node's boot interface.")
@click.option("--ip", required=True, help="The node's fixed address.")
@click.option("--image", default=None, help="Standard root to sync to [the default image].")
@pass_state
def node_add(state: State, name: str, mac: str, ip: str, image: str | None) -> None:
    """Add a node.

    \b
    Example:
      clustcontrol node add node01 --mac 52:54:00:12:34:01 --ip 192.168.0.11
    """
    entry = normalize.new_node(name, mac, ip, image)
    with edit_inventory(state.config) as document:
        edit.add_node(document, entry)
    out.print(f"added node {entry.name}")


@node.command("set")
@click.argument("name")
@click.option("--mac", default=None)
@click.option("--ip", default=None)
@click.option("--image", default=None, help="Standard root; '' for the default image.")
@click.option("--layout", "disk_layout", default=None, help="Disk layout; '' for the image's.")
@pass_state
def node_set(
    state: State,
    name: str,
    mac: str | None,
    ip: str | None,
    image: str | None,
    disk_layout: str | None,
) -> None:
    """Change a node's MAC, address, image or disk layout.

    \b
    Example:
      clustcontrol node set node01 --image gpu
    """
    changes = normalize.node_changes(mac=mac, ip=ip, image=image, disk_layout=disk_layout)
    with edit_inventory(state.config) as document:
        edit.set_node(document, name, changes)
    out.print(f"updated node {name}")


@node.command("remove")
@click.argument("name")
@pass_state
def node_remove(state: State, name: str) -> None:
    """Remove a node (and clear it as update node)."""
    with edit_inventory(state.config) as document:
        edit.remove_node(document, name)
    out.print(f"removed node {name}")


@node.command("list")
@output_option
@pass_state
def node_list(state: State, output: str) -> None:
    """List the nodes."""
    inv = state.inventory()
    update_name = inv.update_node.node
    rows = [
        {
            "name": n.name,
            "mac": n.mac,
            "ip": str(n.ip),
            "image": inv.image_of(n),
            "disk_layout": inv.layout_of(n),
            "update_node": n.name == update_name,
        }
        for n in sorted(inv.nodes, key=lambda n: n.ip)
    ]
    _json_or_table(
        output == "json",
        rows,
        f"{len(rows)} nodes",
        ["name", "mac", "ip", "image", "disk_layout", "update_node"],
    )


@node.command("import")
@click.argument("csv_file", type=click.Path(path_type=Path))
@pass_state
def node_import(state: State, csv_file: Path) -> None:
    """Add or update nodes from a CSV file with the header name,mac,ip,image.

    All rows are validated together with the rest of the inventory: all or nothing.

    \b
    Example:
      clustcontrol node import rack3.csv
    """
    rows = normalize.read_node_csv(csv_file)
    with edit_inventory(state.config) as document:
        added, updated = edit.import_nodes(document, rows)
    out.print(f"imported {len(rows)} rows: {added} added, {updated} updated")


# --- update node ----------------------------------------------------------------------------


@cli.group("update-node")
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
    """No node boots as the update node."""
    with edit_inventory(state.config) as document:
        edit.set_update_node(document, None, None)
    out.print("update node cleared")


@update_node.command("show")
@output_option
@pass_state
def update_node_show(state: State, output: str) -> None:
    """Show the update node's address, image and node."""
    inv = state.inventory()
    row = {"ip": str(inv.update_ip), "image": inv.update_image_name, "node": inv.update_node.node}
    _json_or_table(output == "json", [row], "update node", ["ip", "image", "node"])


@cli.command()
@prefix_option("Installation prefix the image roots and manifests are resolved under.")
@output_option
@pass_state
def status(state: State, root: Path, output: str) -> None:
    """Each standard root: its committed generation and any changes not yet committed.

    Exit status 1 when a standard has uncommitted changes (nodes would not get them).

    \b
    Example:
      clustcontrol status
    """
    inv = state.inventory()
    states = [image_status(inv, name, root_prefix=root) for name in inv.images]
    rows = [
        {
            "image": st.image,
            "root": st.root,
            "generation": st.committed,
            "uncommitted": None if st.uncommitted is None else st.uncommitted.summary(),
            "warning": st.warning,
        }
        for st in states
    ]
    _json_or_table(output == "json", rows, "images", ["image", "root", "generation", "uncommitted"])
    warnings = [st.warning for st in states if st.warning]
    for warning in warnings:
        err.print(f"clustcontrol: WARNING: {warning}", markup=False)
    if any(st.uncommitted is not None and not st.uncommitted.empty for st in states):
        sys.exit(EXIT_FAILURE)


# --- validate, render, apply ----------------------------------------------------------------


@cli.command()
@pass_state
def validate(state: State) -> None:
    """Check the inventory; print every problem, one per line (exit 2 when there is one)."""
    inv = state.inventory()
    out.print(f"{state.config}: valid ({len(inv.nodes)} nodes, {len(inv.images)} images)")


def _render(inv: Inventory, root: Path) -> RenderedTree:
    return render_all(RenderContext(inv, previous=Installer(root).read))


@cli.command()
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Staging directory; files land at OUT/<live path>.",
)
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
            sys.stdout.write(change.diff())
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
        table.add_row(change.action, change.service or "", change.path)
    if len(result.changes) > 50:
        table.add_row("...", "", f"and {len(result.changes) - 50} more")
    if result.changes:
        out.print(table)
    else:
        out.print(table.title)
    for check in result.checks:
        out.print(f"check {check.program} {check.target}: {check.status}")
    for command in result.reloaded:
        out.print(f"reloaded: {command}")


@cli.command()
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
    tree = _render(inv, root)
    result = apply_tree(inv, tree, root, dry_run=dry_run, check=not no_check, reload=reload_)
    _print_result(result, verbose_diff=dry_run)
    if not dry_run:
        services = ", ".join(sorted(selected_services(inv)))
        out.print(f"services: {services}")


# --- demo -----------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path),
    default=None,
    help="Scratch directory [a new temporary one].",
)
@click.option("--nodes", "count", default=8, show_default=True, help="How many demo nodes.")
def demo(directory: Path | None, count: int) -> None:
    """Build a demo cluster in a scratch directory: inventory, render, apply under a prefix.

    \b
    Example:
      clustcontrol demo --dir /tmp/clustcontrol-demo
    """
    from clustcontrol.demo import run_demo

    run_demo(directory, count, out)


def _boundary(function: Callable[P, R]) -> Callable[P, R]:
    @wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        debug = "--debug" in sys.argv
        try:
            return function(*args, **kwargs)
        except ClustcontrolError as exc:
            if debug:
                raise
            for line in exc.lines():
                err.print(f"clustcontrol: error: {line}", markup=False)
            if exc.hint:
                err.print(f"clustcontrol: hint: {exc.hint}", markup=False)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            err.print("clustcontrol: interrupted")
            sys.exit(130)

    return wrapper


@_boundary
def main() -> None:
    """Entry point: click without its own error handling, so ours is the only boundary."""
    try:
        cli.main(prog_name="clustcontrol", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_INVALID if isinstance(exc, click.UsageError) else exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
