"""The UEFI tree (render/grub.py): the signed binaries where shim and GRUB look, and GRUB
configs that boot exactly what the PXELINUX tree boots, label for label."""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Any

import pytest

from clustcontrol.render import RenderContext, render_all
from clustcontrol.render.base import RenderedTree
from clustcontrol.render.grub import Entry, grub_command_line
from clustcontrol.render.pxe import Label, kernel_command_line
from tests.conftest import BASE, make_inventory

TFTP = "/var/lib/tftpboot"
BOOT = f"{TFTP}/cluster_node"
MAC = "52:54:00:ab:cd:ef"


def render(**overrides: object) -> RenderedTree:
    return render_all(RenderContext(make_inventory(**overrides)))


def text(tree: RenderedTree, path: str) -> str:
    return tree[path].data().decode()


# Inventories whose PXELINUX and GRUB trees are compared: labels of several images, the update
# node's, nodes with their own image, layout or kernel words, a serial console, the rsync
# transport and a control directory elsewhere (words of their own on the command line).
CASES: dict[str, dict[str, Any]] = {
    "base": {},
    "update-node": {"update_node": {"node": "node01"}},
    "everything": {
        "cluster": {
            **BASE["cluster"],
            "serial_console": "ttyS1,57600n8",
            "control_dir": "/etc/clustcontrol-x",
            "rsync_port": 8873,
        },
        "images": {
            "default": {"root": "/srv/nfs4/clusternoderoot"},
            "gpu": {"root": "/srv/nfs4/gpu", "kernel_args": ["quiet"], "transport": "rsync"},
        },
        "nodes": [
            {"name": "node01", "mac": "52:54:00:00:00:01", "ip": "192.168.0.11"},
            {"name": "node02", "mac": "52:54:00:00:00:02", "ip": "192.168.0.12", "image": "gpu"},
            {
                "name": "node03",
                "mac": "52:54:00:00:00:03",
                "ip": "192.168.0.13",
                "kernel_args": ["nomodeset", "x=1"],
                "boot": "uefi",
            },
        ],
        "update_node": {"node": "node02", "image": "gpu"},
    },
}

_PXE_LABEL = re.compile(
    r"^LABEL (\S+)\n    KERNEL (\S+)\n    INITRD (\S+)\n    APPEND (.*)\n    IPAPPEND 2$", re.M
)
_GRUB_ENTRY = re.compile(
    r"^menuentry '([^']+)' --id '\1' \{\n    linux (\S+) (.*) BOOTIF=\$bootif\n"
    r"    initrd (\S+)\n\}$",
    re.M,
)


def pxe_labels(tree: RenderedTree, file: str) -> dict[str, Label]:
    return {m[1]: Label(m[1], m[2], m[3], m[4]) for m in _PXE_LABEL.finditer(text(tree, file))}


def grub_entries(tree: RenderedTree, file: str) -> dict[str, Entry]:
    return {m[1]: Entry(m[1], m[2], m[4], m[3]) for m in _GRUB_ENTRY.finditer(text(tree, file))}


def _default(content: str, pattern: str) -> str:
    found = re.search(pattern, content, re.M)
    assert found is not None, content
    return found[1]


@pytest.mark.parametrize("case", list(CASES))
def test_grub_boots_what_pxelinux_boots_label_for_label(case: str) -> None:
    """For every PXELINUX file (pxelinux-common, pxelinux.cfg/default and each HEX IP file) the
    GRUB config of the same name (common.cfg, default.cfg, HEX.cfg) has an entry of each
    label's name booting the same kernel and initrd (below the boot directory) with the same
    words, the same default, and the kernel receives the same command line but for the
    loaders' own words (BOOT_IMAGE's path; PXELINUX's initrd=)."""
    tree = render(**CASES[case])
    pairs = {f"{BOOT}/pxelinux-common": f"{BOOT}/grub/common.cfg"}
    for path in tree.outputs:
        if path.startswith(f"{BOOT}/pxelinux.cfg/"):
            pairs[path] = f"{BOOT}/grub/{path.rsplit('/', 1)[1]}.cfg"
    grub_files = {p for p in tree.outputs if p.startswith(f"{BOOT}/grub/")}
    assert grub_files == set(pairs.values())
    compared = 0
    for pxe_file, grub_file in pairs.items():
        labels, entries = pxe_labels(tree, pxe_file), grub_entries(tree, grub_file)
        assert labels.keys() == entries.keys(), (pxe_file, grub_file)
        for name, label in labels.items():
            entry = entries[name]
            assert entry == Entry(name, f"/cluster_node/{label.kernel}",
                                  f"/cluster_node/{label.initrd}", label.append)  # fmt: skip
            pxe_line = kernel_command_line(label, MAC).split()
            grub_line = grub_command_line(entry, MAC).split()
            assert pxe_line[0] == f"BOOT_IMAGE={label.kernel}"
            assert grub_line[0] == f"BOOT_IMAGE=/cluster_node/{label.kernel}"
            assert [w for w in pxe_line[1:] if not w.startswith("initrd=")] == grub_line[1:]
            assert grub_line[-1] == "BOOTIF=01-52-54-00-ab-cd-ef"
            compared += 1
        if pxe_file != f"{BOOT}/pxelinux-common":
            pxe_text, grub_text = text(tree, pxe_file), text(tree, grub_file)
            assert _default(pxe_text, r"^DEFAULT (\S+)$") == _default(
                grub_text, r"^set default='([^']+)'$"
            )
            assert "INCLUDE pxelinux-common\n" in pxe_text
            assert "source /cluster_node/grub/common.cfg\n" in grub_text
    assert compared >= 2


