"""PXELINUX tree under the TFTP root, and tftpd-hpa's /etc/default/tftpd-hpa.

    <tftp_root>/<boot_dir>/pxelinux.0, ldlinux.c32     copied from the syslinux packages
    <tftp_root>/<boot_dir>/pxelinux-common             the labels, one pair per image
    <tftp_root>/<boot_dir>/pxelinux.cfg/default        regular nodes: sync boot of the default image
    <tftp_root>/<boot_dir>/pxelinux.cfg/<HEX IP>       the update node (while one is set), and
                                                       nodes with their own image or kernel
                                                       arguments
Kernels and initrds live in <boot_dir>/<image>/{vmlinuz,initrd.img}, put there by
`clustcontrol image publish`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from posixpath import join as pjoin

from clustcontrol.contract import CONTROL_DIR, PARAMS, partition_device, switch
from clustcontrol.errors import ClustcontrolError
from clustcontrol.inventory.model import Inventory
from clustcontrol.render.base import Output, RenderContext, render_template, template_macro
from clustcontrol.render.view import ClusterView, HostView, ImageView, hex_ip

# What pxelinux.0 (syslinux 6) needs beside it; more modules only for menus, which we do not use.
BOOT_FILES = ("pxelinux.0", "ldlinux.c32")
TFTPD_DEFAULTS = "/etc/default/tftpd-hpa"


@dataclass(frozen=True)
class Label:
    """One PXELINUX LABEL clause as the templates write it: `kernel` and `initrd` are paths
    relative to the PXELINUX directory (PXELINUX resolves every file name relative to the
    directory pxelinux.0 was loaded from: PXELINUX README), `append` the kernel command line
    words, space-separated. The templates add IPAPPEND 2, with which PXELINUX appends
    BOOTIF=<hardware type>-<MAC of the boot interface> to the command line (syslinux.cfg
    documentation, "IPAPPEND"; /usr/share/doc/syslinux-common/asciidoc/syslinux.cfg.txt.gz)."""

    name: str
    kernel: str
    initrd: str
    append: str


def _console_args(inv: Inventory) -> list[str]:
    return [f"console={inv.cluster.serial_console}"] if inv.cluster.serial_console else []


def _source_args(inv: Inventory, image: ImageView) -> list[str]:
    """Where the node finds its standard: the NFS path, or a non-default rsync daemon port; and
    the control directory inside it when that is not the default."""
    args = []
    if image.transport == "nfs":
        args.append(f"{switch('CC_ARG_IMAGEROOT')}={inv.generation_roots(image.name)}")
    elif str(inv.cluster.rsync_port) != _default("CC_RSYNC_PORT"):
        args.append(f"{switch('CC_ARG_RSYNCPORT')}={inv.cluster.rsync_port}")
    if inv.cluster.control_dir != CONTROL_DIR:
        args.append(f"{switch('CC_ARG_CONTROL')}={inv.cluster.control_dir}")
    return args


def _default(key: str) -> str | None:
    return next(p.default for p in PARAMS if p.key == key)


def sync_label(
    inv: Inventory, name: str, image: ImageView, layout: str, extra: tuple[str, ...]
) -> Label:
    """The label of a sync boot: the initramfs syncs the local disk to `image`, then boots it.

    The command line holds, in this order: root= (the root partition of `layout`, which
    initramfs-tools mounts after the sync), ip=dhcp (the initramfs configures the network:
    initramfs-tools(7), "ip"), the clustcontrol switches server (the master), image and
    transport, then imageroot= for the NFS transport or, for the rsync transport, rsyncport=
    when cluster.rsync_port is not the default 873, and control= when cluster.control_dir is
    not the default; then console= (cluster.serial_console), the image's kernel_args and
    `extra`.

    Args:
        inv: the inventory.
        name: the label's name (e.g. linux, linux-IMAGE, linux-NODE).
        image: the image to sync.
        layout: the name of a disk layout (a key of disk_layouts).
        extra: kernel words appended last (a node's kernel_args).
    Returns:
        the Label (kernel and initrd IMAGE/vmlinuz and IMAGE/initrd.img).
    Raises:
        KeyError: `layout` is not a defined disk layout."""
    disk = inv.disk_layouts[layout]
    args = [
        f"root={partition_device(disk.device, disk.root.number)}",
        "ip=dhcp",
        f"{switch('CC_ARG_SERVER')}={inv.cluster.master.ip}",
        f"{switch('CC_ARG_IMAGE')}={image.name}",
        f"{switch('CC_ARG_TRANSPORT')}={image.transport}",
        *_source_args(inv, image),
        *_console_args(inv),
        *image.kernel_args,
        *extra,
    ]
    return Label(name, image.kernel_path, image.initrd_path, " ".join(args))


def nfsroot_label(inv: Inventory, name: str, image: ImageView, extra: tuple[str, ...]) -> Label:
    """The label of an NFS-root boot: the standard itself as the root, read-write (the update
    node, which installs software into the standard).

    The command line follows initramfs-tools' NFS boot (initramfs-tools(7): "root", "nfsroot",
    "boot", "ip"): root=/dev/nfs boot=nfs, nfsroot=MASTER:ROOT,vers=3,tcp (the form
    [server:]path[,options] its nfs script parses, options passed to the mount), ip=dhcp, rw
    (mounted read-write), the clustcontrol image switch, then console= (cluster.serial_console),
    the image's kernel_args and `extra`. Our local-top script skips the sync on such a boot.

    Args:
        inv: the inventory.
        name: the label's name (e.g. linuxnfsroot, linuxnfsroot-IMAGE).
        image: the image booted as the root.
        extra: kernel words appended last.
    Returns:
        the Label (kernel and initrd IMAGE/vmlinuz and IMAGE/initrd.img)."""
    args = [
        "root=/dev/nfs",
        "boot=nfs",
        f"nfsroot={inv.cluster.master.ip}:{image.root},vers=3,tcp",
        "ip=dhcp",
        "rw",
        f"{switch('CC_ARG_IMAGE')}={image.name}",
        *_console_args(inv),
        *image.kernel_args,
        *extra,
    ]
    return Label(name, image.kernel_path, image.initrd_path, " ".join(args))


#: The longest kernel command line PXELINUX passes on whole, in characters. PXELINUX hands the
#: kernel "BOOT_IMAGE=KERNEL " + the label's line (kernel_command_line) and cuts it to the
#: kernel's cmdline_size less one: syslinux com32/lib/syslinux/load_linux.c compares strlen + 1
#: with hdr.cmdline_max_len and keeps cmdline_max_len - 1 characters; x86 Linux declares
#: cmdline_size = COMMAND_LINE_SIZE - 1 = 2047 (arch/x86/boot/header.S; Debian 12's kernels say
#: 2047). What lies beyond is lost without a word: initrd= and BOOTIF= come last.
MAX_COMMAND_LINE = 2046


def kernel_command_line(label: Label, mac: str) -> str:
    """The command line the kernel receives when PXELINUX boots `label` from the interface with
    MAC address `mac` (aa:bb:cc:dd:ee:ff), before any cut: "BOOT_IMAGE=KERNEL" (syslinux
    com32/elflink/ldlinux/kernel.c, new_linux_kernel), the APPEND words, " initrd=INITRD" from
    INITRD and " BOOTIF=01-aa-bb-..." from IPAPPEND 2 (com32/elflink/ldlinux/readconfig.c,
    record)."""
    return (
        f"BOOT_IMAGE={label.kernel} {label.append} initrd={label.initrd} "
        f"BOOTIF=01-{mac.replace(':', '-')}"
    )


def command_line_problems(inv: Inventory) -> list[str]:
    """One line per PXELINUX label whose kernel command line (kernel_command_line), or that of
    the GRUB entry booting it (grub.grub_command_line), is longer than MAX_COMMAND_LINE: each
    image's sync label and, while an update node is set, its NFS-root label (field
    images.NAME.kernel_args), and each node's own label (field nodes.NAME.kernel_args; one
    node for each image, layout and kernel_args it shares with others). `inv` must refer only
    to defined images and layouts."""
    view = ClusterView(inv)
    mac = "ff:ff:ff:ff:ff:ff"  # every Ethernet MAC is as long
    labels: list[tuple[str, Label]] = []
    for image in view.images:
        where = f"images.{image.name}.kernel_args"
        layout = inv.images[image.name].disk_layout
        labels.append((where, sync_label(inv, f"linux-{image.name}", image, layout, ())))
        if inv.update_node.node is not None:
            labels.append((where, nfsroot_label(inv, f"linuxnfsroot-{image.name}", image, ())))
    own: dict[tuple[str, str, tuple[str, ...]], str] = {}
    for node in inv.nodes:
        if node.kernel_args:
            key = (inv.image_of(node), inv.layout_of(node), tuple(node.kernel_args))
            own.setdefault(key, node.name)
    for (image_name, layout, args), name in own.items():
        label = sync_label(inv, f"linux-{name}", view.image(image_name), layout, args)
        labels.append((f"nodes.{name}.kernel_args", label))
    from clustcontrol.render.grub import Entry, grub_command_line  # grub imports this module

    problems = []
    for where, label in labels:
        if (length := len(kernel_command_line(label, mac))) > MAX_COMMAND_LINE:
            problems.append(
                f"{where}: the kernel command line of PXELINUX label {label.name} is {length} "
                f"characters; PXELINUX passes {MAX_COMMAND_LINE} to the kernel and drops the "
                "rest (initrd= and BOOTIF= with it)"
            )
        elif (length := len(grub_command_line(Entry.of(view, label), mac))) > MAX_COMMAND_LINE:
            # GRUB's line has no initrd= but a longer BOOT_IMAGE= (the boot directory's path);
            # the kernel's cmdline_size bounds it as it bounds PXELINUX's (the same limit,
            # kept one below cmdline_size, is used for both).
            problems.append(
                f"{where}: the kernel command line of GRUB entry {label.name} is {length} "
                f"characters; more than the {MAX_COMMAND_LINE} the kernel takes (its "
                "cmdline_size; cluster.boot_dir's length counts, in BOOT_IMAGE=)"
            )
    return problems


def serial_port(inv: Inventory) -> dict[str, str] | None:
    """The serial port and speed of cluster.serial_console when it is a ttyS port (PXELINUX's
    SERIAL and GRUB's serial command take them), else None."""
    console = inv.cluster.serial_console
    if not console or not console.startswith("ttyS"):
        return None
    # ttyS<port>[,<baud>[<parity>[<bits>[r]]]] (types.check_serial_console): the baud rate is
    # the digits after the comma.
    port, _, options = console.removeprefix("ttyS").partition(",")
    baud = options[: len(options) - len(options.lstrip("0123456789"))]
    return {"port": port, "speed": baud or "115200"}


def common_labels(inv: Inventory, view: ClusterView) -> list[Label]:
    """linux-IMAGE for every image, then `linux`; the NFS-root labels (linuxnfsroot-IMAGE,
    then `linuxnfsroot`) only while an update node is set: without one no working tree is
    exported read-write, and no label names one."""
    update = view.update_host is not None
    labels: list[Label] = []
    for image in view.images:
        layout = inv.images[image.name].disk_layout
        labels.append(sync_label(inv, f"linux-{image.name}", image, layout, ()))
        if update:
            labels.append(nfsroot_label(inv, f"linuxnfsroot-{image.name}", image, ()))
    default = view.default_image
    labels.append(sync_label(inv, "linux", default, inv.images[default.name].disk_layout, ()))
    if update:
        labels.append(nfsroot_label(inv, "linuxnfsroot", view.update_image, ()))
    return labels


def _host_file(
    view: ClusterView, hex_name: str, default: str, comment: str, labels: list[Label]
) -> Output:
    return Output(
        path=pjoin(view.boot_root, "pxelinux.cfg", hex_name),
        service="pxe",
        content=template_macro("pxe/host.cfg.j2", "host_cfg")(comment, default, labels),
    )


def own_labels(inv: Inventory, view: ClusterView) -> Iterator[tuple[HostView, Label]]:
    """Each node with its own image, disk layout or kernel arguments, by address, with its
    sync label linux-NODE; not the node that boots as the update node."""
    default_image = view.default_image.name
    default_layout = inv.images[default_image].disk_layout
    update_macs = view.update_host.macs if view.update_host else None
    for host in view.hosts:
        if host.macs == update_macs:
            continue  # booting as the update node; its regular address is not handed out
        if host.image == default_image and not host.kernel_args and host.layout == default_layout:
            continue
        label = sync_label(
            inv, f"linux-{host.name}", view.image(host.image), host.layout, host.kernel_args
        )
        yield host, label


def _own_host_files(inv: Inventory, view: ClusterView) -> Iterator[Output]:
    """A file for each node with its own image, disk layout or kernel arguments."""
    for host, label in own_labels(inv, view):
        yield _host_file(
            view, host.hex_ip, label.name, f"node {host.name}: image {host.image}", [label]
        )


def find_boot_file(ctx: RenderContext, name: str) -> Path:
    """The syslinux file `name` (pxelinux.0, ldlinux.c32) in the first of ctx.syslinux_dirs
    that has it as a regular file (symlinks followed).

    Raises:
        ClustcontrolError: no directory has it (the pxelinux or syslinux-common package is
            not installed)."""
    for directory in ctx.syslinux_dirs:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    raise ClustcontrolError(
        f"{name} not found in {', '.join(str(d) for d in ctx.syslinux_dirs)}",
        hint="install it with: apt-get install pxelinux syslinux-common",
    )


def render_pxe(ctx: RenderContext) -> Iterator[Output]:
    """The PXELINUX tree under <tftp_root>/<boot_dir> (service "pxe", mode 0644; see the module
    docstring), in this order:

    - pxelinux.0 and ldlinux.c32, copied from the syslinux packages (find_boot_file);
    - pxelinux-common: SERIAL and CONSOLE 0 when the serial console is a ttyS port, PROMPT 0,
      TIMEOUT 30 (tenths of a second: syslinux.cfg documentation, "TIMEOUT"), and the labels
      linux-IMAGE (sync) and linuxnfsroot-IMAGE (NFS root) of every image by name, `linux`
      (sync boot of the default image) and `linuxnfsroot` (NFS-root boot of the update image);
      the NFS-root labels only while an update node is set;
    - pxelinux.cfg/default: INCLUDE pxelinux-common, DEFAULT linux (every regular node);
    - pxelinux.cfg/<HEX update IP>: DEFAULT linuxnfsroot (the update node), only while an
      update node is set (update_node.node): apply removes it when the update node is cleared;
    - pxelinux.cfg/<HEX IP> with a label linux-NODE of its own for each node whose image, disk
      layout or kernel arguments differ from the default's, except the node that boots as the
      update node.

    PXELINUX looks for its config in pxelinux.cfg/ by client UUID, then 01-MAC, then the
    upper-case hex IP and ever shorter prefixes of it, then `default` (PXELINUX README,
    /usr/share/doc/pxelinux/README.txt.gz), so a node's own file wins over `default`.

    Raises:
        ClustcontrolError: pxelinux.0 or ldlinux.c32 is not installed (raised when the
            iteration reaches it: this is a generator)."""
    inv = ctx.inventory
    view = ctx.view
    for name in BOOT_FILES:
        yield Output(
            path=pjoin(view.boot_root, name), service="pxe", source=find_boot_file(ctx, name)
        )
    yield Output(
        path=pjoin(view.boot_root, "pxelinux-common"),
        service="pxe",
        content=render_template(
            "pxe/pxelinux-common.j2", serial=serial_port(inv), labels=common_labels(inv, view)
        ),
    )
    yield _host_file(
        view, "default", "linux", "regular nodes: sync to the standard, boot the local disk", []
    )
    if view.update_host is not None:
        update_image = view.update_image.name
        yield _host_file(
            view,
            hex_ip(view.update_ip),
            "linuxnfsroot",
            f"the update node ({view.update_ip}): standard '{update_image}' read-write over NFS",
            [],
        )
    yield from _own_host_files(inv, view)


def render_tftpd(ctx: RenderContext) -> Iterator[Output]:
    """/etc/default/tftpd-hpa (service "tftp"), read by tftpd-hpa's init script, which passes
    TFTP_ADDRESS to in.tftpd --address: in.tftpd runs as user tftp on port 69 of the master's
    address when its cluster interface is set (ClusterView.listen_ip), else of every address,
    with --secure and cluster.tftp_root as its directory, so clients' file names are relative
    to tftp_root (in.tftpd(8), "--address", "--secure")."""
    # No cluster interface: every IPv4 address, as before.
    listen = ctx.view.listen_ip or "0.0.0.0"  # noqa: S104
    yield Output(
        path=TFTPD_DEFAULTS,
        service="tftp",
        content=render_template(
            "tftp/tftpd-hpa.j2",
            tftp_root=ctx.inventory.cluster.tftp_root,
            address=f"{listen}:69",
        ),
    )
