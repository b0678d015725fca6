"""`clustcontrol image prepare NAME`: make a standard root boot-and-sync capable.

Each step is a small function returning the Step (changes + notes) it needs, or an empty Step when
it does not apply. All changes are computed first, then written (atomic writes); a dry run writes
nothing. A second run finds nothing to change.

    install_node_files        our initramfs-tools conf/hook/scripts and the shell library
    configure_initramfs       initramfs.conf: BOOT=local, MODULES=most
    configure_fstab           comment out the root mount (the root comes from root= on the cmdline)
    configure_persistent_net  disable udev's old persistent-net generator, where there is one
    configure_interfaces      the boot interface: `inet manual` (the kernel configured it)
    install_update_grub_stub  a no-op update-grub, so kernel installs in the image do not fail
    configure_ssh_host_keys   sshd generates a node's own host keys at its first boot
    install_bootable_disk     optional: rc.local part that makes the node's disk bootable
    rebuild_initramfs         optional: chroot ROOT update-initramfs
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from clustcontrol.contract import CONFD_FILE, CONTROL_DIR, ENGINE_DIR
from clustcontrol.errors import ClustcontrolError
from clustcontrol.image import edits
from clustcontrol.image.common import (
    WARNING,
    ImageResult,
    ImageTree,
    Step,
    image_tree,
    write_changes,
)
from clustcontrol.inventory.model import Inventory
from clustcontrol.run import require, run

INITRAMFS_CONF = "etc/initramfs-tools/initramfs.conf"
# MODULES=most, not netboot: mkinitramfs' netboot set is `base net` only (NIC drivers, nfs, ext4),
# without the ata/scsi/block/nvme drivers the sync engine needs to partition and write the local
# disk. `most` is every set including `net`, so NIC and NFS modules are in as well.
INITRAMFS_SETTINGS = {"BOOT": "local", "MODULES": "most"}
FSTAB = "etc/fstab"
INTERFACES = "etc/network/interfaces"
INTERFACES_D = "etc/network/interfaces.d"
NET_GENERATOR = "udev/rules.d/75-persistent-net-generator.rules"
OLD_NET_RULES = "etc/udev/rules.d/70-persistent-net.rules"
UPDATE_GRUB = "usr/sbin/update-grub"
UPDATE_GRUB_MARK = "# clustcontrol: update-grub stub"
UPDATE_GRUB_STUB = f"""#!/bin/sh
{UPDATE_GRUB_MARK}. Nodes boot by PXE (and optionally extlinux), never by
# GRUB, so kernel installs in this standard root must not fail on update-grub. Written by
# `clustcontrol image prepare`; replace it by removing this file and reinstalling grub.
exit 0
""".encode()
SSH_HOST_KEYS_DROPIN = "etc/systemd/system/ssh.service.d/clustcontrol-host-keys.conf"
SSH_HOST_KEYS_UNIT = b"""\
# clustcontrol image prepare: nodes keep their own SSH host keys across syncs and never get the
# standard's; a node without keys (its first boot) generates them before sshd's config test.
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
"""
BOOTABLE_DISK_SCRIPT = "usr/share/clustcontrol/make-disk-bootable"
RC_LOCAL = "etc/rc.local"
RC_LOCAL_BLOCK = f"""\
# Make this node's local disk bootable with extlinux (clustcontrol image prepare --bootable-disk).
if [ -x /{BOOTABLE_DISK_SCRIPT} ]; then
    /{BOOTABLE_DISK_SCRIPT} || echo "clustcontrol: make-disk-bootable failed" >&2
