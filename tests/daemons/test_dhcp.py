"""Real DHCP exchanges: each rendered DHCP server config hands a node its address and PXE boot file.

The server runs in one network namespace on the master's address, a busybox udhcpc runs in another
with the node's MAC, and the two are joined only by a veth pair. udhcpc's script dumps the
variables of the `bound` event (ip, siaddr = next-server, boot_file, hostname, router, ...) to a
file, which the tests read."""

from __future__ import annotations

import json
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from clustcontrol.inventory.model import Inventory
from tests.daemons.conftest import (
    SBIN_PATH,
    Daemon,
    Daemons,
    Link,
    base_nodes,
    cluster,
    inventory,
    render_into,
    run,
)

pytestmark = pytest.mark.daemon

SERVERS = ("isc", "kea", "dnsmasq")
NODE01_MAC = "52:54:00:00:00:01"
NODE02_MAC = "52:54:00:00:00:02"
UNKNOWN_MAC = "52:54:00:00:00:99"


@dataclass(frozen=True)
class Lease:
    env: dict[str, str]
    log: str

    def __getitem__(self, key: str) -> str:
        assert key in self.env, f"the lease has no {key!r}: {self.env}\n{self.log}"
        return self.env[key]


def request_lease(
    link: Link,
    mac: str,
    work: Path,
    *,
    attempts: int = 5,
    client_id: str | None = None,
    arch: int | None = None,
) -> Lease | None:
    """Run udhcpc once in the client namespace with mac; the `bound` variables, or None.
    `client_id`: the client-identifier option (61) to send, as hex; by default udhcpc sends
    01 and the MAC. `arch`: the client system architecture (option 93, RFC 4578) to send, as
    two octets (busybox udhcpc -x 0x5d:HEX sends an option it has no name for as those bytes,
    in DISCOVER and REQUEST alike); None: no option 93, as udhcpc by default."""
    link.set_client_mac(mac)
    work.mkdir(parents=True, exist_ok=True)
    env_file = work / f"bound-{mac.replace(':', '')}.env"
    env_file.unlink(missing_ok=True)
    script = work / "udhcpc-script"
    script.write_text(f'#!/bin/sh\n[ "$1" = bound ] && env > "{env_file}"\nexit 0\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    argv = link.client(
        "env", "-i", f"PATH={SBIN_PATH}",
        "udhcpc", "-f", "-q", "-n", "-i", link.client_if, "-s", script,
        "-t", str(attempts), "-T", "1", "-A", "1",
        *(["-C", "-x", f"0x3d:{client_id}"] if client_id else []),
        *(["-x", f"0x5d:{arch:04x}"] if arch is not None else []),
    )  # fmt: skip
    proc = run(argv, timeout=attempts * 3 + 10)
    log = proc.stdout + proc.stderr
    if not env_file.exists():
        assert proc.returncode != 0, f"udhcpc succeeded but its script saw no lease:\n{log}"
        return None
    assert proc.returncode == 0, log
    lines = env_file.read_text().splitlines()
    return Lease(dict(line.split("=", 1) for line in lines if "=" in line), log)


