"""The master firewall: an nftables table of clustcontrol's own that keeps the boot services to
the cluster network, loaded at boot by a systemd unit of its own.

    /etc/nftables.d/clustcontrol.nft                        the ruleset (nft(8) syntax)
    /etc/systemd/system/clustcontrol-firewall.service       loads it: nft -f at start and reload
    /etc/systemd/system/sysinit.target.d/clustcontrol-firewall.conf
                                                            Wants= the unit: it starts at boot

**One table, only drops.** The ruleset is `table inet clustcontrol` and nothing else: `nft
delete table inet clustcontrol` removes it and leaves every other table alone. Every base
chain on a hook sees the packet, whatever table it is in: an accept in one chain does not stop
another base chain evaluated after it from dropping the packet, and a drop is final (nft(8),
"VERDICT STATEMENT"). So the table never accepts: it drops traffic to the boot services'
ports (FirewallPort, firewall_ports) that does not come from the cluster network (through
the master's cluster interface when that is set: Cluster.master_interface), and returns
everything else to the host's own policy, which may still drop it. The master itself (the
loopback interface) and packets of connections already established (the replies to the
master's own connections, whose local port may be one of ours by chance) pass; DHCP clients
that have no address yet send from 0.0.0.0 (RFC 2131 section 4.1) and pass on the cluster
interface (on every interface when none is set). IPv6 packets to the ports are dropped
except on loopback: the boot services are IPv4.

**Loading.** Debian's nftables.service loads /etc/nftables.conf, which starts with `flush
ruleset` and includes nothing; it is not enabled by default, and an admin who uses another tool
(firewalld, ufw, iptables-nft) keeps it off. Writing into /etc/nftables.conf, or enabling that
service, would change the admin's own policy; so the table has a unit of its own, ordered after
nftables.service (its flush comes first at boot), PartOf= it (a restart of nftables.service,
which flushes, restarts ours after it) and ReloadPropagatedFrom= it (its reload, which flushes,
reloads ours after it: systemd orders reload jobs by After= like start jobs, src/core/job.c,
job_compare). The unit is pulled in by a drop-in Wants= of sysinit.target, where Debian's
nftables.service is wanted too, instead of an enable symlink: every piece is a plain file that
apply installs, and removes again when the firewall is turned off. The ruleset opens with
`table inet clustcontrol` + `delete table inet clustcontrol` (nft 1.0.6 of Debian 12 has no
`destroy`), so loading it again replaces the table in one transaction, never leaving a moment
without it; an admin who includes /etc/nftables.d/*.nft from nftables.conf loads the same table
the same way.

**Limits.** ISC dhcpd and Kea (its default raw sockets) read DHCP through packet sockets,
before netfilter: for them the interface restriction is the server's own (master.interface);
dnsmasq uses a UDP socket and is covered. A DHCP relay outside the cluster network is dropped.
The kernel NFS server's lockd and statd keep random ports (nodes mount with nolock); mountd is
pinned (render/nfs.py, MOUNTD_PORT)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from clustcontrol.inventory.model import Inventory
from clustcontrol.render.base import Output, RenderContext, render_template
from clustcontrol.render.nfs import MOUNTD_PORT, NFS_PORT, RPCBIND_PORT

RULESET = "/etc/nftables.d/clustcontrol.nft"
UNIT = "clustcontrol-firewall.service"
UNIT_FILE = f"/etc/systemd/system/{UNIT}"
WANTS = "/etc/systemd/system/sysinit.target.d/clustcontrol-firewall.conf"
TABLE = "inet clustcontrol"
# Loaded on its own, this removes the table whether it exists or not (one transaction).
REMOVE_TABLE = f"add table {TABLE}; delete table {TABLE}"

DNS_PORT = 53  # RFC 1035 section 4.2: UDP and TCP
DHCP_SERVER_PORT = 67  # RFC 2131 section 4.1
TFTP_PORT = 69  # RFC 1350 section 4; the data flows from a port of the server's choosing

Protocol = str  # "tcp" or "udp"


@dataclass(frozen=True)
class FirewallPort:
    """One port of the boot services: its number (1 to 65535), the transport protocols (sorted,
    "tcp" and/or "udp") and the services that listen on it, for the rule's comment."""

    number: int
    protocols: tuple[Protocol, ...]
    services: str

    @property
    def match(self) -> str:
        """The nft match of this port: `tcp dport N`, `udp dport N` or, for both,
        `meta l4proto { tcp, udp } th dport N` (th: the transport header, nft(8))."""
        if len(self.protocols) == 1:
            return f"{self.protocols[0]} dport {self.number}"
        return f"meta l4proto {{ {', '.join(self.protocols)} }} th dport {self.number}"


