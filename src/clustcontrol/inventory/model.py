"""The inventory: one cluster, its standard roots (images), disk layouts, nodes and update node.

Field-level rules live in the types (types.py); rules that relate fields to each other
(duplicates, addresses inside the subnet, references to images and layouts) live in checks.py so
every problem is collected and reported at once."""

from __future__ import annotations

from functools import cached_property
from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from clustcontrol.contract import (
    CONTROL_DIR,
    SECRET_PATTERNS,
    STATE_DIR,
    generation_roots,
    secrets_store,
)
from clustcontrol.inventory.types import (
    AbsPath,
    DevicePath,
    DomainName,
    FileName,
    HostLabel,
    IfName,
    KernelArg,
    MacAddresses,
    Name,
    NodeAddress,
    SecretPattern,
    SerialConsole,
    SfdiskScript,
)

DhcpServer = Literal["isc", "kea", "dnsmasq"]
NfsServer = Literal["kernel", "ganesha"]
Transport = Literal["nfs", "rsync"]
FileSystem = Literal["ext4", "ext3", "ext2", "swap"]
Boot = Literal["auto", "bios", "uefi"]

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
    """`cluster.master`: the machine clustcontrol runs on, which serves DNS, DHCP, TFTP, NFS and
    rsync to the nodes.

    `name` is its host name in the cluster domain (an RFC 1123 label, lower-cased; default
    "master", reserved: no node may use it), `ip` its IPv4 address on the cluster network (a
    cross-field check in checks.py requires it inside cluster.network). `interface` is the
    master's network interface on the cluster network (a Linux interface name), the one that
    holds `ip`: when set, every daemon clustcontrol configures serves the cluster there alone
    (the DHCP server on the interface, TFTP, NFS and rsync on `ip`), and the firewall
    (Cluster.firewall) serves the cluster network on it alone; None: the daemons listen on
    every address (the DHCP server: see Cluster.dhcp_interface). Like every section,
    unknown keys are rejected and the validated model is frozen."""

    name: HostLabel = "master"
    ip: IPv4Address
    interface: IfName | None = None


class Cluster(_Model):
    """`cluster`: the cluster network and the master's services.

    Fields:
        domain: the DNS domain of the nodes (forward zone), lower-cased, no trailing dot.
        network: the cluster subnet in CIDR notation, host bits zero (DHCP subnet, reverse
            zones, NFS and rsync access).
        master: the master (see Master).
        gateway: the default route DHCP hands out; None: no router option.
        dns_forwarders: upstream resolvers for names outside the cluster (default none).
        tftp_root: the TFTP server's root directory; DHCP's boot file name is relative to it.
        boot_dir: the PXELINUX directory inside tftp_root (a plain file name).
        control_dir: the control directory, an absolute path: where the master writes the
            files the nodes read (render/control.py), bind-mounted at the same path inside
            every standard root and every image's generation roots.
        state_dir: the master's state, an absolute path (default /var/lib/clustcontrol): each
            image's manifests and generation trees under STATE_DIR/images/NAME (image/store.py);
            the trees are what nodes sync from (exported read-only, the rsync module).
        dhcp_server: the DHCP server `apply` configures: isc, kea or dnsmasq.
        dhcp_interface: the older name of master.interface, with the same meaning (every
            daemon, not only DHCP, serves the cluster on it alone, and the firewall serves the
            cluster network there alone); when both are set they must agree (checks.py). None
            with master.interface unset: left to each server (Kea and dnsmasq: every interface),
            the firewall takes the cluster network on any interface.
        nfs_server: kernel (exports in /etc/exports.d) or ganesha (NFS-Ganesha).
        ganesha_shared_file_systems: false (default): with nfs_server ganesha, apply refuses
            (exit 2) while a directory the exports serve (the control directory, an image's
            generation roots or secrets, the update image's working tree) is not the root of
            a file system of its own, or shares one with another of them: nfs-ganesha has no
            subtree check, and a file handle forged from an export reaches every file of its
            file system (export_filesystems.py, docs/security.md). true: apply serves them
            anyway, with a WARNING per such directory. A boolean. The kernel server's exports
            carry subtree_check and need neither.
        transport: how nodes reach a standard by default: nfs (the node mounts it read-only
            and copies from it) or rsync (the master's rsync daemon); an image may override it.
        rsync_port: the rsync daemon's TCP port, 1 to 65535 (default 873).
        rsync_max_connections: clients the rsync daemon serves at once, all modules together
            (one lock file, rsyncd.conf(5) "max connections"), 1 to 10000 (default 64).
        serial_console: a kernel console= value such as ttyS0,115200; None: no serial
            console. Every PXELINUX label gets console=VALUE; for ttySN[,SPEED[PARITY[BITS[r]]]]
            (the only form accepted for a ttyS port) PXELINUX itself also uses that port
            (SERIAL N SPEED, default speed 115200).
        sync_retries: how often the node retries each step that needs the master, 0 to 100
            (default 5; kernel switch clustcontrol.retries overrides it).
        firewall: true: apply installs the master firewall, an nftables table of its own
            (`inet clustcontrol`) that drops traffic to the boot services' ports (DNS, DHCP,
            TFTP, rpcbind, NFS, mountd, the rsync daemon) unless it comes from cluster.network
            (through master.interface when that is set), and leaves the rest of the host's policy
            alone (render/firewall.py); false: no table, and apply --reload deletes one an
            earlier apply loaded. A boolean (yes/no, on/off and 1/0 too). Default false, so
            that an inventory written before this setting changes nothing on its master: the
            table would cut off what the master serves on those ports to other networks (its
            own NFS exports, rpcbind for NIS, DNS views); `init` writes true.

    Paths are safe absolute paths, names and kernel words use the character sets of types.py;
    out-of-range numbers, unknown keys and unknown choices are rejected by pydantic. Every
    number is a YAML integer (pydantic StrictInt): true, "3" and 2.0 are refused, not
    converted."""

    domain: DomainName
    network: IPv4Network
    master: Master
    gateway: IPv4Address | None = None
    dns_forwarders: list[IPv4Address] = Field(default_factory=list)
    tftp_root: AbsPath = "/var/lib/tftpboot"
    boot_dir: FileName = "cluster_node"
    control_dir: AbsPath = CONTROL_DIR
    state_dir: AbsPath = STATE_DIR
    dhcp_server: DhcpServer = "isc"
    dhcp_interface: IfName | None = None
    nfs_server: NfsServer = "kernel"
    ganesha_shared_file_systems: bool = False
    transport: Transport = "nfs"
    rsync_port: StrictInt = Field(default=873, ge=1, le=65535)
    rsync_max_connections: StrictInt = Field(default=64, ge=1, le=10000)
    serial_console: SerialConsole | None = None
    sync_retries: StrictInt = Field(default=5, ge=0, le=100)
    firewall: bool = False

    @property
    def master_interface(self) -> str | None:
        """The master's interface on the cluster network: master.interface, else the older
        dhcp_interface; None when neither is set (the daemons listen on every address)."""
        return self.master.interface or self.dhcp_interface


