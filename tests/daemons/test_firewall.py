"""The master firewall for real: the rendered nftables ruleset loaded in a master namespace.

The master namespace has two links: the cluster link to a node namespace (the master at
192.168.0.1/24, the node at 192.168.0.11/24, and a foreign host's address 10.88.0.5/24 on the
same link) and an outside link to another namespace (10.77.0.1/24 and 10.77.0.2/24). Echo
listeners (netprobe.py) stand in for the boot services on every port of the ruleset, with two
ports no boot service uses beside them; the real in.tftpd, DHCP servers, rpcbind and
nfs-ganesha show the services themselves get through. Before the ruleset is loaded, the same
probes from the outside are served, so a drop afterwards is the firewall's doing."""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clustcontrol import verify
from clustcontrol.inventory.model import Inventory
from clustcontrol.render import RenderContext, render_all
from clustcontrol.render.base import Output
from clustcontrol.render.firewall import (
    REMOVE_TABLE,
    RULESET,
    UNIT_FILE,
    WANTS,
    FirewallPort,
    cluster_interface,
    firewall_ports,
)
from clustcontrol.render.nfs import MOUNTD_PORT
from clustcontrol.verify import CheckResult, check_outputs
from tests.daemons.conftest import (
    Daemons,
    Link,
    Netns,
    cluster,
    ganesha_command,
    in_netns,
    inventory,
    make_link,
    must,
    poll,
    render_into,
    run,
)
from tests.daemons.test_dhcp import request_lease, start_dhcp_server

pytestmark = pytest.mark.daemon

NETPROBE = Path(__file__).with_name("netprobe.py")
MASTER = "192.168.0.1"
NODE = "192.168.0.11"
FOREIGN_ON_CLUSTER_LINK = ("10.88.0.1", "10.88.0.5")  # the master's, the foreign host's
OUTSIDE = ("10.77.0.1", "10.77.0.2")  # the master's, the outside host's
SPOOFED = "192.168.0.77"  # a cluster address, sent from the outside link
RSYNC_PORT = 8873
OTHER_PORTS = ("tcp:2222", "udp:5555")  # no boot service: the host's policy decides
PROBE_TIMEOUT = 1.5


def specs(ports: list[FirewallPort]) -> list[str]:
    """netprobe's PROTO:PORT for each port and protocol of the ruleset."""
    return [f"{proto}:{port.number}" for port in ports for proto in port.protocols]


@dataclass
class Site:
    """The master namespace with its two links, the inventory and the rendered tree."""

    cluster: Link
    outside: Link
    inv: Inventory
    root: Path
    log: Path

    @property
    def master(self) -> str:
        return self.cluster.server_ns

    @property
    def ruleset(self) -> Path:
        return self.root / RULESET.lstrip("/")

    def nft(self, *args: str | Path) -> str:
        return must(in_netns(self.master, "nft", *args)).stdout

    def load(self) -> None:
        self.nft("-f", self.ruleset)

    def probe(
        self, ns: str, host: str, ports: list[str], source: str | None = None
    ) -> dict[str, bool]:
        argv: list[str | Path] = [sys.executable, NETPROBE, "probe", host, str(PROBE_TIMEOUT)]
        if source:
            argv += ["--source", source]
        result: dict[str, bool] = json.loads(must(in_netns(ns, *argv, *ports)).stdout)
        return result

    def logged(self) -> set[tuple[str, int, str]]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return {(p, int(n), s) for p, n, s in (line.split() for line in lines)}


