"""Kea DHCPv4: /etc/kea/kea-dhcp4.conf (JSON with Kea's comment extension)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import NamedTuple

from clustcontrol.render.base import Output, RenderContext, render_template
from clustcontrol.render.dhcp import common_values, reservations
from clustcontrol.render.view import HostView

KEA_CONF = "/etc/kea/kea-dhcp4.conf"
KEA_GROUP = "_kea"  # the group of the user Debian's kea-dhcp4-server runs as


class Reservation(NamedTuple):
    """A host reservation's values as JSON strings.

    Names, MACs and addresses are validated to letters, digits, '-', ':' and '.', so json.dumps
    writes them just as the template's tojson filter would, at a fraction of its cost per value."""

    mac: str
    ip: str
    name: str

    @classmethod
    def of(cls, host: HostView) -> list[Reservation]:
        """One reservation per MAC of the host: the MAC, the host's address and name, each
        JSON-encoded (quoted). Two NICs of one node share its address ("ip-reservations-unique":
        false in the template)."""
        ip, name = json.dumps(host.ip), json.dumps(host.name)
        return [cls(json.dumps(mac), ip, name) for mac in host.macs]


def render_kea(ctx: RenderContext) -> Iterator[Output]:
    """/etc/kea/kea-dhcp4.conf, root:_kea 0640 (0644 where there is no _kea group): one subnet4
    with reservations by hw-address and leases matched by it alone ("match-client-id": false:
    the PXE firmware and Linux on one NIC present different client identifiers, and Kea would
    refuse the second its reserved address), on the master's cluster interface
    (Cluster.master_interface) or on every interface ("*").
    Format: the Kea DHCPv4 configuration (kea-dhcp4(8) and the Kea Administrator Reference
    Manual). Debian's kea-dhcp4-server runs as user _kea (its systemd unit's User=); Debian 12
    ships the file 0644 root:root in a 0755 /etc/kea, Debian 13 makes /etc/kea 0750 _kea:_kea,
    so the group's read permission is the one that lasts."""
    view = ctx.view
    yield Output(
        path=KEA_CONF,
        service="dhcp-kea",
        mode=0o640,
        group=KEA_GROUP,
        content=render_template(
            "dhcp/kea-dhcp4.conf.j2",
            interfaces=view.interface or "*",
            reservations=[r for host in reservations(view) for r in Reservation.of(host)],
            **common_values(view),
        ),
    )