fi
"""


@dataclass(frozen=True)
class NodeFile:
    """One file `image prepare` installs into the standard root: `source` is relative to the
    package's node/ directory (node_package()), `target` relative to the image root, `mode`
    the permission bits it must have: 0755 for what is executed (the initramfs-tools hook and
    boot scripts, make-disk-bootable), 0644 for what is sourced (the conf.d file, the engine's
    modules)."""

    source: str  # relative to the package's node/ directory
    target: str  # relative to the image root
    mode: int


NODE_FILES = (
    NodeFile("initramfs-tools/conf.d/clustcontrol", CONFD_FILE, 0o644),
    NodeFile("initramfs-tools/hooks/clustcontrol", "etc/initramfs-tools/hooks/clustcontrol", 0o755),
    NodeFile(
        "initramfs-tools/scripts/local-top/clustcontrol",
        "etc/initramfs-tools/scripts/local-top/clustcontrol",
        0o755,
    ),
    NodeFile(
        "initramfs-tools/scripts/local-bottom/clustcontrol",
        "etc/initramfs-tools/scripts/local-bottom/clustcontrol",
        0o755,
    ),
)
OLD_FUNCTIONS = "usr/share/clustcontrol/functions"
BOOTABLE_DISK_FILE = NodeFile("extras/make-disk-bootable", BOOTABLE_DISK_SCRIPT, 0o755)


def node_package() -> Traversable:
    """The node-side files shipped in the clustcontrol package."""
    return resources.files("clustcontrol").joinpath("node")


def _node_file_data(file: NodeFile) -> bytes:
    source = node_package().joinpath(file.source)
    if not source.is_file():
        raise ClustcontrolError(
            f"the clustcontrol package lacks its node file node/{file.source}",
            hint="reinstall clustcontrol (pip install .) from a complete source tree",
        )
    return source.read_bytes()


def _install(tree: ImageTree, file: NodeFile) -> Step:
    change = tree.change(file.target, _node_file_data(file), file.mode)
    mode_only = change is not None and change.old == change.new
    notes = [f"{tree.path(file.target)}: mode set to {file.mode:o}"] if mode_only else []
    return Step.of([change], notes)


def engine_files() -> tuple[NodeFile, ...]:
    """The engine's modules (node/engine/*.sh) and where they go in the standard root.

    Returns:
        one NodeFile per module, target under contract.ENGINE_DIR, mode 0644 (sourced)."""
    modules = sorted(
        entry.name
        for entry in node_package().joinpath("engine").iterdir()
        if entry.name.endswith(".sh")
    )
    return tuple(NodeFile(f"engine/{m}", f"{ENGINE_DIR}/{m}", 0o644) for m in modules)


def node_files() -> tuple[NodeFile, ...]:
    """Every node file `image prepare` installs: NODE_FILES and the engine's modules."""
    return (*NODE_FILES, *engine_files())


def install_node_files(tree: ImageTree) -> Step:
    """Our initramfs-tools conf.d file, hook and scripts, and the engine's modules.

    Args:
        tree: the standard root.
    Returns:
        the changes (content or mode) and a note for each file whose mode alone changes, plus
        one about the shell library of earlier versions, which the hook no longer installs.
    Raises:
        ClustcontrolError: the package lacks one of its node files."""
    steps = [_install(tree, file) for file in node_files()]
    if tree.read(OLD_FUNCTIONS) is not None:
        steps.append(
            Step.of(notes=[f"{tree.path(OLD_FUNCTIONS)}: left by an earlier version, unused now"])
        )
    return Step.of([c for s in steps for c in s.changes], [n for s in steps for n in s.notes])


def configure_initramfs(tree: ImageTree) -> Step:
    """Set BOOT=local and MODULES=most in the image's initramfs.conf (INITRAMFS_SETTINGS).

    BOOT=local selects the initramfs' local-* boot scripts (initramfs.conf(5), and "boot" in
    initramfs-tools(7)), among them our local-top script that syncs the disk; a boot= on the
    kernel command line still wins (the update node's boot=nfs). MODULES=most includes the
    disk drivers as well as the network and NFS ones (initramfs.conf(5); see the note at
    INITRAMFS_SETTINGS). Each KEY= assignment is changed in place, a missing one appended
    (edits.set_shell_vars).

    Args:
        tree: the standard root.
    Returns:
        the change to etc/initramfs-tools/initramfs.conf, or an empty Step when both are set.
    Raises:
        ClustcontrolError: the image has no initramfs.conf (initramfs-tools not installed)."""
    old = tree.read(INITRAMFS_CONF)
    if old is None:
        raise ClustcontrolError(
            f"{tree.live(INITRAMFS_CONF)} does not exist: initramfs-tools is not installed in "
            f"image {tree.name!r}",
            hint=f"chroot {tree.root} apt-get install initramfs-tools",
        )
    new, _done = edits.set_shell_vars(edits.decode(old), INITRAMFS_SETTINGS)
    return Step.of([tree.change(INITRAMFS_CONF, edits.encode(new))])