def start_dhcp_server(
    server: str, inv: Inventory, link: Link, daemons: Daemons, work: Path
) -> Daemon:
    """Render inv and run its `server` config in the server namespace, in the foreground."""
    root = work / "tree"
    render_into(inv, root)
    state = work / "state"
    state.mkdir()
    if server == "isc":
        leases = state / "dhcpd.leases"
        leases.touch()
        return daemons.start(
            "dhcpd",
            link.server(
                "dhcpd", "-4", "-d", "-cf", root / "etc/dhcp/dhcpd.conf", "-lf", leases,
                "-pf", state / "dhcpd.pid", link.server_if,
            ),
            ready=r"^Server starting service\.$",
        )  # fmt: skip
    if server == "kea":
        # The rendered file unchanged except the memfile's location: its default lies in
        # /var/lib/kea on the host, which a test must not touch.
        text = (root / "etc/kea/kea-dhcp4.conf").read_text()
        body = "\n".join(line for line in text.splitlines() if not line.startswith("//"))
        config = json.loads(body)
        config["Dhcp4"]["lease-database"]["name"] = str(state / "kea-leases4.csv")
        conf = state / "kea-dhcp4.conf"
        conf.write_text(json.dumps(config, indent=2))
        return daemons.start(
            "kea-dhcp4",
            link.server("kea-dhcp4", "-c", conf),
            env={"KEA_PIDFILE_DIR": str(state), "KEA_LOCKFILE_DIR": str(state)},
            ready=r"DHCP4_STARTED",
        )
    assert server == "dnsmasq"
    return daemons.start(
        "dnsmasq",
        link.server(
            "dnsmasq", "-d", "-C", root / "etc/dnsmasq.d/clustcontrol.conf", "--port=0",
            f"--dhcp-leasefile={state / 'dnsmasq.leases'}", f"--pid-file={state / 'dnsmasq.pid'}",
            "--log-dhcp",
        ),
        ready=r"DHCP, static leases only on",
    )  # fmt: skip


def served(server: str, link: Link, daemons: Daemons, work: Path, **overrides: object) -> Daemon:
    """The base inventory plus overrides, DHCP on the link's server interface, running."""
    section = overrides.pop("cluster", None) or cluster()
    assert isinstance(section, dict)
    master = {**section["master"], "interface": link.server_if}
    section = {**section, "master": master}
    return start_dhcp_server(server, inventory(cluster=section, **overrides), link, daemons, work)


PXELINUX = "cluster_node/pxelinux.0"
SHIM = "cluster_node/shimx64.efi"


def assert_pxe_lease(
    lease: Lease, ip: str, hostname: str, daemon: Daemon, boot_file: str = PXELINUX
) -> None:
    context = f"\n--- udhcpc ---\n{lease.log}\n--- {daemon.name} ---\n{daemon.output()}"
    assert lease["ip"] == ip, context
    assert lease["hostname"] == hostname, context
    assert lease["siaddr"] == "192.168.0.1", context  # next-server: the master's TFTP
    assert lease["boot_file"] == boot_file, context
    assert lease["serverid"] == "192.168.0.1", context
    assert lease["subnet"] == "255.255.255.0", context
    assert lease["domain"] == "rostclust", context
    assert lease["dns"] == "192.168.0.1", context


@pytest.mark.parametrize("server", SERVERS)
def test_node_gets_its_address_and_boot_file(
    server: str, link: Link, daemons: Daemons, tmp_path: Path
) -> None:
    daemon = served(server, link, daemons, tmp_path)
    lease = request_lease(link, NODE01_MAC, tmp_path / "client")
    assert lease is not None, f"no lease for node01\n{daemon.output()}"
    assert_pxe_lease(lease, "192.168.0.11", "node01", daemon)
    # No gateway in the inventory: no default route may be handed out.
    assert "router" not in lease.env, f"unexpected router {lease.env.get('router')}"


@pytest.mark.parametrize("server", SERVERS)
def test_update_node_mac_gets_the_update_address(
    server: str, link: Link, daemons: Daemons, tmp_path: Path
) -> None:
    daemon = served(server, link, daemons, tmp_path, update_node={"node": "node01"})
    lease = request_lease(link, NODE01_MAC, tmp_path / "client")
    assert lease is not None, f"no lease for the update node\n{daemon.output()}"
    assert_pxe_lease(lease, "192.168.0.253", "updatenode", daemon)
    other = request_lease(link, NODE02_MAC, tmp_path / "client")
    assert other is not None, f"no lease for node02\n{daemon.output()}"
    assert_pxe_lease(other, "192.168.0.12", "node02", daemon)