def build_site(
    netns: Netns,
    tmp_path: Path,
    *,
    interface: bool,
    cluster_changes: dict[str, object] | None = None,
    **overrides: object,
) -> Site:
    """The namespaces and links, and the base inventory with the firewall on, the rsync
    transport on RSYNC_PORT, `cluster_changes`, dhcp_interface the cluster link's master side
    when `interface`, and the other top-level `overrides`; rendered into tmp_path/tree."""
    cluster_link = make_link(netns, f"{MASTER}/24")
    outside = make_link(netns, f"{OUTSIDE[0]}/24", server_ns=cluster_link.server_ns)
    node, master = cluster_link.client_ns, cluster_link.server_ns
    must(["ip", "-n", node, "addr", "add", f"{NODE}/24", "dev", cluster_link.client_if])
    must(
        [
            "ip",
            "-n",
            node,
            "addr",
            "add",
            f"{FOREIGN_ON_CLUSTER_LINK[1]}/24",
            "dev",
            cluster_link.client_if,
        ]
    )
    must(
        [
            "ip",
            "-n",
            master,
            "addr",
            "add",
            f"{FOREIGN_ON_CLUSTER_LINK[0]}/24",
            "dev",
            cluster_link.server_if,
        ]
    )
    must(
        ["ip", "-n", outside.client_ns, "addr", "add", f"{OUTSIDE[1]}/24", "dev", outside.client_if]
    )
    must(["ip", "-n", outside.client_ns, "addr", "add", f"{SPOOFED}/32", "dev", outside.client_if])
    # No reverse-path filter: a cluster address arriving on the outside link reaches the input
    # hook, where the firewall alone decides.
    for conf in ("all", "default", outside.server_if):
        must(in_netns(master, "sysctl", "-q", "-w", f"net.ipv4.conf.{conf}.rp_filter=0"))
    section = cluster(
        firewall=True, rsync_port=RSYNC_PORT, transport="rsync", **(cluster_changes or {})
    )
    if interface:
        section["dhcp_interface"] = cluster_link.server_if
    inv = inventory(cluster=section, **overrides)
    root = tmp_path / "tree"
    render_into(inv, root)
    return Site(cluster_link, outside, inv, root, tmp_path / "netprobe.log")


@pytest.fixture
def site(netns: Netns, tmp_path: Path) -> Site:
    return build_site(netns, tmp_path, interface=True)


def start_listeners(site: Site, daemons: Daemons, ports: list[str]) -> None:
    daemons.start(
        "netprobe",
        in_netns(site.master, sys.executable, NETPROBE, "serve", site.log, *ports),
        ready=r"^ready$",
    )


@pytest.mark.parametrize("interface", [True, False], ids=["dhcp_interface", "no-interface"])
def test_the_cluster_is_served_and_everyone_else_dropped(
    interface: bool, netns: Netns, daemons: Daemons, tmp_path: Path
) -> None:
    site = build_site(netns, tmp_path, interface=interface)
    boot = specs(firewall_ports(site.inv, rsync=True))
    assert f"tcp:{RSYNC_PORT}" in boot and "udp:69" in boot and f"tcp:{MOUNTD_PORT}" in boot
    every = [*boot, *OTHER_PORTS]
    start_listeners(site, daemons, every)
    outside_ns, master_ns = site.outside.client_ns, site.master
    node_ns = site.cluster.client_ns

    # Without the firewall the outside host reaches every port: the probes can see a drop.
    assert site.probe(outside_ns, OUTSIDE[0], every) == dict.fromkeys(every, True)

    site.load()
    served = dict.fromkeys(every, True)
    dropped = {**dict.fromkeys(boot, False), **dict.fromkeys(OTHER_PORTS, True)}
    assert site.probe(node_ns, MASTER, every) == served
    assert site.probe(master_ns, OUTSIDE[0], every) == served  # the master itself (loopback)
    assert site.probe(outside_ns, OUTSIDE[0], every) == dropped
    foreign = site.probe(node_ns, FOREIGN_ON_CLUSTER_LINK[0], every, FOREIGN_ON_CLUSTER_LINK[1])
    assert foreign == dropped

    # A cluster address on the outside link: the replies cannot return (they are routed to the
    # cluster link), so the listeners' log tells what arrived. UDP port 5555 is no boot port:
    # it arrives, which shows the spoofed datagrams reach the master at all.
    udp = [s for s in every if s.startswith("udp:")]
    site.probe(outside_ns, OUTSIDE[0], udp, SPOOFED)
    arrived = {f"{p}:{n}" for p, n, source in site.logged() if source == SPOOFED}

    def spoofed_arrived() -> bool:
        arrived.update(f"{p}:{n}" for p, n, source in site.logged() if source == SPOOFED)
        return "udp:5555" in arrived

    poll(spoofed_arrived, "the spoofed datagram to udp:5555 in the listeners' log", timeout=5)
    boot_udp = {s for s in udp if s in boot}
    # With dhcp_interface the cluster network is served on that interface only; without it,
    # on any interface.
    assert arrived == ({"udp:5555"} if interface else {"udp:5555", *boot_udp})

    # The counters of the drop rules saw the outside probes.
    listing = site.nft("list", "table", "inet", "clustcontrol")
    counts = re.findall(r"counter packets (\d+) bytes \d+ drop", listing)
    assert len(counts) == len(firewall_ports(site.inv, rsync=True))
    assert all(int(count) > 0 for count in counts), listing


