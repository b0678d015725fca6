"""With the master's cluster interface set, each daemon serves the cluster at the master's address
and nowhere else (issue 11, case 6: TFTP listened on every address).

The master's namespace has the cluster address 192.168.0.1 on its side of a veth pair and another
address of its own, OTHER, on its loopback; the node's namespace (192.168.0.11) routes OTHER
through the master. The real daemons run in the master's namespace with the rendered configs as
their init scripts pass them: in.tftpd with /etc/default/tftpd-hpa's TFTP_ADDRESS and
TFTP_OPTIONS, rsync --daemon with /etc/rsyncd.conf, nfs-ganesha (with rpcbind, both in a private
mount and PID namespace with their own /run) with ganesha.conf. The node reaches each at
192.168.0.1; at OTHER it gets nothing when the interface is set, and is served when it is not (so
the test proves the difference is the rendered config's). The kernel NFS server cannot run here:
its listen address is read back with nfs-utils' own parser (nfsconf)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from clustcontrol.inventory.model import Inventory
from clustcontrol.render.nfs import MOUNTD_PORT, NFSD_CONF
from tests.daemons.conftest import (
    Daemons,
    Link,
    cluster,
    ganesha_command,
    inventory,
    must,
    poll,
    render_into,
    run,
)

pytestmark = pytest.mark.daemon

MASTER = "192.168.0.1"
OTHER = "10.99.0.1"


@pytest.fixture
def master(link: Link) -> Link:
    """The base link, plus OTHER on the master's loopback and the node's route to it."""
    must(link.server("ip", "addr", "add", f"{OTHER}/32", "dev", "lo"))
    must(link.client("ip", "addr", "add", "192.168.0.11/24", "dev", link.client_if))
    must(link.client("ip", "route", "add", f"{OTHER}/32", "via", MASTER))
    return link


def rendered(link: Link, root: Path, interface: bool) -> Inventory:
    """The base inventory (its state directory under root), the master's interface set to the
    link's when `interface`, rendered under root."""
    master = {"name": "master", "ip": MASTER}
    if interface:
        master["interface"] = link.server_if
    inv = inventory(cluster=cluster(master=master, state_dir=str(root / "srv/state")))
    render_into(inv, root)
    return inv


def tcp_open(link: Link, address: str, port: int) -> bool:
    """Whether the node can open a TCP connection to address:port."""
    code = (
        "import socket, sys\n"
        f"s = socket.create_connection(({address!r}, {port}), timeout=3)\n"
        "s.close()\n"
    )
    return run(link.client("python3", "-c", code)).returncode == 0


def listening(link: Link, port: int, proto: str = "t") -> bool:
    return bool(run(link.server("ss", "-Hln" + proto, f"sport = :{port}")).stdout.strip())


def defaults(path: Path) -> dict[str, str]:
    """The variables of a /etc/default file, as sh sources it."""
    script = f'. "{path}"; printf "%s\\n" "$TFTP_ADDRESS" "$TFTP_DIRECTORY" "$TFTP_OPTIONS"'
    address, directory, options = must(["sh", "-c", script]).stdout.splitlines()
    return {"TFTP_ADDRESS": address, "TFTP_DIRECTORY": directory, "TFTP_OPTIONS": options}


@pytest.mark.parametrize("interface", [True, False], ids=["interface set", "no interface"])
def test_tftpd_listens_where_tftpd_hpa_defaults_say(
    master: Link, daemons: Daemons, tmp_path: Path, interface: bool
) -> None:
    root = tmp_path / "tree"
    rendered(master, root, interface)
    conf = defaults(root / "etc/default/tftpd-hpa")
    assert conf["TFTP_ADDRESS"] == (f"{MASTER}:69" if interface else "0.0.0.0:69")
    # As tftpd-hpa's init script runs it (but as root: the tree belongs to the test).
    daemons.start(
        "in.tftpd",
        master.server(
            "in.tftpd", "--listen", "--user", "root", "--address", conf["TFTP_ADDRESS"],
            *conf["TFTP_OPTIONS"].split(), "--foreground",
            root / conf["TFTP_DIRECTORY"].lstrip("/"),
        ),
    )  # fmt: skip
    poll(lambda: listening(master, 69, "u"), "in.tftpd on port 69")

    def fetch(address: str) -> int:
        url = f"tftp://{address}/cluster_node/pxelinux.cfg/default"
        out = tmp_path / f"fetched-{address}"
        return run(master.client("curl", "-s", "--max-time", "5", "-o", out, url)).returncode

    assert fetch(MASTER) == 0
    assert (fetch(OTHER) != 0) is interface


