"""`clustcontrol image publish NAME`: the image's kernel and initrd into the TFTP tree, then the
PXELINUX files refreshed (through apply's installer, so its manifest and lock are respected).

    <tftp_root>/<boot_dir>/<NAME>/vmlinuz      <- ROOT/boot/vmlinuz-VERSION (or images.NAME.kernel)
    <tftp_root>/<boot_dir>/<NAME>/initrd.img   <- ROOT/boot/initrd.img-VERSION (or .initrd)

ROOT is the tree of the image's current generation, so the kernel nodes boot matches the
modules they sync; before the first commit, the working tree.

'newest' is the highest VERSION in Debian version order among the vmlinuz-VERSION that have an
initrd.img-VERSION beside them; a name that is not a plain file name (a control character, a
blank) is never chosen. An initrd that others may not read is never published (TFTP serves it
to anyone).

The boot files are read inside ROOT only: a symbolic link there, absolute (Debian's
boot/vmlinuz -> /boot/vmlinuz-VERSION) or through '..', is resolved as the image's nodes see it,
never on the master (common.ImageTree), so no file of the master is ever copied to TFTP."""

from __future__ import annotations

import posixpath
import stat
from pathlib import Path
from posixpath import join as pjoin

from clustcontrol.apply import Change, apply_tree
from clustcontrol.errors import InvalidInputError
from clustcontrol.image.common import ImageResult, ImageTree, image_tree
from clustcontrol.image.debversion import version_key
from clustcontrol.image.generation import GenerationStore
from clustcontrol.inventory.model import NEWEST, Inventory
from clustcontrol.inventory.types import is_file_name
from clustcontrol.render import RenderContext, render_all
from clustcontrol.render.view import ClusterView

BOOT = "boot"
KERNEL_PREFIX = "vmlinuz-"
INITRD_PREFIX = "initrd.img-"


def _names(tree: ImageTree, prefix: str) -> dict[str, str]:
    """version -> file name, for the names prefix+VERSION in ROOT/boot that lead to regular
    files inside the image and are plain file names (types.is_file_name, as an inventory's
    `kernel` must be): a name with a control character, a blank or a quote, which the update
    node can plant, is never chosen, so it never reaches the terminal or a PXELINUX file."""
    if not tree.is_dir(BOOT):
        return {}
    return {
        name.removeprefix(prefix): name
        for name in tree.listdir(BOOT)
        if name.startswith(prefix) and is_file_name(name) and tree.is_file(f"{BOOT}/{name}")
    }


def _problem(tree: ImageTree, field: str, value: str, why: str) -> InvalidInputError:
    return InvalidInputError(
        [f"images.{tree.name}.{field}: {value!r} {why}"],
        hint=f"install a kernel in the image (chroot {tree.root} apt-get install linux-image-amd64)"
        f" or set images.{tree.name}.{field} to a file in {tree.live(BOOT)}",
    )


def select_boot_files(tree: ImageTree) -> tuple[str, str]:
    """The kernel and initrd file names in ROOT/boot for this image.

    Names set in the inventory must lead to regular files there; `newest` picks the highest
    vmlinuz-VERSION in Debian version order (deb-version(7)) that has an initrd.img-VERSION
    (any vmlinuz-VERSION when the initrd is named explicitly), and the initrd of the chosen
    kernel's VERSION (for a link such as boot/vmlinuz, the VERSION of the file it leads to).
    Links are followed inside the image as its nodes see them (ImageTree): an absolute target
    starts at the image root, and nothing outside it is ever looked at.

    Returns (kernel name, initrd name), names in ROOT/boot. Raises InvalidInputError when a
    named file is missing or no pair is found, UnsafePathError when a link loops."""
    boot = tree.live(BOOT)
    kernel, initrd = tree.image.kernel, tree.image.initrd
    kernels, initrds = _names(tree, KERNEL_PREFIX), _names(tree, INITRD_PREFIX)
    for field, value in (("kernel", kernel), ("initrd", initrd)):
        if value != NEWEST and not tree.is_file(f"{BOOT}/{value}"):
            raise _problem(tree, field, value, f"is not a file in {boot}")
    if kernel == NEWEST:
        paired = {v: k for v, k in kernels.items() if v in initrds}
        candidates = kernels if initrd != NEWEST else paired
        if not candidates:
            why = f"finds no vmlinuz-VERSION with an initrd.img-VERSION in {boot}"
            raise _problem(tree, "kernel", NEWEST, why)
        kernel = candidates[max(candidates, key=version_key)]
    if initrd == NEWEST:
        real = posixpath.basename(tree.resolve(f"{BOOT}/{kernel}"))
        version = real.removeprefix(KERNEL_PREFIX)
        if version not in initrds:
            raise _problem(tree, "initrd", NEWEST, f"finds no initrd.img-{version} in {boot}")
        initrd = initrds[version]
    return kernel, initrd