def configure_fstab(tree: ImageTree) -> Step:
    """Comment out the image's fstab lines that mount `/` (second field, fs_file in fstab(5)):
    a node's root is the local partition named by root= on its kernel command line.

    Args:
        tree: the standard root.
    Returns:
        the change to etc/fstab (none when no such line is left), or only a note when the
        image has no etc/fstab."""
    old = tree.read(FSTAB)
    if old is None:
        return Step.of(notes=[f"{tree.path(FSTAB)}: absent, nothing to comment out"])
    new, _commented = edits.comment_root_mount(edits.decode(old))
    return Step.of([tree.change(FSTAB, edits.encode(new))])


def configure_persistent_net(tree: ImageTree) -> Step:
    """Old udev (Debian <= 8) writes per-MAC interface names at first boot; nodes share one image,
    so the generator must not run. Modern udev has no such rule: nothing to do then."""
    notes: list[str] = []
    if tree.read(OLD_NET_RULES):
        notes.append(f"{tree.path(OLD_NET_RULES)} pins interface names to MACs: empty it")
    local = f"etc/{NET_GENERATOR}"
    current = tree.read(local)
    if current is None:
        current = tree.read(f"lib/{NET_GENERATOR}")
        if current is None:
            notes.append("no persistent-net generator rule in this root (modern udev)")
            return Step.of(notes=notes)
    text = edits.decode(current)
    if edits.UDEV_LABEL not in text:
        notes.append(f"{tree.path(local)}: no {edits.UDEV_LABEL} in the rule; left alone")
        return Step.of(notes=notes)
    return Step.of([tree.change(local, edits.encode(edits.disable_net_generator(text)))], notes)


def configure_interfaces(tree: ImageTree) -> Step:
    """Give the image's boot interface (images.NAME.boot_interface) the `manual` method in
    etc/network/interfaces: the kernel configured it from ip=dhcp before the root was mounted,
    and ifupdown must not configure it again.

    A `dhcp` or `static` stanza for it becomes `inet manual` (a static one loses its option
    lines), one with another method is left alone with a note, a missing one is added, and a
    missing file is created with loopback and the interface (edits.manual_iface,
    edits.default_interfaces). Files in etc/network/interfaces.d that also define the
    interface are only named in a note.

    Args:
        tree: the standard root.
    Returns:
        the change to etc/network/interfaces (none when it is already right) and the notes."""
    ifname = tree.image.boot_interface
    old = tree.read(INTERFACES)
    notes = _boot_interface_warnings(tree, ifname)
    if old is None:
        new = edits.default_interfaces(ifname)
        notes.append(f"{tree.path(INTERFACES)}: created with iface {ifname} inet manual")
    else:
        new, changed = edits.manual_iface(edits.decode(old), ifname)
        notes += changed
    notes += _other_definitions(tree, ifname)
    return Step.of([tree.change(INTERFACES, edits.encode(new))], notes)