@pytest.mark.parametrize("server", SERVERS)
def test_gateway_is_handed_out_as_router(
    server: str, link: Link, daemons: Daemons, tmp_path: Path
) -> None:
    daemon = served(server, link, daemons, tmp_path, cluster=cluster(gateway="192.168.0.254"))
    lease = request_lease(link, NODE02_MAC, tmp_path / "client")
    assert lease is not None, f"no lease for node02\n{daemon.output()}"
    assert_pxe_lease(lease, "192.168.0.12", "node02", daemon)
    assert lease["router"] == "192.168.0.254"


@pytest.mark.parametrize("server", SERVERS)
def test_unknown_mac_gets_no_lease(
    server: str, link: Link, daemons: Daemons, tmp_path: Path
) -> None:
    """Only inventory MACs boot: no pool, no dynamic addresses."""
    daemon = served(server, link, daemons, tmp_path)
    lease = request_lease(link, UNKNOWN_MAC, tmp_path / "client", attempts=1)
    assert lease is None, f"an unknown MAC got {lease}\n{daemon.output()}"
    # The server saw the request (so the silence is a refusal, not a broken link).
    daemon.wait_for(re.escape(UNKNOWN_MAC), timeout=5)


# Node names dnsmasq's dhcp-host parser reads as something else when they stand alone: a lease
# time (digits, with an optional unit s/m/h/d/w) or a keyword (option.c, --dhcp-host).
LOOKALIKE_NAMES = ("007", "12h", "1d", "45m", "1w", "30s", "9", "infinite", "ignore")


@pytest.mark.parametrize("server", SERVERS)
def test_names_that_look_like_lease_times_or_keywords_are_served_as_names(
    server: str, link: Link, daemons: Daemons, tmp_path: Path
) -> None:
    """dnsmasq gave `007` a 120-second lease and no name, and never served `ignore`: its
    dhcp-host names are written with the domain (007.rostclust), which it cannot mistake."""
    nodes = [
        {"name": name, "mac": f"52:54:00:00:01:{i:02x}", "ip": f"192.168.0.{100 + i}"}
        for i, name in enumerate(LOOKALIKE_NAMES)
    ]
    daemon = served(server, link, daemons, tmp_path, nodes=nodes)
    for node in nodes:
        lease = request_lease(link, node["mac"], tmp_path / "client")
        assert lease is not None, f"no lease for {node['name']}\n{daemon.output()}"
        assert_pxe_lease(lease, node["ip"], node["name"], daemon)
        assert int(lease["lease"]) > 3600, f"{node['name']}: lease {lease['lease']} s"


@pytest.mark.parametrize("server", SERVERS)
def test_a_changed_client_identifier_keeps_the_reserved_address(
    server: str, link: Link, daemons: Daemons, tmp_path: Path
) -> None:
    """The PXE firmware and Linux on the same NIC present different client identifiers
    (option 61). Kea matched leases by client-id and refused the second
    (ALLOC_ENGINE_V4_ALLOC_FAIL_SUBNET); reservations are by hardware address on every
    server, and the address is the same both times."""
    daemon = served(server, link, daemons, tmp_path)
    for client_id in ("01525400000001", "ff0000000100010002aabbccddeeff", "00112233"):
        lease = request_lease(link, NODE01_MAC, tmp_path / "client", client_id=client_id)
        assert lease is not None, f"no lease with client-id {client_id}\n{daemon.output()}"
        assert_pxe_lease(lease, "192.168.0.11", "node01", daemon)


