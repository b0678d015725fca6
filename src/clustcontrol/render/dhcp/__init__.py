"""DHCP renderers: ISC dhcpd, Kea DHCPv4 and dnsmasq from the same view of the inventory."""

from __future__ import annotations

from clustcontrol.render.view import ClusterView, HostView


def reservations(view: ClusterView) -> list[HostView]:
    """Every fixed address DHCP hands out: the update node (if any) first, then the nodes."""
    update = [view.update_host] if view.update_host is not None else []
    return update + view.dhcp_hosts


def common_values(view: ClusterView) -> dict[str, object]:
    """The template values every DHCP server needs: domain name (option 15), DNS server
    (option 6, the master), subnet with netmask (option 1) and broadcast address (option 28),
    gateway as router (option 3, None: none), and the PXE next-server (the master) and boot
    file name (BOOTP siaddr and file fields). Options as numbered in RFC 2132, fields as in
    RFC 2131 section 2."""
    return {
        "domain": view.domain,
        "network": view.network,
        "netmask": view.netmask,
        "broadcast": view.broadcast,
        "gateway": view.cluster.gateway,
        "master_ip": view.master_ip,
        "master_name": view.master_name,
        "boot_file": view.boot_file,
    }
