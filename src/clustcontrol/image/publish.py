"""`clustcontrol image publish NAME`: the image's kernel and initrd into the TFTP tree, then the
PXELINUX files refreshed (through apply's installer, so its manifest and lock are respected).

    <tftp_root>/<boot_dir>/<NAME>/vmlinuz      <- ROOT/boot/vmlinuz-VERSION (or images.NAME.kernel)
    <tftp_root>/<boot_dir>/<NAME>/initrd.img   <- ROOT/boot/initrd.img-VERSION (or .initrd)

ROOT is the tree of the image's current generation, so the kernel nodes boot matches the
modules they sync; before the first commit, the working tree.

'newest' is the highest VERSION in Debian version order among the vmlinuz-VERSION that have an
initrd.img-VERSION beside them."""

from __future__ import annotations

from pathlib import Path
from posixpath import join as pjoin

from clustcontrol.apply import Change, Installer, apply_tree
from clustcontrol.errors import InvalidInputError
from clustcontrol.image.common import ImageResult, ImageTree, image_tree
from clustcontrol.image.debversion import version_key
from clustcontrol.image.generation import GenerationStore
from clustcontrol.inventory.model import NEWEST, Inventory
from clustcontrol.render import RenderContext, render_all
from clustcontrol.render.view import ClusterView

KERNEL_PREFIX = "vmlinuz-"
INITRD_PREFIX = "initrd.img-"


def _names(boot: Path, prefix: str) -> dict[str, str]:
    """version -> file name, for the files prefix+VERSION in boot."""
    if not boot.is_dir():
        return {}
    return {p.name.removeprefix(prefix): p.name for p in boot.glob(f"{prefix}*") if p.is_file()}


def _in_image(tree: ImageTree, name: str) -> Path:
    """ROOT/boot/name, a symlink followed inside the image (absolute targets are image-relative)."""
    path = tree.live("boot") / name
    if not path.is_symlink():
        return path
    target = path.readlink()
    return tree.live(str(target).lstrip("/")) if target.is_absolute() else path.parent / target


def _problem(tree: ImageTree, field: str, value: str, why: str) -> InvalidInputError:
    return InvalidInputError(
        [f"images.{tree.name}.{field}: {value!r} {why}"],
        hint=f"install a kernel in the image (chroot {tree.root} apt-get install linux-image-amd64)"
        f" or set images.{tree.name}.{field} to a file in {tree.live('boot')}",
    )


def select_boot_files(tree: ImageTree) -> tuple[str, str]:
    """The kernel and initrd file names in ROOT/boot for this image.

    Names set in the inventory must be files there (a symlink is followed inside the image);
    `newest` picks the highest vmlinuz-VERSION in Debian version order (deb-version(7)) that
    has an initrd.img-VERSION (any vmlinuz-VERSION when the initrd is named explicitly), and
    the initrd of the chosen kernel's VERSION. Returns (kernel name, initrd name), names in
    ROOT/boot. Raises InvalidInputError when a named file is missing or no pair is found."""
    boot = tree.live("boot")
    kernel, initrd = tree.image.kernel, tree.image.initrd
    kernels, initrds = _names(boot, KERNEL_PREFIX), _names(boot, INITRD_PREFIX)
    for field, value in (("kernel", kernel), ("initrd", initrd)):
        if value != NEWEST and not _in_image(tree, value).is_file():
            raise _problem(tree, field, value, f"is not a file in {boot}")
    if kernel == NEWEST:
        paired = {v: k for v, k in kernels.items() if v in initrds}
        candidates = kernels if initrd != NEWEST else paired
        if not candidates:
            why = f"finds no vmlinuz-VERSION with an initrd.img-VERSION in {boot}"
            raise _problem(tree, "kernel", NEWEST, why)
        kernel = candidates[max(candidates, key=version_key)]
    if initrd == NEWEST:
        version = _in_image(tree, kernel).name.removeprefix(KERNEL_PREFIX)
        if version not in initrds:
            raise _problem(tree, "initrd", NEWEST, f"finds no initrd.img-{version} in {boot}")
        initrd = initrds[version]
    return kernel, initrd


def _copy_change(installer: Installer, source: Path, target: str) -> Change | None:
    new = source.read_bytes()
    old = installer.read(target)
    if old == new:
        return None
    return Change(target, "create" if old is None else "update", "pxe", old, new, 0o644)


def boot_file_changes(inv: Inventory, tree: ImageTree) -> tuple[list[Change], str]:
    """The copies of the image's kernel and initrd to BOOT_ROOT/NAME/vmlinuz and initrd.img.

    Returns (changes for the files whose content differs, a note naming the chosen files).
    Raises InvalidInputError as select_boot_files, OSError when a file cannot be read."""
    kernel, initrd = select_boot_files(tree)
    target = pjoin(ClusterView(inv).boot_root, tree.name)
    pairs = ((kernel, "vmlinuz"), (initrd, "initrd.img"))
    changes = [_copy_change(tree.installer, _in_image(tree, s), pjoin(target, t)) for s, t in pairs]
    note = f"image {tree.name}: kernel {kernel}, initrd {initrd}"
    return [c for c in changes if c is not None], note


def _boot_source(inv: Inventory, tree: ImageTree, root_prefix: Path) -> tuple[ImageTree, str]:
    """Where the boot files come from: the current generation's tree, or the working tree when
    nothing was committed yet; and a note saying which."""
    store = GenerationStore.for_image(root_prefix, tree.name, inv.cluster.state_dir)
    current = store.current()
    if current is None or not store.tree(current).is_dir():
        return tree, f"from the working tree {tree.image.root}: no generation committed yet"
    root = pjoin(inv.generation_roots(tree.name), current)
    image = tree.image.model_copy(update={"root": root})
    return ImageTree(tree.name, image, tree.installer), f"from generation {current}"


def publish_image(
    inv: Inventory,
    name: str,
    *,
    dry_run: bool,
    root_prefix: Path = Path("/"),
) -> ImageResult:
    """Copy the image's kernel and initrd into the TFTP tree and refresh the PXELINUX files.

    Everything is under `root_prefix` (the live system by default); the copies are written
    under apply's lock, then the `pxe` service is applied (a partial apply, see
    Installer.plan). With `dry_run` nothing is written. Returns the changes and a note naming
    the kernel and initrd. Raises InvalidInputError for an unknown image or missing boot files,
    ClustcontrolError when the image root is not a directory, LockedError when an apply holds
    the lock, and OSError when a file cannot be read or written. The files come from the current
    generation's tree (the working tree before the first commit)."""
    tree = image_tree(inv, name, root_prefix)
    installer = tree.installer
    source, whence = _boot_source(inv, tree, root_prefix)
    changes, note = boot_file_changes(inv, source)
    note = f"{note} ({whence})"
    if not dry_run and changes:
        with installer.lock():
            installer.write(changes)
    rendered = render_all(RenderContext(inv, previous=installer.read))
    pxe = apply_tree(inv, rendered, root_prefix, dry_run=dry_run, services={"pxe"})
    return ImageResult((*changes, *pxe.changes), (note,), dry_run)
