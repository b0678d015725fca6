"""The UEFI network boot tree under the TFTP root: Debian's signed shim and network GRUB, and
GRUB configs that boot the same labels as the PXELINUX tree (render/pxe.py).

    <tftp_root>/<boot_dir>/shimx64.efi             shim-signed's shimx64.efi.signed (DHCP's file
                                                   for x86-64 UEFI: render/firmware.py)
    <tftp_root>/<boot_dir>/grubx64.efi             grub-efi-amd64-signed's grubnetx64.efi.signed,
                                                   under the name shim loads next
    <tftp_root>/grub/grub.cfg                      where that GRUB looks (GRUB_PREFIX): picks the
                                                   node's own file by its address, else default
    <tftp_root>/<boot_dir>/grub/common.cfg         serial console, timeout, BOOTIF, the labels
    <tftp_root>/<boot_dir>/grub/default.cfg        regular nodes: sync boot of the default image
    <tftp_root>/<boot_dir>/grub/<HEX IP>.cfg       the update node (while one is set), and nodes
                                                   with their own image, layout or kernel words

Where the signed network GRUB looks for its config, from the package (Debian 12,
grub-efi-amd64-signed 1+2.06+13+deb12u2), not guessed:

- grubnetx64.efi.signed is a grub-mkimage image. Its `mods` PE section holds the modules
  (struct grub_module_info64, magic "mimg", then headers of type OBJ_TYPE_ELF, _MEMDISK,
  _CONFIG, _PREFIX: include/grub/kernel.h). Read with a few lines of Python over that
  section: the built-in prefix (OBJ_TYPE_PREFIX) is "/grub", with no device; the embedded
  config (OBJ_TYPE_CONFIG) is "normal (memdisk)/grub.cfg"; the memdisk is a FAT image whose
  grub.cfg (read with `grub-fstest MEMDISK cat /grub.cfg`) says:
      if [ -e $prefix/x86_64-efi/grub.cfg ]; then source $prefix/x86_64-efi/grub.cfg
      else source $prefix/grub.cfg; fi
- A prefix without a device takes the firmware's boot device: grub-core/kern/main.c,
  grub_set_prefix_and_root ("if (!device && fwdevice) device = fwdevice"; the path from the
  prefix wins over the boot file's directory). After a PXE boot that device is
  (tftp,NEXT-SERVER) (grub-core/net/drivers/efi/efinet.c, grub_efi_net_config_real), so
  $prefix is (tftp,MASTER)/grub and GRUB reads TFTP_ROOT/grub/grub.cfg whatever directory the
  DHCP file name had. The memdisk's `[ -e $prefix/x86_64-efi/grub.cfg ]` looks for that file
  through the file system's dir hook, and the network one lists nothing (grub-core/net/net.c,
  grub_net_fs_dir returns no entry), so over TFTP the test fails and grub/grub.cfg is read;
  clustcontrol writes no grub/x86_64-efi/grub.cfg.
- The image's modules (their .modname sections) include configfile, echo, linux, regexp,
  serial, terminal, test, tftp and efinet, but no http (GRUB fetches everything over TFTP
  here), and the strings net_default_ip and net_default_mac (grub-core/net/net.c: the
  address and MAC of the interface DHCP configured).

A node's own file is chosen by its address: GRUB's search for per-MAC or per-IP config file
names (grub_net_search_config_file, called by grub_cmd_normal in grub-core/normal/main.c) runs
only for a `normal` without a file argument, and this image runs `normal (memdisk)/grub.cfg`;
a file test over TFTP is no use either (grub_net_fs_dir, above). So grub.cfg compares
$net_default_ip with each address that has a file of its own, as PXELINUX looks for
pxelinux.cfg/<HEX IP>; the file is named the same."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from posixpath import join as pjoin

from clustcontrol.errors import ClustcontrolError
from clustcontrol.render.base import Output, RenderContext, render_template, template_macro
from clustcontrol.render.firmware import GRUB, SHIM
from clustcontrol.render.pxe import Label, common_labels, own_labels, serial_port
from clustcontrol.render.view import ClusterView, hex_ip

#: The signed network GRUB's built-in prefix, relative to the TFTP root (module docstring).
GRUB_PREFIX = "grub"
#: The file GRUB reads first, relative to the TFTP root.
GRUB_CFG = pjoin(GRUB_PREFIX, "grub.cfg")
#: Where the GRUB configs of the boot directory lie, relative to it.
GRUB_DIR = "grub"

#: Each file of the UEFI tree copied from a package: its name in the boot directory, the
#: package file (Debian 12: shim-signed, grub-efi-amd64-signed) and the package.
SIGNED_FILES: tuple[tuple[str, Path, str], ...] = (
    (SHIM, Path("/usr/lib/shim/shimx64.efi.signed"), "shim-signed"),
    (GRUB, Path("/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed"), "grub-efi-amd64-signed"),
)

#: The path of a GRUB config some inventory renders, below any TFTP root: its grub/grub.cfg,
#: or BOOT_DIR/grub/{common,default,HEXIP}.cfg (render/paths.py, verify.py).
GRUB_CONFIG = re.compile(
    rf"(?:/[^/]+)+/{GRUB_PREFIX}/grub\.cfg|(?:/[^/]+)+/{GRUB_DIR}/(?:common|default|[0-9A-F]{{8}})\.cfg"
)


@dataclass(frozen=True)
class Entry:
    """One GRUB menu entry: the Label it boots, with kernel and initrd as absolute paths on the
    TFTP device (GRUB resolves them against $root, (tftp,MASTER): module docstring)."""

    name: str
    kernel: str
    initrd: str
    append: str

    @classmethod
    def of(cls, view: ClusterView, label: Label) -> Entry:
        """The entry booting `label`, its paths below the boot directory."""
        base = "/" + view.cluster.boot_dir
        return cls(label.name, pjoin(base, label.kernel), pjoin(base, label.initrd), label.append)


def grub_command_line(entry: Entry, mac: str) -> str:
    """The command line the kernel receives when GRUB boots `entry` on the interface with MAC
    address `mac` (aa:bb:cc:dd:ee:ff): "BOOT_IMAGE=KERNEL" (GRUB's linux loader puts it first:
    grub-core/loader/i386/efi/linux.c, as the BIOS one), the label's words, then
    "BOOTIF=01-aa-bb-..." as common.cfg builds it from $net_default_mac, the form PXELINUX's
    IPAPPEND 2 gives (pxe.kernel_command_line). No initrd= word: GRUB loads the initrd itself."""
    return f"BOOT_IMAGE={entry.kernel} {entry.append} BOOTIF=01-{mac.replace(':', '-')}"


def find_signed_file(source: Path, package: str) -> Path:
    """`source` when it is a regular file (symlinks followed).

    Raises:
        ClustcontrolError: it is not (the package is not installed)."""
    if source.is_file():
        return source
    raise ClustcontrolError(
        f"{source} not found", hint=f"install it with: apt-get install {package}"
    )


def _config(
    view: ClusterView, name: str, comment: str, default: str, entries: list[Entry]
) -> Output:
    return Output(
        path=pjoin(view.boot_root, GRUB_DIR, name),
        service="pxe",
        content=template_macro("grub/node.cfg.j2", "node_cfg")(
            comment, pjoin("/", view.cluster.boot_dir, GRUB_DIR, "common.cfg"), default, entries
        ),
    )


def render_grub(ctx: RenderContext) -> Iterator[Output]:
    """The UEFI tree (service "pxe", mode 0644; see the module docstring), in this order:

    - shimx64.efi and grubx64.efi, copied from the installed packages (SIGNED_FILES);
    - TFTP_ROOT/grub/grub.cfg: `configfile` of the node's own file when $net_default_ip is an
      address that has one, else of default.cfg;
    - common.cfg: serial console (a ttyS port) as terminal, timeout 3 s (PXELINUX's TIMEOUT
      30), $bootif from $net_default_mac, and the menu entries of every PXELINUX label of
      pxelinux-common (pxe.common_labels), each booting the same kernel, initrd and words;
    - default.cfg: default linux (every regular node);
    - <HEX update IP>.cfg: default linuxnfsroot, only while an update node is set;
    - <HEX IP>.cfg with an entry linux-NODE of its own for each node pxe.own_labels names.

    Raises:
        ClustcontrolError: a signed binary is not installed (raised when the iteration
            reaches it: this is a generator)."""
    inv = ctx.inventory
    view = ctx.view
    for name, source, package in SIGNED_FILES:
        yield Output(
            path=pjoin(view.boot_root, name),
            service="pxe",
            source=find_signed_file(source, package),
        )
    own = list(own_labels(inv, view))
    files: list[tuple[str, str]] = []  # (address, file): the nodes with a file of their own
    if view.update_host is not None:
        files.append((str(view.update_ip), f"{hex_ip(view.update_ip)}.cfg"))
    files += [(host.ip, f"{host.hex_ip}.cfg") for host, _ in own]
    grub_dir = pjoin("/", view.cluster.boot_dir, GRUB_DIR)
    yield Output(
        path=pjoin(inv.cluster.tftp_root, GRUB_CFG),
        service="pxe",
        content=render_template("grub/grub.cfg.j2", grub_dir=grub_dir, files=files),
    )
    yield Output(
        path=pjoin(view.boot_root, GRUB_DIR, "common.cfg"),
        service="pxe",
        content=render_template(
            "grub/common.cfg.j2",
            serial=serial_port(inv),
            entries=[Entry.of(view, label) for label in common_labels(inv, view)],
        ),
    )
    yield _config(
        view, "default.cfg", "regular nodes: sync to the standard, boot the local disk", "linux", []
    )
    if view.update_host is not None:
        yield _config(
            view,
            f"{hex_ip(view.update_ip)}.cfg",
            f"the update node ({view.update_ip}): standard '{view.update_image.name}' "
            "read-write over NFS",
            "linuxnfsroot",
            [],
        )
    for host, label in own:
        yield _config(
            view,
            f"{host.hex_ip}.cfg",
            f"node {host.name}: image {host.image}",
            label.name,
            [Entry.of(view, label)],
        )