def _boot_interface_warnings(tree: ImageTree, ifname: str) -> list[str]:
    """A warning when the standard configures other interfaces (dhcp or static, in
    etc/network/interfaces or interfaces.d) but not the boot interface, unless the kernel
    arguments keep the old names (net.ifnames=0): with predictable names (ens3, enp1s0) the
    node's NIC is not `ifname`, and ifupdown would configure it again after the kernel did (an
    update node on its NFS root loses the root)."""
    texts = [tree.read(INTERFACES) or b""]
    if tree.is_dir(INTERFACES_D):
        texts += [
            tree.read(f"{INTERFACES_D}/{n}") or b""
            for n in tree.listdir(INTERFACES_D)
            if tree.is_file(f"{INTERFACES_D}/{n}")
        ]
    stanzas = [s for t in texts for s in edits.configured_interfaces(t.decode(errors="replace"))]
    if any(name == ifname for name, _ in stanzas) or "net.ifnames=0" in tree.image.kernel_args:
        return []
    others = [(n, m) for n, m in stanzas if n != "lo" and m in ("dhcp", "static")]
    if not others:
        return []
    first, image = others[0][0], tree.name
    shown = ", ".join(f"{n} (inet {m})" for n, m in others)
    return [
        f"{WARNING}image {image}: the standard configures {shown} but not the boot interface "
        f"{ifname} (images.{image}.boot_interface): with predictable interface names the "
        f"node's NIC is not {ifname}, and ifupdown would configure it again after the kernel "
        f"did (a node booted read-write over NFS loses its root). Set "
        f"images.{image}.boot_interface: {first}, or add net.ifnames=0 to "
        f"images.{image}.kernel_args to keep the name {ifname}"
    ]


def _other_definitions(tree: ImageTree, ifname: str) -> list[str]:
    if not tree.is_dir(INTERFACES_D):
        return []
    found = []
    for name in tree.listdir(INTERFACES_D):
        rel = f"{INTERFACES_D}/{name}"
        text = (tree.read(rel) or b"").decode(errors="replace") if tree.is_file(rel) else ""
        if f"iface {ifname} " in text:
            found.append(f"{tree.path(rel)} also configures {ifname}; check it by hand")
    return found


def install_update_grub_stub(tree: ImageTree) -> Step:
    """A real update-grub (grub installed in the image) is never replaced: it is skipped with a
    note, since it only rewrites the image's own grub.cfg and does no harm to the sync."""
    current = tree.read(UPDATE_GRUB)
    if current is not None and UPDATE_GRUB_MARK.encode() not in current:
        return Step.of(
            notes=[
                f"{tree.path(UPDATE_GRUB)} is a real update-grub (grub is installed in the image); "
                "left alone. To stub it: dpkg-divert --rename it in the image, then prepare again"
            ]
        )
    return Step.of([tree.change(UPDATE_GRUB, UPDATE_GRUB_STUB, 0o755)])


def configure_ssh_host_keys(tree: ImageTree) -> Step:
    """The sync keeps each node's SSH host keys and never copies the standard's, so a node's
    first boot has none: sshd's unit generates them before its own config test."""
    return Step.of([tree.change(SSH_HOST_KEYS_DROPIN, SSH_HOST_KEYS_UNIT)])


def install_bootable_disk(tree: ImageTree) -> Step:
    """The script goes next to the engine (usr/share/clustcontrol); a managed block in
    /etc/rc.local runs it (systemd's rc-local.service runs /etc/rc.local when executable;
    nothing runs rc.local.d)."""
    script = _install(tree, BOOTABLE_DISK_FILE)
    old = tree.read(RC_LOCAL)
    text = None if old is None else edits.decode(old)
    new = edits.rc_local_with_block(text, RC_LOCAL_BLOCK, str(tree.live(RC_LOCAL)))
    notes = list(script.notes)
    if not any(tree.exists(f"{d}/extlinux") for d in ("usr/bin", "bin")):
        notes.append(
            f"extlinux is not installed in image {tree.name!r}: chroot {tree.root} "
            "apt-get install extlinux syslinux-common"
        )
    return Step.of([*script.changes, tree.change(RC_LOCAL, edits.encode(new), 0o755)], notes)