def test_grub_cfg_sends_each_address_with_a_file_to_it() -> None:
    """TFTP_ROOT/grub/grub.cfg (the prefix built into the signed network GRUB) goes to the
    node's own file by $net_default_ip, the update address's while one is set, else to
    default.cfg; the console goes to the serial port when it is a ttyS port."""
    tree = render(**CASES["everything"])
    bootstrap = text(tree, f"{TFTP}/grub/grub.cfg")
    dispatch = re.findall(
        r'^if \[ "\$net_default_ip" = "([0-9.]+)" \]; then\n    configfile (\S+)\nfi$',
        bootstrap,
        re.M,
    )
    assert dispatch == [
        ("192.168.0.253", "/cluster_node/grub/C0A800FD.cfg"),
        ("192.168.0.13", "/cluster_node/grub/C0A8000D.cfg"),
    ]
    assert bootstrap.endswith("\nconfigfile /cluster_node/grub/default.cfg\n")
    common = text(tree, f"{BOOT}/grub/common.cfg")
    assert "serial --unit=1 --speed=57600\n" in common
    assert "terminal_output serial console\n" in common
    plain = render()
    assert "if [" not in text(plain, f"{TFTP}/grub/grub.cfg")
    assert "serial" not in text(plain, f"{BOOT}/grub/common.cfg")
    assert "menuentry 'linuxnfsroot" not in text(plain, f"{BOOT}/grub/common.cfg")


def test_the_signed_binaries_are_copied_from_the_packages() -> None:
    """shimx64.efi (the DHCP file of UEFI clients) and grubx64.efi (what shim loads next) are
    Debian's signed binaries, copied as pxelinux.0 is."""
    tree = render()
    shim, grub = tree[f"{BOOT}/shimx64.efi"], tree[f"{BOOT}/grubx64.efi"]
    assert shim.source == Path("/usr/lib/shim/shimx64.efi.signed")
    assert grub.source == Path("/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed")
    assert shim.data()[:2] == b"MZ" and grub.data()[:2] == b"MZ"  # PE images
    assert b"\\\x00g\x00r\x00u\x00b\x00x\x006\x004\x00.\x00e\x00f\x00i\x00" in shim.data()


def test_apply_checks_the_grub_configs_and_names_a_broken_one() -> None:
    """verify.check_outputs runs grub-script-check over every GRUB config at once; when that
    fails, once per file, so the failure names the broken file alone."""
    import dataclasses
    import shutil

    from clustcontrol.verify import check_outputs

    if shutil.which("grub-script-check") is None:
        pytest.skip("grub-script-check (grub-common) is not installed")
    tree = render(**CASES["everything"])
    grub = [o for o in tree if o.path.endswith(".cfg") and "/grub/" in o.path]
    results = [r for r in check_outputs(grub) if r.program == "grub-script-check"]
    assert [(r.ok, r.skipped) for r in results] == [(True, False)]
    common = f"{BOOT}/grub/common.cfg"
    broken = [
        dataclasses.replace(o, content=b"if [ x ]; then\n") if o.path == common else o for o in grub
    ]
    results = [r for r in check_outputs(broken) if r.program == "grub-script-check"]
    assert [r.target for r in results if not r.ok] == [common]
    assert len(results) == len(grub)


def _grub_modules(image: bytes) -> list[tuple[int, bytes]]:
    """The (type, body) of each module of a grub-mkimage EFI image: its PE section `mods`
    holds struct grub_module_info64 (magic "mimg", padding, offset, size), then headers of
    (type, size) each followed by its body (include/grub/kernel.h)."""
    pe = struct.unpack_from("<I", image, 0x3C)[0]
    assert image[pe : pe + 4] == b"PE\0\0"
    sections, optional = struct.unpack_from("<H12xH", image, pe + 6)
    table = pe + 24 + optional
    for i in range(sections):
        name, _, _, _, raw = struct.unpack_from("<8sIIII", image, table + 40 * i)
        if name.rstrip(b"\0") == b"mods":
            break
    else:
        raise AssertionError("no mods section")
    magic, _, offset, size = struct.unpack_from("<4sIQQ", image, raw)
    assert magic == b"mimg"
    modules, pos = [], raw + offset
    while pos < raw + size:
        kind, length = struct.unpack_from("<II", image, pos)
        modules.append((kind, image[pos + 8 : pos + length]))
        pos += length
    return modules


def test_the_signed_network_grub_reads_the_prefix_grub_cfg_renders() -> None:
    """The evidence render/grub.py's docstring gives, read again from the installed binary:
    the built-in prefix is /grub without a device (OBJ_TYPE_PREFIX = 3), the embedded config
    (OBJ_TYPE_CONFIG = 2) runs the memdisk's grub.cfg, and the image has the modules the
    rendered configs use. A Debian update that moves the prefix fails here."""
    from clustcontrol.render.grub import GRUB_PREFIX, SIGNED_FILES

    source = next(path for name, path, _ in SIGNED_FILES if name == "grubx64.efi")
    modules = _grub_modules(source.read_bytes())
    prefix = [body.rstrip(b"\0") for kind, body in modules if kind == 3]
    config = [body.rstrip(b"\0") for kind, body in modules if kind == 2]
    assert prefix == [b"/" + GRUB_PREFIX.encode()]
    assert config == [b"normal (memdisk)/grub.cfg\n"]
    elf = b"".join(body for kind, body in modules if kind == 0)
    for command in (b"configfile", b"regexp", b"net_default_ip", b"net_default_mac", b"linux"):
        assert command in elf, command
