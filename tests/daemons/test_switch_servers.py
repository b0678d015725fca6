"""Switching servers puts the distribution's own config back, and the real programs still
accept it (issue 12, item 8: kea -> isc deleted Debian's /etc/kea/kea-dhcp4.conf).

The files are the host's own copies of the packages' conffiles, taken only when dpkg's recorded
checksum says they are pristine; every apply runs the real checkers on what it installs."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from clustcontrol.apply import Installer, apply_tree
from clustcontrol.inventory.model import Inventory
from clustcontrol.render import RenderContext, render_all
from clustcontrol.render.dhcp.isc import DHCPD_CONF
from clustcontrol.render.dhcp.kea import KEA_CONF
from clustcontrol.render.nfs import GANESHA_CONF
from tests.daemons.conftest import cluster, inventory, must

pytestmark = pytest.mark.daemon

PACKAGES = {
    KEA_CONF: "kea-dhcp4-server",
    DHCPD_CONF: "isc-dhcp-server",
    GANESHA_CONF: "nfs-ganesha",
}
# The real checker of each Debian file, as its server reads it.
CHECKERS = {
    KEA_CONF: ["kea-dhcp4", "-t"],
    DHCPD_CONF: ["dhcpd", "-4", "-t", "-cf"],
}


def pristine(path: str) -> None:
    """Skip unless the host's `path` is its package's conffile as shipped (dpkg's MD5)."""
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Conffiles}", PACKAGES[path]],
        capture_output=True,
        text=True,
        check=False,
    )
    recorded = dict(line.split()[:2] for line in proc.stdout.splitlines() if line.strip())
    host = Path(path)
    digest = hashlib.md5(host.read_bytes()).hexdigest() if host.is_file() else None  # dpkg's
    if digest is None or digest != recorded.get(path):
        pytest.skip(f"{path} is not {PACKAGES[path]}'s conffile as shipped")


def switched(dhcp_server: str, nfs_server: str) -> Inventory:
    return inventory(
        cluster=cluster(
            dhcp_server=dhcp_server, nfs_server=nfs_server, ganesha_shared_file_systems=True
        )
    )


def test_debians_configs_are_back_after_switching_away(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for path in PACKAGES:
        pristine(path)
        live = root / path.lstrip("/")
        live.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, live)
        st = Path(path).stat()
        shutil.chown(live, st.st_uid, st.st_gid)
    shipped = {path: (root / path.lstrip("/")).read_bytes() for path in PACKAGES}
    steps = [("kea", "ganesha"), ("isc", "kernel"), ("dnsmasq", "kernel"), ("kea", "kernel")]
    for dhcp_server, nfs_server in [*steps, ("isc", "kernel")]:
        inv = switched(dhcp_server, nfs_server)
        tree = render_all(RenderContext(inv, previous=Installer(root).read))
        apply_tree(inv, tree, root, check=True)  # the real checkers on what it installs
    # isc and the kernel server chosen: Debian's kea and ganesha configs are back.
    for path in (KEA_CONF, GANESHA_CONF):
        live = root / path.lstrip("/")
        assert live.read_bytes() == shipped[path], path
        assert live.stat().st_mode == Path(path).stat().st_mode
    must([*CHECKERS[KEA_CONF], root / KEA_CONF.lstrip("/")])
    inv = switched("kea", "kernel")
    apply_tree(inv, render_all(RenderContext(inv, previous=Installer(root).read)), root)
    assert (root / DHCPD_CONF.lstrip("/")).read_bytes() == shipped[DHCPD_CONF]
    must([*CHECKERS[DHCPD_CONF], root / DHCPD_CONF.lstrip("/")])
