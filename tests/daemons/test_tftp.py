"""in.tftpd serves the rendered PXELINUX tree byte-for-byte at the path DHCP hands out.

Files are fetched with curl, which exits 68 when the server answers "file not found" (the
tftp-hpa client exits 0 even on errors, so it cannot be used for assertions)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from clustcontrol.render import RenderedTree
from clustcontrol.render.view import ClusterView
from tests.daemons.conftest import (
    Daemon,
    Daemons,
    free_port,
    inventory,
    poll,
    render_into,
    run,
    udp_listening,
)

pytestmark = pytest.mark.daemon

TFTP_ROOT = "/var/lib/tftpboot"
BOOT = f"{TFTP_ROOT}/cluster_node"
CURL_TFTP_NOT_FOUND = 68


def fetch(port: int, path: str, out: Path) -> int:
    proc = run(["curl", "-s", "--max-time", "20", "-o", out, f"tftp://127.0.0.1:{port}/{path}"])
    return proc.returncode


def _settled(daemon: Daemon, port: int) -> bool:
    return udp_listening(port) or not daemon.running()


def serve(daemons: Daemons, root: Path) -> int:
    """in.tftpd on a free port of 127.0.0.1 (another one if the port was taken meanwhile)."""
    for _ in range(3):
        port = free_port()
        daemon = daemons.start(
            "in.tftpd",
            [
                "in.tftpd", "--listen", "--address", f"127.0.0.1:{port}", "--secure",
                "--foreground", root / TFTP_ROOT.lstrip("/"),
            ],
        )  # fmt: skip
        poll(partial(_settled, daemon, port), f"in.tftpd on port {port}")
        if daemon.running():
            return port
    raise AssertionError(f"in.tftpd did not start: {daemon.output()}")


def text(tree: RenderedTree, path: str) -> str:
    return tree[path].data().decode()


def test_tftp_serves_the_rendered_boot_tree(tmp_path: Path, daemons: Daemons) -> None:
    inv = inventory()
    root = tmp_path / "tree"
    tree = render_into(inv, root)
    port = serve(daemons, root)

    served = [o for o in tree if o.path.startswith(TFTP_ROOT + "/")]
    assert {o.path.removeprefix(TFTP_ROOT + "/") for o in served} == {
        "cluster_node/pxelinux.0",
        "cluster_node/ldlinux.c32",
        "cluster_node/pxelinux-common",
        "cluster_node/pxelinux.cfg/default",
        "cluster_node/shimx64.efi",
        "cluster_node/grubx64.efi",
        "cluster_node/grub/common.cfg",
        "cluster_node/grub/default.cfg",
        "grub/grub.cfg",
    }
    # The DHCP boot file names are relative to the TFTP root and fetch pxelinux.0 (BIOS) and
    # the shim (x86-64 UEFI), which loads grubx64.efi from its own directory.
    assert ClusterView(inv).boot_file == "cluster_node/pxelinux.0"
    assert ClusterView(inv).uefi_boot_file == "cluster_node/shimx64.efi"
    for output in served:
        relative = output.path.removeprefix(TFTP_ROOT + "/")
        out = tmp_path / "fetched" / relative
        out.parent.mkdir(parents=True, exist_ok=True)
        assert fetch(port, relative, out) == 0, f"curl could not fetch {relative}"
        assert out.read_bytes() == output.data(), f"{relative} differs from the rendered file"

    missing = tmp_path / "missing"
    # No update node set: the update address (192.168.0.253) gets no file of its own.
    assert fetch(port, "cluster_node/pxelinux.cfg/C0A800FD", missing) == CURL_TFTP_NOT_FOUND
    assert fetch(port, "cluster_node/pxelinux.cfg/C0A800FE", missing) == CURL_TFTP_NOT_FOUND
    assert fetch(port, "cluster_node/nope.c32", missing) == CURL_TFTP_NOT_FOUND
    assert fetch(port, "cluster_node/grub/C0A800FD.cfg", missing) == CURL_TFTP_NOT_FOUND


def test_grub_finds_its_configs_by_the_names_it_asks_for(tmp_path: Path, daemons: Daemons) -> None:
    """GRUB asks for absolute names on its TFTP device: /grub/grub.cfg (the signed network
    GRUB's prefix, render/grub.py) and the /cluster_node/grub/... files grub.cfg names; in.tftpd
    --secure resolves them in the TFTP root (curl sends the path after the URL's first slash,
    so tftp://HOST//grub/grub.cfg asks for /grub/grub.cfg)."""
    tree = render_into(inventory(update_node={"node": "node01"}), tmp_path / "tree")
    port = serve(daemons, tmp_path / "tree")
    for name in ("/grub/grub.cfg", "/cluster_node/grub/common.cfg",
                 "/cluster_node/grub/default.cfg", "/cluster_node/grub/C0A800FD.cfg"):  # fmt: skip
        out = tmp_path / "fetched" / name.lstrip("/")
        out.parent.mkdir(parents=True, exist_ok=True)
        assert fetch(port, name, out) == 0, f"curl could not fetch {name}"
        assert out.read_bytes() == tree[TFTP_ROOT + name].data()
    bootstrap = text(tree, f"{TFTP_ROOT}/grub/grub.cfg")
    assert "configfile /cluster_node/grub/C0A800FD.cfg\n" in bootstrap


def test_pxelinux_configs_boot_the_right_labels(tmp_path: Path, daemons: Daemons) -> None:
    """What the update node (192.168.0.253 = C0A800FD) and regular nodes get over TFTP."""
    tree = render_into(inventory(update_node={"node": "node01"}), tmp_path / "tree")
    port = serve(daemons, tmp_path / "tree")

    update_cfg = tmp_path / "C0A800FD"
    assert fetch(port, "cluster_node/pxelinux.cfg/C0A800FD", update_cfg) == 0
    assert "DEFAULT linuxnfsroot\n" in update_cfg.read_text()
    assert "INCLUDE pxelinux-common\n" in update_cfg.read_text()
    default_cfg = tmp_path / "default"
    assert fetch(port, "cluster_node/pxelinux.cfg/default", default_cfg) == 0
    assert "DEFAULT linux\n" in default_cfg.read_text()

    common_file = tmp_path / "pxelinux-common"
    assert fetch(port, "cluster_node/pxelinux-common", common_file) == 0
    common = common_file.read_text()
    assert common == text(tree, f"{BOOT}/pxelinux-common")
    blocks = {block.splitlines()[0]: block for block in common.split("\n\n") if block}
    nfsroot = blocks["LABEL linuxnfsroot"]
    append = next(line.split(None, 1)[1] for line in nfsroot.splitlines() if "APPEND" in line)
    words = append.split()
    assert "boot=nfs" in words
    assert "root=/dev/nfs" in words
    assert "nfsroot=192.168.0.1:/srv/nfs4/clusternoderoot,vers=3,tcp" in words
    assert "rw" in words
    assert "KERNEL default/vmlinuz" in nfsroot
    assert "INITRD default/initrd.img" in nfsroot
    sync = blocks["LABEL linux"]
    assert "boot=nfs" not in sync
    assert "clustcontrol.server=192.168.0.1" in sync