@pytest.mark.parametrize("interface", [True, False], ids=["interface set", "no interface"])
def test_rsyncd_listens_where_its_config_says(
    master: Link, daemons: Daemons, tmp_path: Path, interface: bool
) -> None:
    root = tmp_path / "tree"
    inv = rendered(master, root, interface)
    conf = root / "etc/rsyncd.conf"
    assert (f"\naddress = {MASTER}\n" in conf.read_text()) is interface
    daemons.start(
        "rsyncd",
        master.server(
            "rsync", "--daemon", "--no-detach", f"--config={conf}",
            f"--log-file={tmp_path / 'rsyncd.log'}",
        ),
    )  # fmt: skip
    port = inv.cluster.rsync_port
    poll(lambda: listening(master, port), f"rsync --daemon on port {port}")

    def modules(address: str) -> list[str]:
        proc = run(master.client("rsync", "--contimeout=5", f"rsync://{address}/"))
        return [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]

    assert modules(MASTER) == ["default"]
    assert modules(OTHER) == ([] if interface else ["default"])


@pytest.mark.parametrize("interface", [True, False], ids=["interface set", "no interface"])
def test_ganesha_listens_where_its_config_says(
    master: Link, daemons: Daemons, tmp_path: Path, interface: bool
) -> None:
    """Bind_addr in its IPv4-mapped form (render/nfs.py _bind_addr): the veth pair's link-local
    IPv6 addresses are there, as on any master with IPv6."""
    if shutil.which("ganesha.nfsd") is None:
        pytest.fail("ganesha.nfsd is missing (scripts/install-deps installs nfs-ganesha)")
    root = tmp_path / "tree"
    inv = rendered(master, root, interface)
    (Path(inv.generation_roots("default")) / "etc/clustcontrol").mkdir(parents=True)
    conf = root / "etc/ganesha/ganesha.conf"
    assert (f"Bind_addr = ::ffff:{MASTER};" in conf.read_text()) is interface
    daemons.start("ganesha", master.server(*ganesha_command(conf, tmp_path / "ganesha.log")))
    poll(lambda: listening(master, 2049), "ganesha on port 2049", timeout=60)
    assert tcp_open(master, MASTER, 2049)
    assert tcp_open(master, OTHER, 2049) is not interface


def test_ganesha_without_ipv6_fails_closed(master: Link, daemons: Daemons, tmp_path: Path) -> None:
    """No IPv6 address anywhere on the master: ganesha's IPv6 socket (the kernel still has
    IPv6) would take a plain IPv4 Bind_addr as every address; the mapped form makes ganesha
    refuse the configuration instead, so it serves nothing rather than everything."""
    for scope in ("all", "default", master.server_if, "lo"):
        must(master.server("sysctl", "-qw", f"net.ipv6.conf.{scope}.disable_ipv6=1"))
    root = tmp_path / "tree"
    inv = rendered(master, root, True)
    (Path(inv.generation_roots("default")) / "etc/clustcontrol").mkdir(parents=True)
    log = tmp_path / "ganesha.log"
    conf = root / "etc/ganesha/ganesha.conf"
    daemon = daemons.start("ganesha", master.server(*ganesha_command(conf, log)))
    poll(lambda: not daemon.running(), "ganesha to refuse its configuration", timeout=30)
    assert f"No IP address found for ::ffff:{MASTER}" in log.read_text()
    assert not listening(master, 2049)
    assert not tcp_open(master, MASTER, 2049) and not tcp_open(master, OTHER, 2049)


def test_kernel_nfsd_listen_address_reads_back_with_nfsconf(tmp_path: Path) -> None:
    """/etc/nfs.conf.d/clustcontrol.conf, as nfs-utils reads it (nfsconf(8) uses the same
    parser as rpc.nfsd and rpc.mountd): mountd's pinned port always, nfsd's listen address
    only with a cluster interface."""
    if shutil.which("nfsconf", path="/usr/sbin:/sbin") is None:
        pytest.fail("nfsconf is missing (scripts/install-deps installs nfs-common)")
    root = tmp_path / "tree"
    inv = inventory(cluster=cluster(master={"ip": MASTER, "interface": "eth1"}))
    render_into(inv, root)
    conf = root / NFSD_CONF.lstrip("/")
    proc = must(["nfsconf", "--file", conf, "--get", "nfsd", "host"])
    assert proc.stdout.split() == [MASTER]
    bare = tmp_path / "bare"
    render_into(inventory(), bare)
    conf = bare / NFSD_CONF.lstrip("/")
    assert run(["nfsconf", "--file", conf, "--isset", "nfsd", "host"]).returncode != 0
    for tree in (root, bare):
        proc = must(["nfsconf", "--file", tree / NFSD_CONF.lstrip("/"), "--get", "mountd", "port"])
        assert proc.stdout.split() == [str(MOUNTD_PORT)]
