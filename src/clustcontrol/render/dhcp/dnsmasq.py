"""dnsmasq as DHCP server only: /etc/dnsmasq.d/clustcontrol.conf."""

from __future__ import annotations

from collections.abc import Iterator

from clustcontrol.render.base import Output, RenderContext, render_template
from clustcontrol.render.dhcp import common_values, reservations

DNSMASQ_CONF = "/etc/dnsmasq.d/clustcontrol.conf"


def render_dnsmasq(ctx: RenderContext) -> Iterator[Output]:
    view = ctx.view
    yield Output(
        path=DNSMASQ_CONF,
        service="dhcp-dnsmasq",
        content=render_template(
            "dhcp/dnsmasq.conf.j2",
            interface=view.cluster.dhcp_interface,
            reservations=reservations(view),
            **common_values(view),
        ),
    )