class Partition(_Model):
    """One entry of `disk_layouts.NAME.partitions`: what a partition of the layout's sfdisk
    script is for.

    Fields:
        number: the partition's number on the disk, 1 to 128 (the sfdisk script creates it;
            /dev/sda2, /dev/nvme0n1p2, see contract.partition_device).
        use: root (the node's root, synced to the standard at every boot), swap, or data (a
            file system of the node's own, mounted at `mount`).
        fs: ext4, ext3, ext2 or swap; None: ext4, or swap for a swap partition (see
            filesystem).
        mount: the absolute mount point of a data partition in the node's root (its contents
            are left alone by the sync); ignored for root and swap.
        persistent: its data is meant to survive: the node logs it as kept, and names it in
            its loud warning when a changed layout (or clustcontrol.repartition=yes) makes it
            re-partition and format the disk.

    The after-validator (pydantic model_validator, mode "after", run on the validated fields)
    raises ValueError when fs does not fit use (a swap partition with fs other than swap, or
    fs swap for root or data), a data partition has no mount point or is mounted at "/", or the
    root partition is persistent."""

    number: StrictInt = Field(ge=1, le=128)
    use: Literal["root", "swap", "data"]
    fs: FileSystem | None = None
    mount: AbsPath | None = None
    persistent: bool = False

    @property
    def filesystem(self) -> FileSystem:
        """The file system the node makes on it: swap for a swap partition, else `fs`
        (default ext4)."""
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
        if self.use == "data" and self.mount == "/":
            raise ValueError(
                f"partition {self.number}: a data partition cannot be mounted at '/' "
                "(the root partition is the node's root)"
            )
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
    """One entry of `disk_layouts` (keyed by layout name): how a node's local disk is
    partitioned.

    Fields:
        device: the disk, a path under /dev (default /dev/sda; /dev/disk/by-id/... works).
        sfdisk: the sfdisk input script (sfdisk(8), "INPUT FORMATS") that partitions it;
            printable text, stored ending with a newline. Its syntax is left to sfdisk. The
            default is a dos label with a 2 GiB swap partition, a 16 GiB bootable Linux
            partition and a Linux partition for the rest.
        partitions: what each partition is for (see Partition); default swap 1, root 2, and
            data 3 mounted at /scratch, persistent.

    The after-validator raises ValueError unless exactly one partition is the root and the
    numbers are distinct. That the script creates the partitions listed is not checked: the
    node finds out when it partitions."""

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
        """The root partition (the validator guarantees there is exactly one)."""
        return next(p for p in self.partitions if p.use == "root")


