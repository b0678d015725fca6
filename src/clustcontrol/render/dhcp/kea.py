"""Kea DHCPv4: /etc/kea/kea-dhcp4.conf (JSON with Kea's comment extension)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import NamedTuple

from clustcontrol.render.base import Output, RenderContext, render_template
from clustcontrol.render.dhcp import common_values, reservations
from clustcontrol.render.view import HostView

KEA_CONF = "/etc/kea/kea-dhcp4.conf"


class Reservation(NamedTuple):
    """A host reservation's values as JSON strings.

    Names, MACs and addresses are validated to letters, digits, '-', ':' and '.', so json.dumps
    writes them just as the template's tojson filter would, at a fraction of its cost per value."""

    mac: str
    ip: str
    name: str

    @classmethod
    def of(cls, host: HostView) -> Reservation:
        """The host's MAC, address and name, each JSON-encoded (quoted)."""
        return cls(json.dumps(host.mac), json.dumps(host.ip), json.dumps(host.name))


def render_kea(ctx: RenderContext) -> Iterator[Output]:
    """/etc/kea/kea-dhcp4.conf, mode 0640: one subnet4 with reservations by hw-address, on
    cluster.dhcp_interface or on every interface ("*"). Format: the Kea DHCPv4 configuration
    (kea-dhcp4(8) and the Kea Administrator Reference Manual)."""
    view = ctx.view
    yield Output(
        path=KEA_CONF,
        service="dhcp-kea",
        mode=0o640,
        content=render_template(
            "dhcp/kea-dhcp4.conf.j2",
            interfaces=view.cluster.dhcp_interface or "*",
            reservations=[Reservation.of(host) for host in reservations(view)],
            **common_values(view),
        ),
    )