def update_initramfs_argv(tree: ImageTree) -> list[str]:
    """chroot ROOT update-initramfs: -u for kernels that have an initrd, -c when none has one."""
    has_initrd = tree.is_dir("boot") and any(
        name.startswith("initrd.img-") for name in tree.listdir("boot")
    )
    return ["chroot", str(tree.root), "update-initramfs", "-u" if has_initrd else "-c", "-k", "all"]


def require_update_initramfs(tree: ImageTree) -> None:
    """Check that `--rebuild-initramfs` can run, before anything is written.

    Args:
        tree: the standard root; update-initramfs must be in its usr/sbin or sbin.
    Raises:
        ClustcontrolError: the image has no update-initramfs (initramfs-tools not installed).
        CommandError: chroot is not installed on the master (package coreutils)."""
    if not any(tree.exists(f"{d}/update-initramfs") for d in ("usr/sbin", "sbin")):
        raise ClustcontrolError(
            f"{tree.root} has no update-initramfs: initramfs-tools is not installed in image "
            f"{tree.name!r}",
            hint=f"chroot {tree.root} apt-get install initramfs-tools",
        )
    require("chroot", "coreutils")


def run_update_initramfs(tree: ImageTree, control_dir: str = CONTROL_DIR) -> str:
    """Run update_initramfs_argv in the standard root.

    Args:
        tree: the standard root.
        control_dir: the control directory inside it, which the hook bakes into the initramfs.
    Returns:
        the command line that ran, for the notes.
    Raises:
        CommandError: update-initramfs failed or took longer than 900 seconds."""
    argv = update_initramfs_argv(tree)
    run(argv, timeout=900, env={"CC_CONTROL_SRC": control_dir})
    return " ".join(argv)


def prepare_image(
    inv: Inventory,
    name: str,
    *,
    dry_run: bool,
    rebuild_initramfs: bool = False,
    bootable_disk: bool = False,
    root_prefix: Path = Path("/"),
) -> ImageResult:
    """`clustcontrol image prepare NAME`: run every step (see the module docstring) on the
    image's root, then write all their changes at once.

    Args:
        inv: the inventory.
        name: the image (a key of `images`).
        dry_run: compute the changes and notes but write nothing and run nothing.
        rebuild_initramfs: after writing, run `chroot ROOT update-initramfs` (see
            update_initramfs_argv); its presence is checked before anything is written.
        bootable_disk: also install the make-disk-bootable script and its rc.local block.
        root_prefix: the installation prefix the image root is found under ("/" on a real
            master).
    Returns:
        the changes (written, or that would be written) and the notes of every step, in step
        order, then the update-initramfs command line ("would run: ..." or "ran: ..."); a
        second run on the same root finds no change.
    Raises:
        InvalidInputError: no image `name` in the inventory.
        ClustcontrolError: the root is not a directory, initramfs-tools is missing from the
            image, or the package lacks one of its node files.
        CommandError: chroot is missing, or update-initramfs failed or timed out (900 s).
        OSError: a file cannot be read or written."""
    tree = image_tree(inv, name, root_prefix)
    if rebuild_initramfs:
        require_update_initramfs(tree)  # before anything is written
    steps: list[Callable[[ImageTree], Step]] = [
        install_node_files,
        configure_initramfs,
        configure_fstab,
        configure_persistent_net,
        configure_interfaces,
        install_update_grub_stub,
        configure_ssh_host_keys,
    ]
    if bootable_disk:
        steps.append(install_bootable_disk)
    done = [step(tree) for step in steps]
    changes = tuple(c for s in done for c in s.changes)
    notes = [n for s in done for n in s.notes]
    if dry_run:
        if rebuild_initramfs:
            notes.append(f"would run: {' '.join(update_initramfs_argv(tree))}")
        return ImageResult(changes, tuple(notes), dry_run=True)
    write_changes(tree, changes)
    if rebuild_initramfs:
        notes.append(f"ran: {run_update_initramfs(tree, inv.cluster.control_dir)}")
    return ImageResult(changes, tuple(notes), dry_run=False)