def test_loading_again_replaces_only_our_table(site: Site) -> None:
    """The ruleset loads twice without error, leaves another table alone, and nft delete table
    (or apply's REMOVE_TABLE, which also works when the table is gone) removes it alone."""
    admin = site.root / "admin.nft"
    admin.write_text(
        "table inet filter {\n"
        "\tchain input {\n"
        "\t\ttype filter hook input priority filter; policy accept;\n"
        "\t\ttcp dport 22 counter accept\n"
        "\t}\n"
        "}\n"
    )
    site.nft("-f", admin)
    site.load()
    first = site.nft("list", "ruleset")
    site.load()
    assert site.nft("list", "ruleset") == first
    assert "table inet filter" in first and "table inet clustcontrol" in first
    site.nft(REMOVE_TABLE)
    after = site.nft("list", "ruleset")
    assert "table inet clustcontrol" not in after
    assert "tcp dport 22 counter packets 0 bytes 0 accept" in after
    site.nft(REMOVE_TABLE)  # nothing left to remove: still no error
    assert site.nft("list", "ruleset") == after


# --- the services themselves ---------------------------------------------------------------


HOST_POLICY = """\
table inet hostpolicy {
	chain input {
		type filter hook input priority filter; policy drop;
		iif "lo" accept
		ct state established,related accept
		udp dport 69 accept
	}
}
"""


def test_tftp_transfers_under_the_firewall_and_a_strict_host_policy(
    site: Site, daemons: Daemons
) -> None:
    """The real in.tftpd: a node fetches a multi-block file; the outside host is dropped.

    The host's own policy drops everything but TFTP requests and established flows: the
    transfer runs between ports in.tftpd picks and the client's, and the client's ACKs belong
    to the flow the server's first DATA packet opened, so no conntrack helper is needed. The
    host policy lets the outside host's request in, and only our table drops it."""
    tftp_root = site.root / "srv-tftp"
    tftp_root.mkdir()
    payload = os.urandom(300_000)  # ~590 blocks of 512 bytes
    (tftp_root / "file.bin").write_bytes(payload)
    site.nft("-f", _write(site.root / "hostpolicy.nft", HOST_POLICY))
    daemons.start(
        "in.tftpd",
        in_netns(site.master, "in.tftpd", "--listen", "--address", "0.0.0.0:69", "--secure",
                 "--foreground", "--user", "root", tftp_root),
    )  # fmt: skip
    poll(lambda: _udp_bound(site.master, 69), "in.tftpd on port 69")

    def fetch(ns: str, host: str, out: Path) -> int:
        argv: list[str | Path] = ["curl", "-s", "--max-time", "4", "-o", out]
        argv.append(f"tftp://{host}/file.bin")
        return run(in_netns(ns, *argv)).returncode

    before = site.root / "outside-before.bin"
    assert fetch(site.outside.client_ns, OUTSIDE[0], before) == 0
    assert before.read_bytes() == payload
    site.load()
    got = site.root / "node.bin"
    assert fetch(site.cluster.client_ns, MASTER, got) == 0
    assert got.read_bytes() == payload
    assert fetch(site.outside.client_ns, OUTSIDE[0], site.root / "outside.bin") != 0


@pytest.mark.parametrize("server", ["isc", "kea", "dnsmasq"])
def test_a_node_without_an_address_gets_its_lease(
    server: str, netns: Netns, daemons: Daemons, tmp_path: Path
) -> None:
    """DHCP from 0.0.0.0 passes on the cluster interface. With a ruleset for another interface
    dnsmasq (a UDP socket, behind netfilter) gets nothing; ISC dhcpd and Kea read packet
    sockets before netfilter and serve anyway: the firewall's documented limit."""
    link = make_link(netns, f"{MASTER}/24")
    inv = inventory(
        cluster=cluster(firewall=True, dhcp_server=server, dhcp_interface=link.server_if)
    )
    start_dhcp_server(server, inv, link, daemons, tmp_path / "dhcp")
    ruleset = tmp_path / "dhcp" / "tree" / RULESET.lstrip("/")
    must(link.server("nft", "-f", ruleset))
    lease = request_lease(link, "52:54:00:00:00:01", tmp_path / "client")
    assert lease is not None and lease["ip"] == NODE

    elsewhere = tmp_path / "elsewhere"
    render_into(inventory(cluster=cluster(firewall=True, dhcp_interface="other0")), elsewhere)
    must(link.server("nft", "-f", elsewhere / RULESET.lstrip("/")))
    lease = request_lease(link, "52:54:00:00:00:01", tmp_path / "client2", attempts=3)
    assert (lease is None) == (server == "dnsmasq")


