"""`clustcontrol image ...` and `clustcontrol status`: the standard roots and their generations."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from clustcontrol.cli.common import (
    State,
    dry_run_option,
    err,
    human_age,
    human_bytes,
    out,
    output_option,
    pass_state,
    prefix_option,
    print_rows,
    say,
    write_diff,
)
from clustcontrol.contract import EXCLUSIONS, NODE_FILES, expand, params
from clustcontrol.errors import EXIT_FAILURE, ClustcontrolError
from clustcontrol.image import ImageResult, prepare_image, publish_image
from clustcontrol.image.commit import ImageStatus, commit_image, image_status
from clustcontrol.image.common import WARNING
from clustcontrol.image.deltas import unlistable
from clustcontrol.image.generation import GenerationStore
from clustcontrol.inventory import edit, normalize
from clustcontrol.inventory.model import Inventory
from clustcontrol.inventory.store import edit_inventory


@click.group()
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
@click.option(
    "--force",
    is_flag=True,
    help="Remove the default image even though nodes that name no image would move to another.",
)
@pass_state
def image_remove(state: State, name: str, force: bool) -> None:
    """Remove a standard root (nodes naming it must be moved first; nodes naming none use the
    default image, and removing it needs --force).

    \b
    Example:
      clustcontrol image remove gpu
    """
    with edit_inventory(state.config) as document:
        moved = edit.remove_image(document, name, force=force)
    out.print(f"removed image {name}")
    if moved:
        out.print(f"moved to the new default image: {len(moved)} node(s): {' '.join(moved)}")


@image.command("list")
@prefix_option("Installation prefix the generation store is resolved under.")
@output_option
@pass_state
def image_list(state: State, root: Path, output: str) -> None:
    """List the standard roots: nodes using each, the current generation, the generation
    trees kept and the disk space they take.

    \b
    Example:
      clustcontrol image list
    """
    inv = state.inventory()
    counts: dict[str, int] = {}
    for node in inv.nodes:
        counts[inv.image_of(node)] = counts.get(inv.image_of(node), 0) + 1
    rows: list[dict[str, object]] = []
    for name, img in inv.images.items():
        store = GenerationStore.for_image(root, name, inv.cluster.state_dir)
        usage = store.usage()
        space = store.space()  # all kept trees, shared files once
        rows.append(
            {
                "name": name,
                "root": img.root,
                "transport": inv.transport_of(name),
                "disk_layout": img.disk_layout,
                "nodes": counts.get(name, 0),
                "default": name == inv.default_image_name,
                "persistent": " ".join(img.persistent),
                "generation": store.current(),
                "generations": len(usage),
                "space": space if output == "json" else human_bytes(space),
            }
        )
    print_rows(
        output == "json",
        rows,
        "images",
        ["name", "root", "transport", "nodes", "default", "generation", "generations", "space"],
    )


@image.command("show")
@click.argument("name")
@prefix_option("Installation prefix the generation store is resolved under.")
@output_option
@pass_state
def image_show(state: State, name: str, root: Path, output: str) -> None:
    """Show an image: its settings, its generations, its secrets (no served tree holds them),
    every path its nodes never take from the standard (the exclusions, its persistent paths,
    its layout's data partitions) and the files each node writes itself after every sync.

    \b
    Example:
      clustcontrol image show default
    """
    inv = state.inventory()
    name = normalize.defined_image(name, inv.images)
    img = inv.images[name]
    store = GenerationStore.for_image(root, name, inv.cluster.state_dir)
    # The node's own paths at their defaults (conf.d may move them), the control directory.
    values = {p.key: p.default for p in params("conf.d") if p.default}
    values["CC_CONTROL_DIR"] = inv.cluster.control_dir
    rows: list[dict[str, object]] = []
    for exclusion in EXCLUSIONS:
        path = expand(exclusion.path, values)
        scope = " and ".join(
            w for w, on in (("node sync", exclusion.sync), ("generation", exclusion.manifest)) if on
        )
        what = f"/{path}/* (the directory stays)" if exclusion.contents else f"/{path}"
        rows.append({"path": what, "left out of": scope, "why": exclusion.why})
    for path in img.persistent:
        rows.append(
            {
                "path": path,
                "left out of": "node sync",
                "why": "persistent: seeded from the standard once, then the node's own",
            }
        )
    layout = inv.disk_layouts.get(img.disk_layout)
    for part in layout.partitions if layout is not None else ():
        if part.use == "data" and part.mount:
            rows.append(
                {
                    "path": f"{part.mount}/*",
                    "left out of": "node sync",
                    "why": f"data partition {part.number} of layout {img.disk_layout}",
                }
            )
    written = [
        {
            "path": f"/{f.path}",
            "synced": "yes, then edited" if f.taken_from_standard else "no (excluded)",
            "what the node writes": f.what,
        }
        for f in NODE_FILES
    ]
    facts = {
        "name": name,
        "root": img.root,
        "served": inv.generation_roots(name),
        "transport": inv.transport_of(name),
        "generation": store.current(),
        "generations": store.trees(),
        "keep_generations": img.keep_generations,
        "persistent": img.persistent,
        "secrets": [f"/{p}" for p in inv.secrets_of(name)],
        "secrets_served": inv.secrets_root(name),
        "exclusions": rows,
        "node_files": written,
    }
    if output == "json":
        click.echo(json.dumps(facts, indent=2))
        return
    for key in ("name", "root", "served", "transport", "generation", "keep_generations"):
        out.print(f"{key}: {facts[key] if facts[key] is not None else '-'}", markup=False)
    out.print(f"generations: {' '.join(store.trees()) or '-'}", markup=False)
    out.print(f"secrets: {' '.join(facts['secrets'])}", markup=False)  # type: ignore[arg-type]
    out.print(
        f"secrets served: {inv.secrets_root(name)} (NFS, to the image's nodes alone)",
        markup=False,
    )
    title = f"what nodes of image {name} never take from it"
    print_rows(False, rows, title, ["path", "left out of", "why"])
    columns = ["path", "synced", "what the node writes"]
    print_rows(False, written, "written by the node after every sync", columns)


def _print_image_result(result: ImageResult, what: str) -> None:
    if result.dry_run:
        for change in result.changes:
            write_diff(change.diff())
        sys.stdout.flush()
    for change in result.changes:
        say(f"{change.action:7} {change.path}")
    for note in result.notes:
        if note.startswith(WARNING):
            say(f"clustcontrol: {note}", err)
        else:
            say(f"note: {note}")
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

    Installs the initramfs-tools hook and scripts and the engine modules, sets
    initramfs.conf for a network boot, comments out the root line of etc/fstab, disables the
    udev persistent-net generator, sets the boot interface to 'manual', installs an update-grub
    stub.

    \b
    Example:
      clustcontrol image prepare default --dry-run
      clustcontrol image prepare default --rebuild-initramfs && clustcontrol image commit default \
        && clustcontrol image publish default
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
    if result.tree is not None:
        out.print(
            f"tree: {result.tree.linked} file(s) linked to the previous generation, "
            f"{result.tree.copied} copied ({human_bytes(result.tree.bytes_copied)})"
        )
    if result.secrets:
        out.print(
            f"secrets: {result.secrets} path(s) kept out of the served tree, "
            f"{result.secrets_archived} for the nodes in its secrets archive"
        )
    if result.dense:
        out.print(
            f"dense: {result.dense} file(s) with zero blocks kept fully allocated on the nodes"
        )
    for path in result.dense_unlisted:
        out.print(
            f"not listed as dense (its nodes get holes in it): {unlistable(path)}", markup=False
        )
    if result.pruned:
        out.print(f"removed old generation(s): {' '.join(result.pruned)}")
    if result.tainted:
        out.print(f"removed generation(s) that served files now secret: {' '.join(result.tainted)}")
    if result.deltas:
        written = sum(delta.skipped is None for delta in result.deltas)
        out.print(f"deltas: from {written} earlier generation(s)")
    for delta in result.deltas:
        if delta.skipped is not None:
            say(f"no delta from {delta.source} (its nodes sync the whole tree): {delta.skipped}")


@click.command()
@prefix_option("Installation prefix the image roots and manifests are resolved under.")
@output_option
@pass_state
def status(state: State, root: Path, output: str) -> None:
    """Each standard root: its committed generation, any changes not yet committed, and the
    generation trees kept with their size and age.

    Exit status 1 when any image needs the administrator: uncommitted changes (nodes would not
    get them), no generation or a current generation without its tree (nodes cannot sync), or
    an image that cannot be looked at (its root is missing).

    \b
    Example:
      clustcontrol status
    """
    inv = state.inventory()
    states = [_image_status(inv, name, root) for name in inv.images]
    now = time.time()
    rows = [
        {
            "image": st.image,
            "root": st.root,
            "generation": st.committed,
            "uncommitted": None if st.uncommitted is None else st.uncommitted.summary(),
            "uncommitted_paths": None
            if st.uncommitted is None
            else {
                "added": list(st.uncommitted.added),
                "changed": list(st.uncommitted.changed),
                "removed": list(st.uncommitted.removed),
            },
            "warning": st.warning,
            "generations": [
                {
                    "generation": u.generation,
                    "current": u.generation == st.committed,
                    "files": u.files,
                    "bytes": u.bytes,
                    "own_bytes": u.own_bytes,
                    "age_seconds": round(now - u.mtime),
                }
                for u in st.generations
            ],
        }
        for st in states
    ]
    if output == "json":
        print_rows(True, rows, "images", [])
    else:
        print_rows(False, rows, "images", ["image", "root", "generation", "uncommitted"])
        kept = [
            {
                "image": st.image,
                "generation": u.generation + (" (current)" if u.generation == st.committed else ""),
                "regular files": u.files,
                "size": human_bytes(u.bytes),
                "own space": human_bytes(u.own_bytes),
                "age": human_age(now - u.mtime),
            }
            for st in states
            for u in st.generations
        ]
        print_rows(
            False,
            kept,
            "generations",
            ["image", "generation", "regular files", "size", "own space", "age"],
        )
    warnings = [st.warning for st in states if st.warning]
    for warning in warnings:
        say(f"clustcontrol: WARNING: {warning}", err)
    if warnings:
        sys.exit(EXIT_FAILURE)


def _image_status(inv: Inventory, name: str, root: Path) -> ImageStatus:
    """image_status with the kept trees' usage; an image that cannot be looked at (a missing
    root, a damaged manifest) gives its problem instead of stopping the whole status."""
    try:
        return image_status(inv, name, root_prefix=root, usage=True)
    except (ClustcontrolError, OSError, ValueError, EOFError) as exc:
        why = exc.message if isinstance(exc, ClustcontrolError) else f"{exc}"
        return ImageStatus(name, inv.images[name].root, None, False, None, (), why)
