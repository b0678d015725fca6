"""Kea DHCPv4: /etc/kea/kea-dhcp4.conf (JSON with Kea's comment extension)."""

from __future__ import annotations

from collections.abc import Iterator

from clustcontrol.render.base import Output, RenderContext, render_template
from clustcontrol.render.dhcp import common_values, reservations

KEA_CONF = "/etc/kea/kea-dhcp4.conf"


def render_kea(ctx: RenderContext) -> Iterator[Output]:
    view = ctx.view
    yield Output(
        path=KEA_CONF,
        service="dhcp-kea",
        mode=0o640,
        content=render_template(
            "dhcp/kea-dhcp4.conf.j2",
            interfaces=view.cluster.dhcp_interface or "*",
            reservations=reservations(view),
            **common_values(view),
        ),
    )