def test_nfs_rpcbind_and_mountd_for_the_cluster_only(
    netns: Netns, daemons: Daemons, tmp_path: Path
) -> None:
    """rpcbind and nfs-ganesha with the rendered config (mountd pinned to MOUNTD_PORT): a node
    lists the RPC services and the exports; the outside host gets no answer from rpcbind or
    mountd. (The kernel server's mountd port is read back with nfsconf in test_listen.py.)
    Without a cluster interface, so that ganesha listens on every address (test_listen.py
    covers Bind_addr) and the outside host is answered before the firewall is loaded."""
    site = build_site(
        netns,
        tmp_path,
        interface=False,
        cluster_changes={"nfs_server": "ganesha", "state_dir": str(tmp_path / "state")},
        images={"default": {"root": str(tmp_path / "standard")}},
    )
    # What the exports name: the generation roots and the working tree, each with the control
    # directory's mount point.
    for root in (site.inv.generation_roots("default"), site.inv.images["default"].root):
        (Path(root) / "etc/clustcontrol").mkdir(parents=True)
    conf = site.root / "etc/ganesha/ganesha.conf"
    daemons.start("ganesha", in_netns(site.master, *ganesha_command(conf, tmp_path / "g.log")))

    def registered() -> bool:
        proc = run(in_netns(site.cluster.client_ns, "rpcinfo", "-p", MASTER), timeout=10)
        return re.search(rf"100005\s+3\s+tcp\s+{MOUNTD_PORT}\s+mountd", proc.stdout) is not None

    poll(registered, f"mountd registered on port {MOUNTD_PORT}", timeout=60)
    outside = site.outside.client_ns

    def answered(ns: str, host: str, *command: str) -> bool:
        # SIGKILL: rpcinfo and showmount wait out a dropped connection whatever SIGTERM says.
        argv = in_netns(ns, "timeout", "-s", "KILL", "5", *command, host)
        return run(argv).returncode == 0

    showmount = ("showmount", "--no-headers", "-e")
    assert answered(outside, OUTSIDE[0], *showmount)  # before the firewall
    site.load()
    exports = must(in_netns(site.cluster.client_ns, *showmount, MASTER)).stdout
    assert site.inv.generation_roots("default") in exports
    assert not answered(outside, OUTSIDE[0], "rpcinfo", "-p")
    assert not answered(outside, OUTSIDE[0], *showmount)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _udp_bound(ns: str, port: int) -> bool:
    return f":{port} " in run(in_netns(ns, "ss", "-Hlun")).stdout


# --- the checkers ---------------------------------------------------------------------------


def _checked(inv: Inventory) -> tuple[bool, str]:
    outputs = [o for o in render_all(RenderContext(inv)) if o.path == RULESET]
    [result] = check_outputs(outputs)
    assert result.program == "nft" and not result.skipped
    return result.ok, result.output


def test_apply_checker_rejects_a_broken_ruleset(tmp_path: Path) -> None:
    inv = inventory(cluster=cluster(firewall=True))
    assert _checked(inv) == (True, "")
    good = render_all(RenderContext(inv))[RULESET].data().decode()
    for broken in (good.replace(" drop ", " dropp "), good.replace("ip saddr", "ip source")):
        [result] = check_outputs([Output(RULESET, "firewall", broken.encode())])
        assert not result.ok and "Error" in result.output


