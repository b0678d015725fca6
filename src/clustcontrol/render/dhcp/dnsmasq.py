"""dnsmasq as DHCP server only: /etc/dnsmasq.d/clustcontrol.conf."""

from __future__ import annotations

from collections.abc import Iterator

from clustcontrol.render.base import Output, RenderContext, render_template
from clustcontrol.render.dhcp import common_values, reservations

DNSMASQ_CONF = "/etc/dnsmasq.d/clustcontrol.conf"


def render_dnsmasq(ctx: RenderContext) -> Iterator[Output]:
    """/etc/dnsmasq.d/clustcontrol.conf: DHCP only (port=0 turns off DNS), a static range
    over the cluster subnet and one dhcp-host=MAC,IP,NAME.DOMAIN per reservation (dnsmasq(8); the
    domain makes every name one: dnsmasq's option.c reads a bare name of digits with an optional
    unit letter as a lease time, and `infinite` and `ignore` as keywords). With
    no gateway the router option is sent empty, so dnsmasq does not offer its own address. With
    the master's cluster interface (Cluster.master_interface): interface= and bind-interfaces,
    so dnsmasq serves and binds on that interface alone (dnsmasq(8), --interface,
    --bind-interfaces). The boot file by architecture: dhcp-match on option:client-arch (93)
    sets the tag efi-x86_64, a node's forced boot (Node.boot) the tag boot-bios or boot-uefi
    on its dhcp-host line, and each dhcp-boot line requires tags that select one file only
    (dnsmasq(8), --dhcp-match, --dhcp-boot, "tag:!")."""
    view = ctx.view
    yield Output(
        path=DNSMASQ_CONF,
        service="dhcp-dnsmasq",
        content=render_template(
            "dhcp/dnsmasq.conf.j2",
            interface=view.interface,
            reservations=reservations(view),
            **common_values(view),
        ),
    )
