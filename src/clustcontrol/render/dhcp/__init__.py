"""DHCP renderers: ISC dhcpd, Kea DHCPv4 and dnsmasq from the same view of the inventory."""

from __future__ import annotations

from clustcontrol.render.firmware import UEFI_X64_ARCHES
from clustcontrol.render.view import ClusterView, HostView


def reservations(view: ClusterView) -> list[HostView]:
    """Every fixed address DHCP hands out: the update node (if any) first, then the nodes."""
    update = [view.update_host] if view.update_host is not None else []
    return update + view.dhcp_hosts


def common_values(view: ClusterView) -> dict[str, object]:
    """The template values every DHCP server needs: domain name (option 15), DNS server
    (option 6, the master), subnet with netmask (option 1) and broadcast address (option 28),
    gateway as router (option 3, None: none), and the PXE next-server (the master) and boot
    file names (BOOTP siaddr and file fields): `boot_file` (pxelinux.0) for BIOS and every
    other client, `uefi_boot_file` (the signed shim) for the x86-64 UEFI architectures of
    option 93 (RFC 4578 section 2.1), given as `uefi_arches` (numbers; each server writes
    them its own way); `forced_boot_files` maps a node's
    `boot` ("bios", "uefi") to the file its own entry names. Options as numbered in RFC 2132,
    fields as in RFC 2131 section 2."""
    return {
        "domain": view.domain,
        "network": view.network,
        "netmask": view.netmask,
        "broadcast": view.broadcast,
        "gateway": view.cluster.gateway,
        "master_ip": view.master_ip,
        "master_name": view.master_name,
        "boot_file": view.boot_file,
        "uefi_boot_file": view.uefi_boot_file,
        "uefi_arches": UEFI_X64_ARCHES,
        "forced_boot_files": {"bios": view.boot_file, "uefi": view.uefi_boot_file},
    }