def test_apply_checker_works_without_root(tmp_path: Path) -> None:
    """As a user (apply --root into a prefix), nft --check runs in a user namespace."""
    inv = inventory(cluster=cluster(firewall=True))
    outputs = [o for o in render_all(RenderContext(inv)) if o.path == RULESET]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child turns into nobody and checks
        os.close(read)
        code = 1
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            [result] = check_outputs(outputs)
            os.write(write, json.dumps([result.ok, result.skipped, result.output]).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0 and json.loads(report) == [True, False, ""]


def test_apply_checker_without_a_namespace_says_it_did_not_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where unshare itself fails (user namespaces turned off, as a user), the ruleset is not
    checked and the result says so, as Kea's does for an absent interface; nft's own errors
    stay failures."""
    denied = "unshare: unshare failed: Operation not permitted"
    monkeypatch.setattr(
        verify,
        "_check",
        lambda *args: CheckResult("firewall", "unshare", RULESET, False, False, denied),
    )
    [result] = check_outputs([Output(RULESET, "firewall", b"table inet clustcontrol\n")])
    assert (result.ok, result.status) == (
        True,
        f"ok (not checked: no network namespace here: {denied})",
    )
    monkeypatch.setattr(
        verify,
        "_check",
        lambda *args: CheckResult("firewall", "unshare", RULESET, False, False, "Error: x"),
    )
    [result] = check_outputs([Output(RULESET, "firewall", b"table inet clustcontrol\n")])
    assert (result.ok, result.status) == (False, "FAILED")


def test_unit_and_drop_in_pass_systemd_analyze(tmp_path: Path) -> None:
    """systemd-analyze verify loads the unit with the drop-in: no warning at all (it reports
    unknown keys and bad values as warnings only, so any output fails the test)."""
    render_into(inventory(cluster=cluster(firewall=True)), tmp_path)
    unit = tmp_path / UNIT_FILE.lstrip("/")
    proc = run(["systemd-analyze", "verify", unit])
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")
    wants = (tmp_path / WANTS.lstrip("/")).read_text()
    assert f"Wants={unit.name}" in wants.splitlines()
    broken = tmp_path / "broken" / unit.name
    broken.parent.mkdir()
    broken.write_text(unit.read_text().replace("Type=oneshot", "Type=oneshoot"))
    proc = run(["systemd-analyze", "verify", broken])
    assert "oneshoot" in proc.stdout + proc.stderr


# --- the property: every inventory's ruleset loads, and says what the inventory says -----------


def _rules(listing: dict[str, object]) -> Iterator[list[dict[str, object]]]:
    items = listing["nftables"]
    assert isinstance(items, list)
    for item in items:
        if "rule" in item:
            yield item["rule"]["expr"]


def _matches(expr: list[dict[str, object]]) -> dict[str, object]:
    """field (saddr, dport, iifname ...) -> the value the rule compares it with."""
    found: dict[str, object] = {}
    for statement in expr:
        match = statement.get("match")
        if not isinstance(match, dict):
            continue
        # left: {"payload": {"protocol": "ip", "field": "saddr"}}, {"meta": {"key": "iifname"}}
        left = match["left"]
        assert isinstance(left, dict)
        inner = next(iter(left.values()))
        found[str(inner.get("field") or inner.get("key"))] = match["right"]
    return found


networks = st.builds(
    lambda address, prefix: IPv4Network((address, prefix), strict=False),
    st.integers(0, 2**32 - 1),
    st.integers(8, 29),
).filter(lambda n: not (n.is_loopback or n.is_multicast or n.is_reserved))
interfaces = st.none() | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}", fullmatch=True)


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # the root check only
)
@given(
    network=networks,
    interface=interfaces,
    older_name=st.booleans(),
    rsync=st.booleans(),
    rsync_port=st.integers(1, 65535),
)
def test_every_inventory_ruleset_checks_and_loads(
    network: IPv4Network, interface: str | None, older_name: bool, rsync: bool, rsync_port: int
) -> None:
    """For any cluster network, interface name (master.interface, or dhcp_interface, its older
    name) and rsync port the rendered ruleset passes apply's checker (nft --check), and loaded
    into a namespace of its own it returns exactly the cluster network (on that interface, the
    alias suffix dropped) and drops exactly the ports firewall_ports lists."""
    master = {"name": "master", "ip": str(network[1])}
    section = cluster(
        network=str(network),
        master=master if older_name else {**master, "interface": interface},
        firewall=True,
        rsync_port=rsync_port,
        transport="rsync" if rsync else "nfs",
        dhcp_interface=interface if older_name else None,
    )
    inv = inventory(cluster=section, nodes=[])
    ok, output = _checked(inv)
    assert ok, output
    text = render_all(RenderContext(inv))[RULESET].data().decode()
    with tempfile.NamedTemporaryFile("w", suffix=".nft") as ruleset:
        ruleset.write(text)
        ruleset.flush()
        script = 'nft -f "$1" && nft -j list table inet clustcontrol'
        proc = run(["unshare", "--net", "sh", "-c", script, "sh", ruleset.name])
    assert proc.returncode == 0, proc.stderr
    rules = [_matches(expr) for expr in _rules(json.loads(proc.stdout))]
    prefix = {"prefix": {"addr": str(network.network_address), "len": network.prefixlen}}
    network_rule = next(r for r in rules if r.get("saddr") == prefix)
    if interface is None:
        assert "iifname" not in network_rule
    else:
        assert network_rule["iifname"] == cluster_interface(inv) == interface.split(":")[0]
    dropped = sorted(int(str(r["dport"])) for r in rules if "dport" in r and "saddr" not in r)
    assert dropped == [p.number for p in firewall_ports(inv, rsync=rsync)]
