"""The inventory: one cluster, its standard roots (images), disk layouts, nodes and update node.

Field-level rules live in the types (types.py); rules that relate fields to each other
(duplicates, addresses inside the subnet, references to images and layouts) live in checks.py so
every problem is collected and reported at once."""

from __future__ import annotations

from functools import cached_property
from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from clustcontrol.contract import CONTROL_DIR
from clustcontrol.inventory.types import (
    AbsPath,
    DevicePath,
    DomainName,
    FileName,
    HostLabel,
    IfName,
    KernelArg,
    MacAddress,
    Name,
    SfdiskScript,
)

DhcpServer = Literal["isc", "kea", "dnsmasq"]
NfsServer = Literal["kernel", "ganesha"]
Transport = Literal["nfs", "rsync"]
FileSystem = Literal["ext4", "ext3", "ext2", "swap"]

UPDATE_NODE_LABEL = "updatenode"
NEWEST = "newest"

DEFAULT_SFDISK = """\
label: dos
unit: sectors

,2GiB,S
,16GiB,L,*
,,L
"""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Master(_Model):
    name: HostLabel = "master"
    ip: IPv4Address


class Cluster(_Model):
    domain: DomainName
    network: IPv4Network
    master: Master
    gateway: IPv4Address | None = None
    dns_forwarders: list[IPv4Address] = Field(default_factory=list)
    tftp_root: AbsPath = "/var/lib/tftpboot"
    boot_dir: FileName = "cluster_node"
    control_dir: AbsPath = CONTROL_DIR
    dhcp_server: DhcpServer = "isc"
    dhcp_interface: IfName | None = None
    nfs_server: NfsServer = "kernel"
    transport: Transport = "nfs"
    rsync_port: int = Field(default=873, ge=1, le=65535)
    rsync_max_connections: int = Field(default=64, ge=1, le=10000)
    serial_console: KernelArg | None = None
    sync_retries: int = Field(default=5, ge=0, le=100)


class Partition(_Model):
    number: int = Field(ge=1, le=128)
    use: Literal["root", "swap", "data"]
    fs: FileSystem | None = None
    mount: AbsPath | None = None
    persistent: bool = False

    @property
    def filesystem(self) -> FileSystem:
        return "swap" if self.use == "swap" else (self.fs or "ext4")

    @model_validator(mode="after")
    def _consistent(self) -> Partition:
        fits = self.fs in (None, "swap") if self.use == "swap" else self.fs != "swap"
        if not fits:
            raise ValueError(
                f"partition {self.number}: fs {self.fs!r} does not fit use {self.use!r}"
            )
        if self.use == "data" and self.mount is None:
            raise ValueError(f"partition {self.number}: a data partition needs a mount point")
        if self.use == "root" and self.persistent:
            raise ValueError(f"partition {self.number}: the root partition cannot be persistent")
        return self


def _default_partitions() -> list[Partition]:
    return [
        Partition(number=1, use="swap"),
        Partition(number=2, use="root"),
        Partition(number=3, use="data", mount="/scratch", persistent=True),
    ]


class DiskLayout(_Model):
    device: DevicePath = "/dev/sda"
    sfdisk: SfdiskScript = DEFAULT_SFDISK
    partitions: list[Partition] = Field(default_factory=_default_partitions)

    @model_validator(mode="after")
    def _one_root(self) -> DiskLayout:
        roots = [p.number for p in self.partitions if p.use == "root"]
        if len(roots) != 1:
            raise ValueError(f"needs exactly one root partition, has {len(roots)}")
        numbers = [p.number for p in self.partitions]
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"partition numbers repeat: {numbers}")
        return self

    @property
    def root(self) -> Partition:
        return next(p for p in self.partitions if p.use == "root")


class Image(_Model):
    root: AbsPath
    kernel: FileName = NEWEST
    initrd: FileName = NEWEST
    kernel_args: list[KernelArg] = Field(default_factory=list)
    disk_layout: Name = "default"
    persistent: list[AbsPath] = Field(default_factory=list)
    boot_interface: IfName = "eth0"
    transport: Transport | None = None
    # A node whose synced generation matches the committed one skips the transfer; every
    # verify_every-th such boot it runs the full rsync comparison anyway (0: never forced).
    verify_every: int = Field(default=10, ge=0, le=10000)


class Node(_Model):
    name: HostLabel
    mac: MacAddress
    ip: IPv4Address
    image: Name | None = None
    disk_layout: Name | None = None
    kernel_args: list[KernelArg] = Field(default_factory=list)


class UpdateNode(_Model):
    ip: IPv4Address | None = None
    image: Name | None = None
    node: HostLabel | None = None


class Inventory(_Model):
    cluster: Cluster
    default_image: Name | None = None
    images: dict[Name, Image] = Field(min_length=1)
    disk_layouts: dict[Name, DiskLayout] = Field(default_factory=lambda: {"default": DiskLayout()})
    nodes: list[Node] = Field(default_factory=list)
    update_node: UpdateNode = Field(default_factory=UpdateNode)

    # Derived values, computed once.
    @property
    def default_image_name(self) -> str:
        return self.default_image or next(iter(self.images))

    @property
    def update_ip(self) -> IPv4Address:
        if self.update_node.ip is not None:
            return self.update_node.ip
        return default_update_ip(self.cluster.network)

    @property
    def update_image_name(self) -> str:
        return self.update_node.image or self.default_image_name

    def image_of(self, node: Node) -> str:
        return node.image or self.default_image_name

    def layout_of(self, node: Node) -> str:
        return node.disk_layout or self.images[self.image_of(node)].disk_layout

    def transport_of(self, image: str) -> Transport:
        return self.images[image].transport or self.cluster.transport

    @cached_property
    def _nodes_by_name(self) -> dict[str, Node]:
        return {n.name: n for n in self.nodes}

    def node(self, name: str) -> Node | None:
        return self._nodes_by_name.get(name.lower())

    @property
    def update_node_entry(self) -> Node | None:
        return self.node(self.update_node.node) if self.update_node.node else None


def default_update_ip(network: IPv4Network) -> IPv4Address:
    """The seed's convention: .253 of a /24, i.e. the third address from the top of the subnet."""
    return network.broadcast_address - 2