def check_public_initrd(tree: ImageTree, name: str) -> None:
    """Refuse to publish an initrd that others may not read in the image: TFTP serves every
    file of its tree to anyone on the cluster network (tftpd-hpa has no access control), and
    the copy is 0644. An initrd built with initramfs-tools' UMASK=0077 (initramfs.conf(5)) is
    0600 because it holds what must stay private: cryptsetup keyfiles, dropbear's host keys.
    (The kernel is a package's file, the same bytes anyone can download; Ubuntu installs it
    0600 all the same, so its mode says nothing.)

    `name` is a file in ROOT/boot (links followed inside the image). Raises InvalidInputError
    naming the file, its mode and why when it is not readable by others (mode & 0o004)."""
    mode = tree.mode(f"{BOOT}/{name}")
    if mode is not None and not mode & stat.S_IROTH:
        raise InvalidInputError(
            [
                f"images.{tree.name}.initrd: {tree.live(BOOT)}/{name} is mode {mode:04o}, not "
                "readable by others: TFTP would serve it to anyone on the cluster network"
            ],
            hint="a private initrd (initramfs-tools UMASK=0077) holds keys (cryptsetup "
            "keyfiles, dropbear host keys) that must not be published; rebuild it without them, "
            "then make it 0644 in the standard and commit",
        )


def _copy_change(tree: ImageTree, field: str, name: str, target: str) -> Change | None:
    new = tree.read(f"{BOOT}/{name}")
    if new is None:  # removed since it was selected
        raise _problem(tree, field, name, f"is not a file in {tree.live(BOOT)}")
    old = tree.installer.read(target)
    if old == new:
        return None
    return Change(target, "create" if old is None else "update", "pxe", old, new, 0o644)


def boot_file_changes(inv: Inventory, tree: ImageTree) -> tuple[list[Change], str]:
    """The copies of the image's kernel and initrd to BOOT_ROOT/NAME/vmlinuz and initrd.img
    (read inside the image root, see select_boot_files; written 0644 under the prefix).

    Returns (changes for the files whose content differs, a note naming the chosen files).
    Raises InvalidInputError as select_boot_files and check_public_initrd, UnsafePathError
    when a boot file is not a regular file or its links loop, OSError when a file cannot be
    read."""
    kernel, initrd = select_boot_files(tree)
    check_public_initrd(tree, initrd)
    target = pjoin(ClusterView(inv).boot_root, tree.name)
    pairs = (("kernel", kernel, "vmlinuz"), ("initrd", initrd, "initrd.img"))
    changes = [_copy_change(tree, f, s, pjoin(target, t)) for f, s, t in pairs]
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
    the kernel and initrd. Raises InvalidInputError for an unknown image, missing boot files or
    an initrd others may not read (nothing is written then), ClustcontrolError when the image
    root is not a directory, UnsafePathError when a boot file is not a regular file or its
    links loop, LockedError when an apply holds the lock, and OSError when a file cannot be
    read or written. The files come from the current
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