class Image(_Model):
    """One entry of `images` (keyed by image name): a standard root nodes are synced to.

    Fields:
        root: the standard root's absolute path on the master (exported over NFS, served by
            the rsync daemon); no two images may share one (checks.py).
        kernel, initrd: file names in ROOT/boot that `image publish` copies to the TFTP
            tree, or "newest" (default): the highest vmlinuz-VERSION that has an
            initrd.img-VERSION, and that initrd (image/publish.py, select_boot_files).
        kernel_args: extra kernel command line words for this image's nodes.
        disk_layout: the name of its nodes' disk layout (default "default"); a node may name
            its own.
        persistent: absolute paths in the node's root kept on each node: seeded from the
            standard once, never overwritten by the sync.
        secrets: absolute paths, '*' within a name allowed (/etc/ssl/private/*.key), whose
            files no served tree holds, besides the contract's own (contract.SECRETS:
            /etc/shadow, /etc/gshadow and their backups, SSH host private keys,
            /etc/munge/munge.key); a directory a pattern matches makes everything below it
            secret. Nodes get them from the image's secrets export alone (NFS, read-only,
            to the image's nodes' addresses from a privileged port; image/secrets.py).
        boot_interface: the interface the nodes boot from (default eth0), which `image
            prepare` sets to the manual method in the image's /etc/network/interfaces.
        transport: nfs or rsync; None: cluster.transport.
        verify_every: a node whose synced generation matches the committed one skips the
            transfer; every verify_every-th such boot (or delta sync) it runs the full rsync
            comparison anyway, 0 to 10000 (default 10; 0: never forced; kernel switch
            clustcontrol.verify overrides it).
        keep_generations: how many generation trees `image commit` keeps, 2 to 1000 (default
            3); older ones are removed. Nodes sync from the newest; a node still copying a
            removed one (keep_generations commits during its copy) fails that sync and copies
            the whole tree at its next boot."""

    root: AbsPath
    kernel: FileName = NEWEST
    initrd: FileName = NEWEST
    kernel_args: list[KernelArg] = Field(default_factory=list)
    disk_layout: Name = "default"
    persistent: list[AbsPath] = Field(default_factory=list)
    secrets: list[SecretPattern] = Field(default_factory=list)
    boot_interface: IfName = "eth0"
    transport: Transport | None = None
    # A node whose synced generation matches the committed one skips the transfer; every
    # verify_every-th such boot it runs the full rsync comparison anyway (0: never forced).
    verify_every: StrictInt = Field(default=10, ge=0, le=10000)
    keep_generations: StrictInt = Field(default=3, ge=2, le=1000)


class Node(_Model):
    """One entry of `nodes`: a machine that boots from the master.

    Fields:
        name: its host name, an RFC 1123 label, lower-cased (DNS, DHCP, /etc/hostname); not
            the master's name or "updatenode", and unique (checks.py).
        mac: the MAC address of the interface it PXE-boots from, or a list of them (a node
            with two boot NICs: every one gets the node's address), each normalised to lower
            case with ':' separators (52-54-00-12-34-01, 525400123401 and 5254.0012.3401 are
            accepted); a tuple here, the first the primary one; each unique in the cluster.
        ip: its fixed IPv4 address, inside cluster.network and not taken by the master, the
            gateway or the update address; unique.
        image: the name of its standard root; None: the default image.
        disk_layout: the name of its disk layout; None: its image's.
        kernel_args: extra kernel command line words, after its image's (a node with any gets
            a pxelinux.cfg file of its own).
        boot: which network boot program DHCP hands it: "auto" by the architecture its
            firmware sends (DHCP option 93: pxelinux.0 to BIOS, the signed shim to x86-64
            UEFI; render/firmware.py), "bios" pxelinux.0 and "uefi" the shim whatever it
            sends."""

    name: HostLabel
    mac: MacAddresses
    ip: NodeAddress
    image: Name | None = None
    disk_layout: Name | None = None
    kernel_args: list[KernelArg] = Field(default_factory=list)
    boot: Boot = "auto"


class UpdateNode(_Model):
    """`update_node`: the address at which a node boots a standard root read-write over NFS,
    to install software into it.

    Fields:
        ip: the update address; None: the third address from the top of the cluster network
            (default_update_ip: .253 of a /24). It must lie inside the network and not be the
            master's (checks.py).
        image: the standard it boots; None: the default image.
        node: the name of the node that boots as the update node: DHCP gives its MAC the
            update address (and the host name "updatenode") instead of its own; None: no
            node does."""

    ip: IPv4Address | None = None
    image: Name | None = None
    node: HostLabel | None = None


