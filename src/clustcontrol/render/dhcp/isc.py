"""ISC dhcpd: /etc/dhcp/dhcpd.conf (and the interface in /etc/default/isc-dhcp-server)."""

from __future__ import annotations

from collections.abc import Iterator

from clustcontrol.render.base import Output, RenderContext, render_template
from clustcontrol.render.dhcp import common_values
from clustcontrol.render.firmware import UEFI_X64_ARCHES, arch_octets

DHCPD_CONF = "/etc/dhcp/dhcpd.conf"
DEFAULTS = "/etc/default/isc-dhcp-server"


def render_isc(ctx: RenderContext) -> Iterator[Output]:
    """/etc/dhcp/dhcpd.conf (dhcpd.conf(5)): the subnet with PXE next-server and filename, a
    host declaration (hardware ethernet, fixed-address) per node and one for the update node.
    The filename by architecture: `if option pxe-system-type = 00:07 or ...` (dhcpd's name
    for option 93, dhcp-options(5)) in the subnet; a node's forced one (Node.boot) as the
    host declaration's own filename, which dhcpd evaluates after the subnet's statements.
    With the master's cluster interface (Cluster.master_interface) also
    /etc/default/isc-dhcp-server (INTERFACESv4): dhcpd serves that interface alone."""
    view = ctx.view
    yield Output(
        path=DHCPD_CONF,
        service="dhcp-isc",
        content=render_template(
            "dhcp/dhcpd.conf.j2",
            hosts=view.dhcp_hosts,
            update_host=view.update_host,
            uefi_octets=[arch_octets(a) for a in UEFI_X64_ARCHES],
            **common_values(view),
        ),
    )
    interface = view.interface
    if interface is not None:
        yield Output(
            path=DEFAULTS,
            service="dhcp-isc",
            content=render_template("dhcp/isc-dhcp-server.default.j2", interface=interface),
        )
