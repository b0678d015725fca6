"""Kea DHCPv4: /etc/kea/kea-dhcp4.conf (JSON with Kea's comment extension)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import NamedTuple

from clustcontrol.render.base import Output, RenderContext, render_template
from clustcontrol.render.dhcp import common_values, reservations
from clustcontrol.render.firmware import UEFI_X64_ARCHES, arch_hex
from clustcontrol.render.view import ClusterView, HostView

KEA_CONF = "/etc/kea/kea-dhcp4.conf"
KEA_GROUP = "_kea"  # the group of the user Debian's kea-dhcp4-server runs as


class Reservation(NamedTuple):
    """A host reservation's values as JSON strings.

    Names, MACs and addresses are validated to letters, digits, '-', ':' and '.', so json.dumps
    writes them just as the template's tojson filter would, at a fraction of its cost per value."""

    mac: str
    ip: str
    name: str
    file: str | None  # the boot file the node is forced to (Node.boot); None: by class

    @classmethod
    def of(cls, view: ClusterView, host: HostView) -> list[Reservation]:
        """One reservation per MAC of the host: the MAC, the host's address and name and its
        forced boot file (ClusterView.forced_boot_file) if any, each JSON-encoded (quoted).
        Two NICs of one node share its address ("ip-reservations-unique": false in the
        template)."""
        ip, name = json.dumps(host.ip), json.dumps(host.name)
        forced = view.forced_boot_file(host)
        file = json.dumps(forced) if forced is not None else None
        return [cls(json.dumps(mac), ip, name, file) for mac in host.macs]


def uefi_test(arches: tuple[int, ...] = UEFI_X64_ARCHES) -> str:
    """The client class expression that picks x86-64 UEFI clients: the first architecture in
    option 93 (a list of 16-bit values, RFC 4578 section 2.1) is one of `arches` (Kea ARM,
    "Using Expressions in Classification": option[code].hex, substring)."""
    return " or ".join(f"substring(option[93].hex,0,2) == {arch_hex(a)}" for a in arches)


def render_kea(ctx: RenderContext) -> Iterator[Output]:
    """/etc/kea/kea-dhcp4.conf, root:_kea 0640 (0644 where there is no _kea group): one subnet4
    with reservations by hw-address and leases matched by it alone ("match-client-id": false:
    the PXE firmware and Linux on one NIC present different client identifiers, and Kea would
    refuse the second its reserved address), on the master's cluster interface
    (Cluster.master_interface) or on every interface ("*"). x86-64 UEFI clients fall in the
    class uefi-x64 (uefi_test), whose boot-file-name (the shim) replaces the subnet's
    pxelinux.0; a node's forced boot file (Node.boot) is its reservation's boot-file-name.
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
            reservations=[r for host in reservations(view) for r in Reservation.of(view, host)],
            uefi_test=uefi_test(),
            **common_values(view),
        ),
    )
