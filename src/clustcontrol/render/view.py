"""The view model shared by the renderers: sorted, precomputed values, so templates stay dumb."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from ipaddress import IPv4Address, IPv4Network
from posixpath import join as pjoin

from clustcontrol.inventory.model import UPDATE_NODE_LABEL, Boot, Inventory, Node
from clustcontrol.render.firmware import BIOS_BOOT_FILE, SHIM


def hex_ip(ip: IPv4Address) -> str:
    """PXELINUX's per-host config file name: the address as eight upper-case hex digits.

    192.168.0.11 -> "C0A8000B". PXELINUX looks in pxelinux.cfg/ for the client UUID, then
    01-MAC, then this name and ever shorter prefixes of it, then "default" (PXELINUX README,
    /usr/share/doc/pxelinux/README.txt.gz; syslinux wiki "PXELINUX")."""
    return f"{int(ip):08X}"


def reverse_zones(network: IPv4Network) -> list[IPv4Network]:
    """The in-addr.arpa zones covering a network: octet-aligned, at most /24 each.

    A /24 is one zone, a /22 four, a /16 one; a network smaller than a /24 lives in its /24."""
    if network.prefixlen >= 24:
        return [network.supernet(new_prefix=24)]
    boundary = -(-network.prefixlen // 8) * 8
    return list(network.subnets(new_prefix=boundary))


def reverse_zone_name(zone: IPv4Network) -> str:
    """The in-addr.arpa name of an octet-aligned zone (RFC 1035 section 3.5), e.g.
    192.168.0.0/24 -> "0.168.192.in-addr.arpa". Prefix bits beyond a multiple of 8 are
    ignored."""
    octets = str(zone.network_address).split(".")[: zone.prefixlen // 8]
    return ".".join(reversed(octets)) + ".in-addr.arpa"


def reverse_owner(ip: str, zone: IPv4Network) -> str:
    """The PTR owner name of a dotted address in its zone (e.g. '11' in 0.168.192.in-addr.arpa)."""
    octets = ip.split(".")[zone.prefixlen // 8 :]
    return ".".join(reversed(octets))


@dataclass(frozen=True, slots=True)
class HostView:
    """One host as the templates see it: DNS/DHCP name, canonical MACs (the boot NICs, the
    primary one first), address as text and IPv4Address, image and disk layout names, extra
    kernel words, PXELINUX hex name and the boot program its firmware gets (Node.boot:
    "auto" by DHCP option 93, or "bios" / "uefi" forced)."""

    name: str
    macs: tuple[str, ...]
    ip: str  # as written into config files; `address` is the same address for computing
    address: IPv4Address
    image: str
    layout: str
    kernel_args: tuple[str, ...]
    hex_ip: str
    boot: Boot


@dataclass(frozen=True)
class ImageView:
    """One image as the templates see it: `kernel_path` and `initrd_path` are relative to the
    PXELINUX directory (NAME/vmlinuz, NAME/initrd.img), `transport` is "nfs" or "rsync"."""

    name: str
    root: str
    kernel_path: str
    initrd_path: str
    kernel_args: tuple[str, ...]
    transport: str


class ClusterView:
    """Read-only, precomputed values of one inventory for the renderers and templates.

    Lists are computed once per view (cached); addresses are IPv4Address unless named as text.
    """

    def __init__(self, inventory: Inventory) -> None:
        self.inv = inventory
        self.cluster = inventory.cluster

    @property
    def domain(self) -> str:
        """The cluster's DNS domain, lower case, no trailing dot."""
        return self.cluster.domain

    @property
    def network(self) -> IPv4Network:
        """The cluster subnet."""
        return self.cluster.network

    @property
    def master_ip(self) -> IPv4Address:
        """The master's address on the cluster network."""
        return self.cluster.master.ip

    @property
    def interface(self) -> str | None:
        """The master's interface on the cluster network (Cluster.master_interface), where the
        DHCP server listens; None: not set."""
        return self.cluster.master_interface

    @property
    def listen_ip(self) -> IPv4Address | None:
        """The address TFTP, NFS and rsync listen on: the master's, when its cluster interface
        is set (Cluster.master_interface); None: every address."""
        return self.master_ip if self.interface is not None else None

    @property
    def master_name(self) -> str:
        """The master's host name (a label in the cluster domain)."""
        return self.cluster.master.name

    @property
    def update_ip(self) -> IPv4Address:
        """The update node's address: update_node.ip, else the subnet's broadcast address - 2."""
        return self.inv.update_ip

    @property
    def update_label(self) -> str:
        """The update node's host name in DNS and DHCP (UPDATE_NODE_LABEL)."""
        return UPDATE_NODE_LABEL

    @property
    def boot_file(self) -> str:
        """The DHCP filename of BIOS clients, relative to the TFTP root: pxelinux.0."""
        return pjoin(self.cluster.boot_dir, BIOS_BOOT_FILE)

    @property
    def uefi_boot_file(self) -> str:
        """The DHCP filename of x86-64 UEFI clients, relative to the TFTP root: the signed
        shim (render/firmware.py)."""
        return pjoin(self.cluster.boot_dir, SHIM)

    def forced_boot_file(self, host: HostView) -> str | None:
        """The filename a host's own DHCP entry names: pxelinux.0 for boot "bios", the shim
        for "uefi"; None for "auto" (the server picks by option 93)."""
        return {"bios": self.boot_file, "uefi": self.uefi_boot_file}.get(host.boot)

    @property
    def boot_root(self) -> str:
        """Absolute path of the PXELINUX directory in the TFTP tree."""
        return pjoin(self.cluster.tftp_root, self.cluster.boot_dir)

    def _host(self, node: Node, name: str, address: IPv4Address, image: str) -> HostView:
        return HostView(
            name=name,
            macs=node.mac,
            ip=str(address),
            address=address,
            image=image,
            layout=self.inv.layout_of(node),
            kernel_args=tuple(node.kernel_args),
            hex_ip=hex_ip(address),
            boot=node.boot,
        )

    @cached_property
    def hosts(self) -> list[HostView]:
        """Every node with its regular address, sorted by address."""
        image_of = self.inv.image_of
        return sorted(
            (self._host(n, n.name, n.ip, image_of(n)) for n in self.inv.nodes),
            key=lambda h: h.address,
        )

    @cached_property
    def update_host(self) -> HostView | None:
        """The node currently booting as the update node, with the update address."""
        node = self.inv.update_node_entry
        if node is None:
            return None
        return self._host(node, UPDATE_NODE_LABEL, self.update_ip, self.inv.update_image_name)

    @cached_property
    def dhcp_hosts(self) -> list[HostView]:
        """DHCP hosts: the update node's MAC moves from its regular entry to the update address."""
        update = self.update_host
        if update is None:
            return self.hosts
        return [h for h in self.hosts if h.macs != update.macs]

    @cached_property
    def images(self) -> list[ImageView]:
        """Every image, sorted by name."""
        return [
            ImageView(
                name=name,
                root=image.root,
                kernel_path=pjoin(name, "vmlinuz"),
                initrd_path=pjoin(name, "initrd.img"),
                kernel_args=tuple(image.kernel_args),
                transport=self.inv.transport_of(name),
            )
            for name, image in sorted(self.inv.images.items())
        ]

    def image(self, name: str) -> ImageView:
        """The image called name; StopIteration when there is none (inventory checks prevent
        that for the names an inventory refers to)."""
        return next(i for i in self.images if i.name == name)

    @property
    def default_image(self) -> ImageView:
        """The image of nodes that name none (default_image, else the first image defined)."""
        return self.image(self.inv.default_image_name)

    @property
    def update_image(self) -> ImageView:
        """The image the update node boots read-write (update_node.image, else the default)."""
        return self.image(self.inv.update_image_name)

    @property
    def netmask(self) -> IPv4Address:
        """The cluster subnet's netmask (e.g. 255.255.255.0)."""
        return self.network.netmask

    @property
    def broadcast(self) -> IPv4Address:
        """The cluster subnet's broadcast address (its last address)."""
        return self.network.broadcast_address