@pytest.mark.parametrize("server", SERVERS)
def test_a_node_with_two_boot_nics_gets_its_address_on_either(
    server: str, link: Link, daemons: Daemons, tmp_path: Path
) -> None:
    """One node, two MACs (a second boot NIC), one address: dhcpd a host declaration per MAC,
    Kea a reservation each (non-unique addresses allowed), dnsmasq both MACs on one line."""
    nodes = [
        {**base_nodes()[0], "mac": [NODE01_MAC, "52:54:00:00:00:a1"]},
        base_nodes()[1],
    ]
    daemon = served(server, link, daemons, tmp_path, nodes=nodes)
    # Kea gives a reserved address to one client at a time: the other NIC's lease must expire
    # first (the README says so), so Kea is asked for the second NIC's alone; dhcpd and
    # dnsmasq hand the address to either NIC, one after the other.
    macs = ["52:54:00:00:00:a1"] if server == "kea" else [NODE01_MAC, "52:54:00:00:00:a1"]
    for mac in macs:
        lease = request_lease(link, mac, tmp_path / "client")
        assert lease is not None, f"no lease for {mac}\n{daemon.output()}"
        assert_pxe_lease(lease, "192.168.0.11", "node01", daemon)


# Option 93 values (IANA "Processor Architecture Types"): 0 x86 BIOS, 7 and 9 x64 UEFI (render/
# firmware.py); None: a client that sends no option 93 (as udhcpc by default).
ARCH_BOOT_FILES = ((None, PXELINUX), (0, PXELINUX), (7, SHIM), (9, SHIM))


@pytest.mark.parametrize("server", SERVERS)
def test_the_boot_file_follows_the_client_architecture(
    server: str, link: Link, daemons: Daemons, tmp_path: Path
) -> None:
    """A node with boot: auto (the default) gets pxelinux.0 as a BIOS client (option 93 = 0 or
    none sent) and the signed shim as an x86-64 UEFI client (7 or 9), from each server; the
    update node's MAC as well, with the update address."""
    daemon = served(server, link, daemons, tmp_path, update_node={"node": "node02"})
    for arch, boot_file in ARCH_BOOT_FILES:
        for mac, ip, name in (
            (NODE01_MAC, "192.168.0.11", "node01"),
            (NODE02_MAC, "192.168.0.253", "updatenode"),
        ):
            lease = request_lease(link, mac, tmp_path / "client", arch=arch)
            assert lease is not None, f"no lease for {name}, arch {arch}\n{daemon.output()}"
            assert_pxe_lease(lease, ip, name, daemon, boot_file)


@pytest.mark.parametrize("server", SERVERS)
def test_a_node_forced_to_bios_or_uefi_gets_that_boot_file_whatever_it_sends(
    server: str, link: Link, daemons: Daemons, tmp_path: Path
) -> None:
    """boot: uefi gets the shim and boot: bios pxelinux.0 for every architecture sent, the
    second NIC of a two-NIC node too; a forced update node keeps its choice at the update
    address; the other nodes still go by option 93."""
    nodes = [
        {**base_nodes()[0], "boot": "uefi"},
        {**base_nodes()[1], "boot": "bios"},
        {"name": "node03", "mac": ["52:54:00:00:00:03", "52:54:00:00:00:a3"], "ip": "192.168.0.13",
         "boot": "uefi"},
        {"name": "node04", "mac": "52:54:00:00:00:04", "ip": "192.168.0.14"},
    ]  # fmt: skip
    daemon = served(server, link, daemons, tmp_path, nodes=nodes, update_node={"node": "node03"})
    # Kea hands a reserved address to one client at a time (see the two-NIC test above): the
    # update node is asked for on its second NIC alone.
    update_mac = "52:54:00:00:00:a3"
    for arch, by_arch in ARCH_BOOT_FILES:
        for mac, ip, name, boot_file in (
            (NODE01_MAC, "192.168.0.11", "node01", SHIM),
            (NODE02_MAC, "192.168.0.12", "node02", PXELINUX),
            (update_mac, "192.168.0.253", "updatenode", SHIM),
            ("52:54:00:00:00:04", "192.168.0.14", "node04", by_arch),
        ):
            lease = request_lease(link, mac, tmp_path / "client", arch=arch)
            assert lease is not None, f"no lease for {name}, arch {arch}\n{daemon.output()}"
            assert_pxe_lease(lease, ip, name, daemon, boot_file)