class Inventory(_Model):
    """The whole inventory file (YAML): the top-level keys `cluster`, `default_image`,
    `images`, `disk_layouts`, `nodes` and `update_node`.

    Fields:
        cluster: the network and the master's services (see Cluster).
        default_image: the image of nodes that name none; None: the first image defined.
        images: the standard roots by name, at least one (see Image).
        disk_layouts: the disk layouts by name (see DiskLayout); default one layout named
            "default" with DiskLayout's defaults.
        nodes: the nodes (see Node), in file order.
        update_node: the update node (see UpdateNode); default all unset.

    Validation by pydantic covers each value (types.py, field bounds, the Partition and
    DiskLayout validators) and rejects unknown keys anywhere; the model is frozen. References
    between sections (image and layout names, addresses inside the network, duplicates) are
    checked by checks.check_inventory, which store.parse_inventory runs after the model."""

    cluster: Cluster
    default_image: Name | None = None
    images: dict[Name, Image] = Field(min_length=1)
    disk_layouts: dict[Name, DiskLayout] = Field(default_factory=lambda: {"default": DiskLayout()})
    nodes: list[Node] = Field(default_factory=list)
    update_node: UpdateNode = Field(default_factory=UpdateNode)

    # Derived values, computed once.
    @property
    def default_image_name(self) -> str:
        """The image of nodes that name none: default_image, else the first key of images
        (file order)."""
        return self.default_image or next(iter(self.images))

    @property
    def update_ip(self) -> IPv4Address:
        """The update address: update_node.ip, else default_update_ip of cluster.network."""
        if self.update_node.ip is not None:
            return self.update_node.ip
        return default_update_ip(self.cluster.network)

    @property
    def update_image_name(self) -> str:
        """The image the update node boots read-write: update_node.image, else the default
        image."""
        return self.update_node.image or self.default_image_name

    def image_of(self, node: Node) -> str:
        """The name of `node`'s image: its own, else the default image."""
        return node.image or self.default_image_name

    def layout_of(self, node: Node) -> str:
        """The name of `node`'s disk layout: its own, else its image's.

        Raises KeyError when it has none of its own and its image is not defined (checks.py
        reports such an image)."""
        return node.disk_layout or self.images[self.image_of(node)].disk_layout

    def transport_of(self, image: str) -> Transport:
        """The transport of image `image` (a key of images): its own, else cluster.transport.

        Raises KeyError when there is no such image."""
        return self.images[image].transport or self.cluster.transport

    def generation_roots(self, image: str) -> str:
        """Where image `image` is served from on the master (an absolute path): its generation
        trees and the file naming the current one (contract.generation_roots). Nodes mount it
        over NFS, the rsync module of the image serves it; nothing checks the disk."""
        return generation_roots(self.cluster.state_dir, image)

    def secrets_root(self, image: str) -> str:
        """Where image `image`'s secrets archives are on the master (an absolute path,
        contract.secrets_store): the NFS export its nodes alone may mount."""
        return secrets_store(self.cluster.state_dir, image)

    def secrets_of(self, image: str) -> tuple[str, ...]:
        """The secret patterns of image `image`, relative to the root: the contract's
        (contract.SECRETS), then images.NAME.secrets. Raises KeyError for an unknown image."""
        own = tuple(p.lstrip("/") for p in self.images[image].secrets)
        return (*SECRET_PATTERNS, *own)

    def node_addresses(self, image: str) -> list[IPv4Address]:
        """The addresses of the nodes whose image is `image`, sorted (inventory order may
        differ): the only clients of its secrets export."""
        return sorted(n.ip for n in self.nodes if self.image_of(n) == image)

    @cached_property
    def _nodes_by_name(self) -> dict[str, Node]:
        return {n.name: n for n in self.nodes}

    def node(self, name: str) -> Node | None:
        """The node called `name` (compared lower-cased, as node names are stored), or None.

        The name index is built on the first call; with repeated names the last entry wins
        (checks.py reports repeats)."""
        return self._nodes_by_name.get(name.lower())

    @property
    def update_node_entry(self) -> Node | None:
        """The node named by update_node.node, or None when that is unset or names no node."""
        return self.node(self.update_node.node) if self.update_node.node else None


def default_update_ip(network: IPv4Network) -> IPv4Address:
    """The seed's convention: .253 of a /24, i.e. the third address from the top of the subnet.
    A network of fewer than four addresses has none: its own address stands in (the checks
    refuse such a network, checks.py; 0.0.0.0/32 made this an AddressValueError)."""
    if network.num_addresses < 4:
        return network.network_address
    return network.broadcast_address - 2
