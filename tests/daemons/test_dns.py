"""named serves the rendered zones: forward and reverse answers for every inventory address.

named runs chrooted into the rendered tree (see `start_named`), so the rendered zone declarations
and zone files are used unchanged; the test's own top-level named.conf only adds a loopback
listener on a free port. `test_rendered_options_serve_the_cluster` instead runs the rendered
named.conf.options as deployed, inside a network namespace that holds the master's address."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.daemons.conftest import (
    Daemons,
    Netns,
    base_nodes,
    cluster,
    dig_short,
    dig_status,
    inventory,
    make_link,
    must,
    render_into,
    start_named,
)

pytestmark = pytest.mark.daemon

LOCAL = "/etc/bind/named.conf.local"


def test_named_answers_forward_and_reverse(tmp_path: Path, daemons: Daemons) -> None:
    root = tmp_path / "tree"
    render_into(inventory(), root)
    # named.conf.local as rendered (the managed block alone) includes named.conf.clustcontrol.
    port = start_named(daemons, root, include=LOCAL).port

    assert dig_short(port, "node01.rostclust", "A") == ["192.168.0.11"]
    assert dig_short(port, "node02.rostclust", "A") == ["192.168.0.12"]
    # No update node set: nothing names the update address.
    assert dig_status(port, "updatenode.rostclust", "A") == "NXDOMAIN"
    assert dig_short(port, "master.rostclust", "A") == ["192.168.0.1"]
    assert dig_short(port, "rostclust", "NS") == ["master.rostclust."]
    assert dig_short(port, "-x", "192.168.0.11") == ["node01.rostclust."]
    assert dig_short(port, "-x", "192.168.0.12") == ["node02.rostclust."]
    assert dig_status(port, "-x", "192.168.0.253") == "NXDOMAIN"
    assert dig_short(port, "-x", "192.168.0.1") == ["master.rostclust."]

    assert dig_status(port, "node99.rostclust", "A") == "NXDOMAIN"
    assert dig_status(port, "-x", "192.168.0.99") == "NXDOMAIN"
    assert dig_status(port, "node01.rostclust", "A") == "NOERROR"


def test_update_node_keeps_its_own_name(tmp_path: Path, daemons: Daemons) -> None:
    """Moving node01 to the update address changes DHCP, not DNS: both names stay resolvable."""
    root = tmp_path / "tree"
    render_into(inventory(update_node={"node": "node01"}), root)
    port = start_named(daemons, root, include=LOCAL).port
    assert dig_short(port, "node01.rostclust", "A") == ["192.168.0.11"]
    assert dig_short(port, "updatenode.rostclust", "A") == ["192.168.0.253"]
    assert dig_short(port, "-x", "192.168.0.253") == ["updatenode.rostclust."]


def test_slash22_network_has_a_reverse_zone_per_slash24(tmp_path: Path, daemons: Daemons) -> None:
    nodes = [
        *base_nodes(),
        {"name": "node03", "mac": "52:54:00:00:00:03", "ip": "192.168.1.5"},
        {"name": "node04", "mac": "52:54:00:00:00:04", "ip": "192.168.2.200"},
    ]
    inv = inventory(
        cluster=cluster(network="192.168.0.0/22", gateway="192.168.0.254"),
        nodes=nodes,
        update_node={"node": "node04"},
    )
    root = tmp_path / "tree"
    render_into(inv, root)
    port = start_named(daemons, root, include=LOCAL).port

    assert dig_short(port, "node03.rostclust", "A") == ["192.168.1.5"]
    assert dig_short(port, "-x", "192.168.1.5") == ["node03.rostclust."]
    assert dig_short(port, "-x", "192.168.2.200") == ["node04.rostclust."]
    assert dig_short(port, "-x", "192.168.0.11") == ["node01.rostclust."]
    # The update address of a /22 is the third from its top, in the last /24.
    assert dig_short(port, "updatenode.rostclust", "A") == ["192.168.3.253"]
    assert dig_short(port, "-x", "192.168.3.253") == ["updatenode.rostclust."]
    assert dig_short(port, "1.168.192.in-addr.arpa", "SOA")[0] == "master.rostclust."
    assert dig_status(port, "-x", "192.168.1.6") == "NXDOMAIN"


def test_rendered_options_serve_the_cluster(tmp_path: Path, daemons: Daemons, netns: Netns) -> None:
    """The rendered named.conf.options as deployed: named listens on the master's address.

    The master's side of a veth pair gets 192.168.0.1, a node's side 192.168.0.11; named runs in
    the master's namespace with a Debian-style named.conf (options + local) and the node asks it
    across the link. The namespaces have no other interfaces, so nothing leaves them."""
    root = tmp_path / "tree"
    render_into(inventory(update_node={"node": "node02"}), root)
    (root / "var/cache/bind").mkdir(parents=True)  # the options' working directory
    (root / "etc/bind/named.conf").write_text(
        'include "/etc/bind/named.conf.options";\ninclude "/etc/bind/named.conf.local";\n'
    )
    link = make_link(netns, "192.168.0.1/24")
    must(link.client("ip", "addr", "add", "192.168.0.11/24", "dev", link.client_if))
    daemons.start(
        "named",
        link.server("named", "-g", "-u", "root", "-t", root, "-c", "/etc/bind/named.conf"),
        ready=r" running$",
    )

    def ask(*query: str) -> list[str]:
        argv = link.client("dig", "@192.168.0.1", "+time=2", "+tries=3", "+short", *query)
        return must(argv).stdout.split()

    assert ask("node01.rostclust", "A") == ["192.168.0.11"]
    assert ask("-x", "192.168.0.253") == ["updatenode.rostclust."]
    # listen-on names 127.0.0.1 too: the master resolves through its own named.
    local = link.server("dig", "@127.0.0.1", "+time=2", "+tries=3", "+short", "master.rostclust")
    assert must(local).stdout.split() == ["192.168.0.1"]