def firewall_ports(inv: Inventory, *, rsync: bool) -> list[FirewallPort]:
    """The ports of the boot services, sorted by number: DNS 53 tcp+udp, DHCP 67 udp, TFTP 69
    udp (the requests; the transfer itself runs between ports the client and the server pick),
    rpcbind 111, NFS 2049 and mountd MOUNTD_PORT tcp+udp, and, when `rsync` (an image uses the
    rsync transport, so apply installs the rsync daemon), cluster.rsync_port tcp. A port two
    services share appears once with both protocols and both names (e.g. an rsync_port of 53)."""
    wanted: list[tuple[int, tuple[Protocol, ...], str]] = [
        (DNS_PORT, ("tcp", "udp"), "DNS"),
        (DHCP_SERVER_PORT, ("udp",), "DHCP"),
        (TFTP_PORT, ("udp",), "TFTP"),
        (RPCBIND_PORT, ("tcp", "udp"), "rpcbind"),
        (NFS_PORT, ("tcp", "udp"), "NFS"),
        (MOUNTD_PORT, ("tcp", "udp"), "NFS mountd"),
    ]
    if rsync:
        wanted.append((inv.cluster.rsync_port, ("tcp",), "rsync daemon"))
    merged: dict[int, tuple[set[Protocol], list[str]]] = {}
    for number, protocols, service in wanted:
        entry = merged.setdefault(number, (set(), []))
        entry[0].update(protocols)
        entry[1].append(service)
    return [
        FirewallPort(number, tuple(sorted(protocols)), ", ".join(services))
        for number, (protocols, services) in sorted(merged.items())
    ]


def cluster_interface(inv: Inventory) -> str | None:
    """The master's interface on the cluster network for the firewall: Cluster.master_interface,
    without an alias suffix (`eth1:0` -> `eth1`: an address label, while packets arrive on the
    device, whose name cannot hold ':', Linux dev_valid_name); None when it is unset."""
    interface = inv.cluster.master_interface
    return interface.split(":", 1)[0] if interface else None


def uses_rsync(inv: Inventory) -> bool:
    """Whether an image uses the rsync transport (so apply installs the rsync daemon)."""
    return any(inv.transport_of(name) == "rsync" for name in inv.images)


def render_firewall(ctx: RenderContext) -> Iterator[Output]:
    """The firewall's three files (service "firewall", mode 0644; see the module docstring):
    RULESET, rendered from the inventory (firewall_ports, cluster.network, cluster_interface),
    and UNIT_FILE and WANTS, which only name RULESET and UNIT. Rendered whatever
    cluster.firewall says; apply installs them only when it is true."""
    inv = ctx.inventory
    interface = cluster_interface(inv)
    yield Output(
        path=RULESET,
        service="firewall",
        content=render_template(
            "firewall/clustcontrol.nft.j2",
            table=TABLE,
            network=str(inv.cluster.network),
            interface=interface,
            on_interface=f'iifname "{interface}" ' if interface else "",
            dhcp_port=DHCP_SERVER_PORT,
            ports=firewall_ports(inv, rsync=uses_rsync(inv)),
        ),
    )
    yield Output(
        path=UNIT_FILE,
        service="firewall",
        content=render_template(
            "firewall/clustcontrol-firewall.service.j2",
            ruleset=RULESET,
            table=TABLE,
        ),
    )
    yield Output(
        path=WANTS,
        service="firewall",
        content=render_template("firewall/sysinit-wants.conf.j2", unit=UNIT),
    )
