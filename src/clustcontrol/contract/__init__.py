"""The master<->node contract, declared once: every parameter the node engine reads.

`PARAMS` is the one table (in the spirit of mkosi's `SETTINGS`). Each row names a shell variable,
its type, its default, who sets it and what it does. Everything else is generated from it:

    the control files            render/control.py writes the cluster, image, layout and node
                                 rows into /etc/clustcontrol/{default,images/*,layouts/*,nodes/*}
    node/engine/contract.sh      the engine's defaults (`cc_defaults`), the kernel command line
                                 parser (`cc_parse_cmdline`), partition naming and the exclusions
    node/initramfs-tools/conf.d  the settings an administrator may change, with their defaults
    README.md                    the table of kernel switches and settings

More facts live here for both sides: the default control directory, the partition naming
rule (`partition_device`), the paths a node never takes from the standard (`EXCLUSIONS`), the
secrets, which no served tree holds (`SECRETS`), and the files a node writes itself
(`NODE_FILES`, shown by `image show`; tests/test_contract.py runs the engine's nodefiles.sh
and checks that it writes those and no others).

`python -m clustcontrol.contract` rewrites the generated files (contract/generate.py);
tests/test_contract.py fails when one of them is stale, and runs the real shell to prove that the
node reads every key the master writes and reads no control key the master cannot write.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from clustcontrol.inventory.model import DiskLayout, Inventory
    from clustcontrol.render.view import HostView

Source = Literal["cluster", "image", "layout", "node", "kernel", "conf.d", "engine"]
Type = Literal[
    "name", "path", "paths", "uint", "ip", "host", "iface", "device", "enum", "bool", "mac", "text"
]

#: Where the master keeps the control directory and where it appears inside every standard root
#: (bind-mounted read-only). `cluster.control_dir` changes it; nodes learn the new path from the
#: `clustcontrol.control=` kernel switch.
CONTROL_DIR = "/etc/clustcontrol"
#: Where the engine's modules live in the standard root and in the initramfs (no leading slash).
ENGINE_DIR = "usr/share/clustcontrol/engine"
#: The initramfs-tools conf.d file (in the standard root; /conf/conf.d/clustcontrol in the initrd),
#: and the site's own settings beside it, which clustcontrol never writes.
CONFD_FILE = "etc/initramfs-tools/conf.d/clustcontrol"
CONFD_LOCAL = "etc/initramfs-tools/conf.d/clustcontrol-local"
#: Where the master keeps each image's generations (the default of cluster.state_dir):
#:
#:     STATE_DIR/images/                         0700: only root on the master enters it
#:     STATE_DIR/images/NAME/                    the image's state (image/generation.py), 0700
#:         lock                                  held by `image commit`
#:         generations/SEQ-HASH.manifest.gz      each generation's manifest (master only, 0600)
#:         roots/                                served to nodes: NFS export, rsync module NAME
#:             current                           SEQ-HASH of the generation nodes sync to
#:             SEQ-HASH/                         that generation's tree, never changed, without
#:                                               its secrets (SECRETS_LIST names them)
#:             CONTROL_DIR                       the control directory, bind-mounted read-only
#:         secrets/                              0700; NFS export (ro, secure) to the image's
#:                                               nodes' addresses alone, nothing else serves it
#:             SEQ-HASH.tar                      that generation's secrets (SECRETS_SUFFIX)
STATE_DIR = "/var/lib/clustcontrol"
#: The file in an image's served directory (generation_roots) naming the current generation.
CURRENT_FILE = "current"
#: The generation id of a standard, written by `clustcontrol image commit` into each generation's
#: tree, copied by nodes.
GENERATION_FILE = "etc/clustcontrol-generation"
#: The deltas from earlier generations: DELTAS_DIR/FROM, each starting with
#: "# DELTA_FORMAT FROM TO" (see image/deltas.py).
DELTAS_DIR = "etc/clustcontrol-deltas"
DELTA_FORMAT = "clustcontrol-delta 1"
#: rsync batch files (rsync(1) BATCH MODE) beside a delta, for nodes exactly at FROM: the delta's
#: work done once on the master (`--only-write-batch` against FROM's tree), replayed by each node
#: (`--read-batch`): DELTAS_DIR/FROM.batch, with FROM.list (the paths, as the node lists them)
#: and FROM.sums (sha256 of each regular file, checked on the node after the replay). Both
#: sides run rsync with BATCH_OPTIONS.
#: --modify-window=-1: times compare to the nanosecond (rsync's default is whole seconds).
BATCH_OPTIONS = (
    "-aHAX --sparse --modify-window=-1 --numeric-ids --relative --ignore-times --force --compress"
)
#: The generation's files that have extended attributes (file capabilities, POSIX ACLs, trusted.*
#: and security.*), attributes included: a GNU tar archive (pax, --xattrs --acls) written by
#: `image commit` into each tree. NFSv3 carries no extended attributes (NFSv4.2 only user.*,
#: RFC 8276): a node that copied over NFS extracts it onto its root.
XATTRS_FILE = "etc/clustcontrol-xattrs.tar"
#: The secret paths of a generation (see SECRETS), in each generation's tree: "# SECRETS_FORMAT
#: GENERATION", one path per line (relative, sorted), "# end". Their files are not in the tree
#: (nor in its deltas, batches or attribute archive): the node protects these paths from its
#: sync's deletions and installs them from the generation's secrets archive, the file
#: SEQ-HASH + SECRETS_SUFFIX of the image's secrets export (a GNU tar archive, pax: owners,
#: modes, times, extended attributes and ACLs, with the directories they are in).
#: The generation's dense files: regular files fully allocated in the working tree (no holes:
#: written, or preallocated like a swap file made with fallocate(1)) that hold an aligned block
#: of zero bytes. rsync --sparse and GNU tar --sparse turn such a block into a hole on the node;
#: a swap file with holes fails swapon(8), a preallocated file loses its preallocation. Written
#: by `image commit` into each tree: "# DENSE_FORMAT GENERATION", then "SIZE PATH" lines (SIZE:
#: the largest of 1024, 2048 and 4096 such that the file has an all-zero SIZE-aligned block of
#: SIZE bytes, the last one cut at the end of the file; PATH relative, sorted), "# end". A node
#: allocates (fallocate) each listed file its copy wrote, unless its root's block size is
#: larger than SIZE (no hole there).
DENSE_LIST = "etc/clustcontrol-dense"
DENSE_FORMAT = "clustcontrol-dense 1"
SECRETS_LIST = "etc/clustcontrol-secrets"
SECRETS_FORMAT = "clustcontrol-secrets 1"
SECRETS_SUFFIX = ".tar"
#: The version of this contract. The master writes it into the control files (CC_CONTRACT); an
#: engine built from another version warns that its initramfs needs rebuilding. Version 1 had
#: no CC_CONTRACT; version 2 derives the root partition from CC_PARTITIONS; version 3 serves
#: immutable generation trees (CC_IMAGE_ROOT names the generation roots, not the working tree);
#: version 4 keeps the secrets out of the served trees (CC_SECRETS_ROOT, SECRETS_LIST): an
#: earlier engine would delete them on the node.
CONTRACT_VERSION = 4
#: Characters of a path the master accepts (inventory/types.py) and the node's switch parser.
PATH_CHARACTERS = "A-Za-z0-9._+@-"
#: Words the master puts on every sync label's kernel command line besides the clustcontrol
#: switches marked `rendered` (render/pxe.py; BOOTIF comes from IPAPPEND 2).
RENDERED_WORDS = ("root", "ip", "initrd", "BOOTIF", "boot", "nfsroot")
#: Control files: which file of the control directory holds the rows of each source.
CONTROL_FILES: dict[Source, str] = {
    "cluster": "default",
    "image": "images/IMAGE",
    "layout": "layouts/LAYOUT",
    "node": "nodes/NODE",
}


@dataclass(frozen=True)
class Param:
    """One row of the contract.

    `key` is the shell variable (CC_*). `source` says who sets it: a control file (cluster,
    image, layout, node: `value` computes it from the inventory), a kernel switch (`switch`, e.g.
    clustcontrol.server), a setting of the conf.d file (conf.d) or the engine itself (engine:
    derived paths and test hooks, not documented as settings). `default` is the shell default
    (may refer to variables defaulted before it); None when the master always writes the key.
    `choices` bounds an enum. `rendered`: the master puts this kernel switch into every PXE
    label itself, so kernel_args must not set it again. `legacy`: written only for initramfs
    images built by an earlier version (the current engine does not read it)."""

    key: str
    type: Type
    source: Source
    doc: str
    default: str | None = None
    switch: str | None = None
    choices: tuple[str, ...] = ()
    value: Callable[..., object] | None = None
    rendered: bool = False
    legacy: bool = False


def _cluster(get: Callable[[Inventory], object]) -> Callable[..., object]:
    return get


def _image(get: Callable[[Inventory, str], object]) -> Callable[..., object]:
    return get


def _layout(get: Callable[[str, DiskLayout], object]) -> Callable[..., object]:
    return get


def _node(get: Callable[[Inventory, HostView], object]) -> Callable[..., object]:
    return get


#: The fields of a CC_PARTITIONS word, in order, joined by ':' (contract.sh splits them into
#: CC_PART_NUMBER, CC_PART_USE ...): persistent is 1 or 0, mount is / for the root, empty for
#: swap.
PARTITION_FIELDS = ("number", "use", "fs", "mount", "persistent")


def _partition_words(layout: DiskLayout) -> str:
    words = []
    for p in sorted(layout.partitions, key=lambda p: p.number):
        fields = {
            "number": p.number,
            "use": p.use,
            "fs": p.filesystem,
            "mount": p.mount or ("/" if p.use == "root" else ""),
            "persistent": int(p.persistent),
        }
        words.append(":".join(str(fields[f]) for f in PARTITION_FIELDS))
    return " ".join(words)


PARAMS: tuple[Param, ...] = (
    # --- the control directory: default (cluster-wide) ---------------------------------------
    Param("CC_CONTRACT", "uint", "cluster",
          "the contract version of the control files; another than the engine's is warned about",
          value=_cluster(lambda inv: CONTRACT_VERSION)),
    Param("CC_DOMAIN", "name", "cluster", "DNS domain; the node's FQDN in /etc/hosts",
          value=_cluster(lambda inv: inv.cluster.domain)),
    Param("CC_MASTER_NAME", "host", "cluster", "the master's host name, for /etc/hosts",
          value=_cluster(lambda inv: inv.cluster.master.name)),
    Param("CC_MASTER_IP", "ip", "cluster", "the master: server of the sync and of /etc/hosts",
          value=_cluster(lambda inv: inv.cluster.master.ip)),
    Param("CC_DEFAULT_IMAGE", "name", "cluster", "image of a node that has none of its own",
          default="default", value=_cluster(lambda inv: inv.default_image_name)),
    Param("CC_CONTROL_DIR", "path", "cluster",
          "the control directory inside the standard: the exclusions name it",
          default=CONTROL_DIR, value=_cluster(lambda inv: inv.cluster.control_dir)),
    Param("CC_RSYNC_PORT", "uint", "cluster", "TCP port of the master's rsync daemon",
          default="873", value=_cluster(lambda inv: inv.cluster.rsync_port)),
    Param("CC_SYNC_RETRIES", "uint", "cluster", "retries of each step that needs the master",
          default="5", value=_cluster(lambda inv: inv.cluster.sync_retries)),
    # --- images/IMAGE ---------------------------------------------------------------------------
    Param("CC_IMAGE", "name", "image", "the image's name",
          value=_image(lambda inv, name: name)),
    Param("CC_IMAGE_ROOT", "path", "image",
          "the image's generation roots on the master (NFS): its current file and trees",
          value=_image(lambda inv, name: inv.generation_roots(name))),
    Param("CC_IMAGE_TRANSPORT", "enum", "image", "the image's transport", choices=("nfs", "rsync"),
          value=_image(lambda inv, name: inv.transport_of(name))),
    Param("CC_RSYNC_MODULE", "name", "image", "the rsync daemon module serving the image",
          value=_image(lambda inv, name: name)),
    Param("CC_SECRETS_ROOT", "path", "image",
          "the image's secrets on the master (NFS, read-only, to its nodes' addresses from a "
          "privileged port): one archive per generation",
          value=_image(lambda inv, name: inv.secrets_root(name))),
    Param("CC_PERSISTENT", "paths", "image",
          "paths kept on the node: seeded from the standard once, never overwritten",
          value=_image(lambda inv, name: " ".join(inv.images[name].persistent))),
    Param("CC_DISK_LAYOUT", "name", "image", "the image's disk layout",
          value=_image(lambda inv, name: inv.images[name].disk_layout)),
    Param("CC_BOOT_INTERFACE", "iface", "image", "set to `inet manual` in /etc/network/interfaces",
          value=_image(lambda inv, name: inv.images[name].boot_interface)),
    Param("CC_VERIFY_EVERY", "uint", "image",
          "compare the whole tree, every file's content included, every N-th boot (0: never)",
          default="10", value=_image(lambda inv, name: inv.images[name].verify_every)),
    # --- layouts/LAYOUT -------------------------------------------------------------------------
    Param("CC_DISK_DEVICE", "device", "layout", "the disk the layout partitions",
          value=_layout(lambda name, layout: layout.device)),
    Param("CC_ROOT_PARTITION", "uint", "layout", "the root partition's number", legacy=True,
          value=_layout(lambda name, layout: layout.root.number)),
    Param("CC_ROOT_DEVICE", "device", "layout", "the root partition's device", legacy=True,
          value=_layout(lambda name, layout: partition_device(layout.device,
                                                              layout.root.number))),
    Param("CC_ROOT_FS", "name", "layout", "the root file system", legacy=True,
          value=_layout(lambda name, layout: layout.root.filesystem)),
    Param("CC_PARTITIONS", "text", "layout",
          "one number:use:fs:mount:persistent word per partition (one of them the root)",
          value=_layout(lambda name, layout: _partition_words(layout))),
    # --- nodes/NODE -----------------------------------------------------------------------------
    Param("CC_HOSTNAME", "host", "node", "/etc/hostname",
          value=_node(lambda inv, host: host.name)),
    Param("CC_FQDN", "name", "node", "the node's name in /etc/hosts",
          value=_node(lambda inv, host: f"{host.name}.{inv.cluster.domain}")),
    Param("CC_IP", "ip", "node", "the node's address: finds the node by IP, /etc/hosts",
          value=_node(lambda inv, host: host.ip)),
    Param("CC_IMAGE", "name", "node", "the node's image",
          value=_node(lambda inv, host: host.image)),
    Param("CC_DISK_LAYOUT", "name", "node", "the node's disk layout",
          value=_node(lambda inv, host: host.layout)),
    # --- kernel switches (rendered into the PXE labels, or typed at a boot prompt) -------------
    Param("CC_ARG_SERVER", "ip", "kernel", "the master", switch="clustcontrol.server",
          rendered=True),
    Param("CC_ARG_IMAGE", "name", "kernel", "the image to sync", switch="clustcontrol.image",
          rendered=True),
    Param("CC_ARG_TRANSPORT", "enum", "kernel", "the transport", switch="clustcontrol.transport",
          choices=("nfs", "rsync"), rendered=True),
    Param("CC_ARG_IMAGEROOT", "path", "kernel", "the image's NFS path on the master",
          switch="clustcontrol.imageroot", rendered=True),
    Param("CC_ARG_CONTROL", "path", "kernel",
          "the control directory inside the standard (rendered when not the default)",
          default=CONTROL_DIR, switch="clustcontrol.control", rendered=True),
    Param("CC_ARG_RSYNCPORT", "uint", "kernel", "the rsync daemon's port (when not 873)",
          switch="clustcontrol.rsyncport", rendered=True),
    Param("CC_ARG_SYNC", "enum", "kernel",
          "full: compare every file's content; skip: boot the local copy as it is",
          default="normal", switch="clustcontrol.sync", choices=("normal", "skip", "full")),
    Param("CC_ARG_REPARTITION", "bool", "kernel",
          "yes: partition and format the disk even when its layout matches (DATA IS LOST)",
          default="no", switch="clustcontrol.repartition"),
    Param("CC_ARG_RETRIES", "uint", "kernel", "overrides the cluster's sync_retries",
          switch="clustcontrol.retries"),
    Param("CC_ARG_VERIFY", "uint", "kernel", "overrides the image's verify_every",
          switch="clustcontrol.verify"),
    Param("CC_ARG_BOOTIF", "mac", "kernel", "the MAC that PXE-booted (pxelinux IPAPPEND 2)",
          switch="BOOTIF"),
    Param("CC_ARG_ROOT", "device", "kernel", "the root device, for a fallback without the master",
          switch="root"),
    # --- settings (initramfs-tools conf.d) ------------------------------------------------------
    Param("CC_ENGINE_DIR", "path", "conf.d", "the engine's modules in the initramfs",
          default=f"/{ENGINE_DIR}"),
    Param("CC_RUN_DIR", "path", "conf.d", "scratch space in the initramfs",
          default="/run/clustcontrol"),
    Param("CC_BAKED_CONTROL", "path", "conf.d",
          "the control directory baked into the initramfs (fallback for the server, NFS path, "
          "rsync port)", default=CONTROL_DIR),
    Param("CC_STATE_DIR", "path", "conf.d", "sync marker and record, on the node's root",
          default="/var/lib/clustcontrol-node"),
    Param("CC_LOG_DIR", "path", "conf.d", "the saved boot-sync logs, on the node's root",
          default="/var/log/clustcontrol"),
    Param("CC_RETRY_BASE", "uint", "conf.d",
          "seconds of the first retry delay; each retry doubles it, plus jitter", default="2"),
    Param("CC_RETRY_MAX", "uint", "conf.d", "cap of one retry delay, seconds", default="60"),
    Param("CC_WARN_PAUSE", "uint", "conf.d",
          "seconds a loud warning (lost partitions, an old copy) stays on screen", default="10"),
    Param("CC_DISK_WAIT", "uint", "conf.d", "seconds to wait for the disk to appear",
          default="30"),
    Param("CC_NFS_OPTS", "text", "conf.d",
          "NFS mount options of the standard (ro and nolock are always added)",
          default="vers=3,tcp"),
    Param("CC_NFS_TIMEOUT", "uint", "conf.d", "seconds one NFS mount attempt may take",
          default="30"),
    Param("CC_FIRST_COPY", "enum", "conf.d",
          "how a blank root is filled over NFS", default="tar",
          choices=("tar", "rsync")),
    Param("CC_DELTA_SYNC", "enum", "conf.d",
          "a node at an earlier committed generation syncs only the master's delta",
          default="yes", choices=("yes", "no")),
    Param("CC_DELTA_BATCH", "enum", "conf.d",
          "a delta is replayed from the master's rsync batch when one fits (nothing goes up, the "
          "master computes nothing per node; a little more comes down)",
          default="yes", choices=("yes", "no")),
    Param("CC_DELTA_BLOCK_SIZE", "uint", "conf.d",
          "rsync block size of a delta sync (0: rsync's own, the least traffic both ways)",
          default="0"),
    Param("CC_RSYNC", "path", "conf.d", "the rsync program", default="rsync"),
    Param("CC_RSYNC_EXTRA", "text", "conf.d", "extra rsync options (word-split)", default=""),
    Param("CC_RSYNC_FLAGS", "text", "conf.d",
          "replaces the -aHAXx rsync flags (empty: what this rsync supports)", default=""),
    Param("CC_TAR", "text", "conf.d", "GNU tar (empty: /usr/bin/tar or /bin/tar)", default=""),
    # --- the engine's own (derived paths, test hooks) -------------------------------------------
    Param("CC_TRANSPORT", "enum", "engine", "the transport in use", default="nfs",
          choices=("nfs", "rsync")),
    Param("CC_CMDLINE_FILE", "path", "engine", "the kernel command line", default="/proc/cmdline"),
    Param("CC_CONTROL", "path", "engine", "the fetched control directory",
          default="${CC_RUN_DIR}/control"),
    Param("CC_TARGET", "path", "engine", "where the local root is mounted for the sync",
          default="${CC_RUN_DIR}/target"),
    Param("CC_SOURCE_MNT", "path", "engine", "where the NFS standard is mounted",
          default="${CC_RUN_DIR}/source"),
    Param("CC_SECRETS_MNT", "path", "engine", "where the image's secrets export is mounted",
          default="${CC_RUN_DIR}/secrets"),
    Param("CC_LOG", "path", "engine", "this boot's log", default="${CC_RUN_DIR}/boot-sync.log"),
    Param("CC_DISK_OVERRIDE", "device", "engine", "this disk instead of the layout's",
          default=""),
    Param("CC_NFS_MOUNT", "text", "engine", "a command replacing the NFS mount (tests)",
          default=""),
    Param("CC_UUID_SOURCE", "path", "engine", "random UUIDs for machine-id",
          default="/proc/sys/kernel/random/uuid"),
    Param("CC_NET_CONF_DIR", "path", "engine", "ipconfig's net-*.conf files", default="/run"),
    Param("CC_NODE_HOSTNAME", "host", "engine", "identity (empty: from DHCP)", default=""),
    Param("CC_NODE_MAC", "mac", "engine", "identity (empty: from BOOTIF or the interface)",
          default=""),
    Param("CC_NODE_IP", "ip", "engine", "identity (empty: from DHCP)", default=""),
    Param("CC_NOW", "uint", "engine", "a fixed 'now', epoch seconds (tests)", default=""),
    Param("CC_SYNC_MODE", "enum", "engine", "overrides clustcontrol.sync (tests)", default=""),
)  # fmt: skip


def params(*sources: Source) -> tuple[Param, ...]:
    """The rows of the given sources, in table order.

    Args:
        sources: one or more of cluster, image, layout, node, kernel, conf.d, engine.
    Returns:
        the matching `Param` rows; the table's order is the control files' line order."""
    return tuple(p for p in PARAMS if p.source in sources)


def rendered_words() -> frozenset[str]:
    """What kernel_args must not set: the `name` of each `name=value` word the master renders
    on every sync label itself (clustcontrol.server, ..., root, ip, initrd, BOOTIF, ...)."""
    return frozenset(p.switch for p in params("kernel") if p.rendered and p.switch) | frozenset(
        RENDERED_WORDS
    )


def switch(key: str) -> str:
    """The kernel command line word of a kernel row, e.g. CC_ARG_SERVER -> clustcontrol.server.

    Raises:
        KeyError: no kernel switch sets `key`."""
    for p in params("kernel"):
        if p.key == key and p.switch:
            return p.switch
    raise KeyError(key)


def control_values(source: Source, *args: object) -> list[tuple[str, object]]:
    """The (key, value) pairs of one control file.

    Args:
        source: cluster, image, layout or node.
        args: what that source's getters take: (inventory) for cluster, (inventory, image name)
            for image, (layout name, DiskLayout) for layout, (inventory, HostView) for node.
    Returns:
        [(CC_KEY, value)] in table order, values not yet shell-quoted."""
    return [(p.key, p.value(*args)) for p in params(source) if p.value is not None]


# --- Partition naming ----------------------------------------------------------------------------
#: The kernel's and udev's partition names, first match wins (fnmatch patterns, which are shell
#: `case` patterns too): /dev/disk/by-id/X -> X-part2 (udev's 60-persistent-storage.rules),
#: /dev/nvme0n1 -> /dev/nvme0n1p2 and /dev/mmcblk0 -> /dev/mmcblk0p2 (the kernel adds "p" after
#: a name ending in a digit, block/partitions/core.c), /dev/sda -> /dev/sda2.
PARTITION_NAMING: tuple[tuple[str, str], ...] = (
    ("/dev/disk/by-*/*", "-part"),
    ("*[0-9]", "p"),
    ("*", ""),
)


def images_state(state_dir: str) -> str:
    """STATE_DIR/images: where every image's state directory is (absolute paths, str); 0700,
    only root on the master enters it (image/commit.py, private_images_dir)."""
    return posixpath.join(state_dir, "images")


def image_state(state_dir: str, image: str) -> str:
    """STATE_DIR/images/IMAGE: the state directory of one image (absolute paths, str)."""
    return posixpath.join(images_state(state_dir), image)


def generation_roots(state_dir: str, image: str) -> str:
    """STATE_DIR/images/IMAGE/roots: what nodes read of an image (absolute path, str): the file
    CURRENT_FILE and one tree per generation (see STATE_DIR)."""
    return posixpath.join(image_state(state_dir, image), "roots")


def secrets_store(state_dir: str, image: str) -> str:
    """STATE_DIR/images/IMAGE/secrets: the secrets archives of an image's generations (absolute
    path, str); exported over NFS to the image's nodes alone (see STATE_DIR)."""
    return posixpath.join(image_state(state_dir, image), "secrets")


def partition_device(device: str, number: int) -> str:
    """The device of partition `number` on `device` (see `PARTITION_NAMING`).

    Args:
        device: a disk, e.g. /dev/sda, /dev/nvme0n1, /dev/disk/by-id/ata-X.
        number: the partition number, 1-based.
    Returns:
        e.g. /dev/sda2, /dev/nvme0n1p2, /dev/disk/by-id/ata-X-part2."""
    for pattern, separator in PARTITION_NAMING:
        if fnmatchcase(device, pattern):
            return f"{device}{separator}{number}"
    raise AssertionError("PARTITION_NAMING ends with a catch-all")


# --- Exclusions ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Exclusion:
    """A path a node never takes from the standard, or that is not part of a generation.

    `path` is relative to the root, may hold `*` (within one name) and may name a variable of
    the contract (`${CC_CONTROL_DIR}`: the node expands it; the master passes its own values).
    `contents`: the directory itself is synced, its contents are not (pseudo file systems).
    `sync`: the node's sync leaves it alone (neither copied nor deleted).
    `manifest`: not part of the standard's content (generation manifests and deltas)."""

    path: str
    why: str
    contents: bool = False
    sync: bool = True
    manifest: bool = False


EXCLUSIONS: tuple[Exclusion, ...] = (
    *(
        Exclusion(p, "pseudo or scratch file system", contents=True, manifest=True)
        for p in ("proc", "sys", "dev", "run", "tmp", "mnt", "media")
    ),
    Exclusion("lost+found", "made by mkfs on each root", manifest=True),
    Exclusion("${CC_CONTROL_DIR}", "the master's control directory, bind-mounted", manifest=True),
    Exclusion(DELTAS_DIR, "the generation deltas", manifest=True),
    Exclusion(XATTRS_FILE, "the generation's extended attributes, for NFS", manifest=True),
    Exclusion(SECRETS_LIST, "the generation's secret paths, delivered apart", manifest=True),
    Exclusion(DENSE_LIST, "the generation's files that must stay fully allocated", manifest=True),
    Exclusion(GENERATION_FILE, "the generation id: nodes copy it", sync=False, manifest=True),
    Exclusion("${CC_STATE_DIR}", "the node's sync marker and record"),
    Exclusion("${CC_LOG_DIR}", "the node's boot-sync logs"),
    Exclusion("etc/machine-id", "the node's identity, made once"),
    Exclusion("var/lib/dbus/machine-id", "the node's identity for D-Bus: a link to it"),
    Exclusion("var/lib/systemd/random-seed", "the node's own random seed"),
    Exclusion("var/lib/systemd/credential.secret", "systemd's per-host secret"),
    Exclusion("etc/ssh/ssh_host_*", "the node's own SSH host keys"),
    Exclusion("etc/hostname", "written by the node at every boot"),
    Exclusion("etc/fstab", "written by the node at every boot"),
    Exclusion("boot/extlinux", "the node's own boot loader (image prepare --bootable-disk); "
              "extlinux makes its ldlinux.sys immutable"),
)  # fmt: skip


# --- Node files ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class NodeFile:
    """A file of the node's own root that the node writes after every sync, whatever the
    standard holds there (node/engine/nodefiles.sh, cc_write_node_files).

    `path` is relative to the root and may hold `*` (within one name); `what` says what the node
    writes there. Whether the sync takes the standard's copy first follows from EXCLUSIONS
    (taken_from_standard)."""

    path: str
    what: str

    @property
    def taken_from_standard(self) -> bool:
        """Whether the sync copies the standard's file first (the node then edits it): no
        exclusion of the node's sync names this path."""
        return not any(e.sync and e.path == self.path for e in EXCLUSIONS)


NODE_FILES: tuple[NodeFile, ...] = (
    NodeFile("etc/hostname", "the node's name"),
    NodeFile("etc/hosts", "the node's and the master's lines (tagged '# clustcontrol-node') "
             "instead of 127.0.1.1"),
    NodeFile("etc/machine-id", "made once (random), then kept; a copy in the state directory"),
    NodeFile("var/lib/dbus/machine-id", "a link to /etc/machine-id"),
    NodeFile("etc/network/interfaces", "the boot interface 'inet manual' (the kernel set it up)"),
    NodeFile("etc/fstab", "the standard's lines but root, swap and data, then the local disk "
             "by UUID (# BEGIN/END clustcontrol)"),
    NodeFile("etc/ssh/ssh_host_*", "kept; the booted system makes them when missing "
             "(ssh-keygen -A)"),
)  # fmt: skip


def exclusions(
    values: dict[str, str], *, sync: bool = False, manifest: bool = False
) -> Iterator[tuple[str, bool]]:
    """The exclusions as (relative path, contents only) with variables expanded.

    Args:
        values: the variables a path may name, e.g. {"CC_CONTROL_DIR": "/etc/clustcontrol"}.
        sync, manifest: which exclusions: those of the node's sync, or of the manifests.
    Raises:
        KeyError: a path names a variable missing from `values`."""
    for e in EXCLUSIONS:
        if (sync and e.sync) or (manifest and e.manifest):
            yield expand(e.path, values), e.contents


def expand(path: str, values: dict[str, str]) -> str:
    """An exclusion's path with the contract variables it names replaced by `values` (absolute
    paths given there lose their slashes at both ends: the result is relative to the root).

    Raises KeyError when the path names a variable missing from `values`."""
    for key, value in values.items():
        path = path.replace("${" + key + "}", value.strip("/"))
    if "${" in path:
        raise KeyError(path)
    return path


# --- Secrets -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Secret:
    """A path no served tree holds: its file reaches a node only through the image's secrets
    export (NFS, read-only, `secure`, to the image's nodes' addresses). `path` is relative to
    the root and may hold `*` within one name; a directory it matches makes everything below it
    secret (the directories themselves stay served)."""

    path: str
    why: str


SECRETS: tuple[Secret, ...] = (
    Secret("etc/shadow", "password hashes"),
    Secret("etc/shadow-", "password hashes (shadow's backup)"),
    Secret("etc/gshadow", "group password hashes"),
    Secret("etc/gshadow-", "group password hashes (gshadow's backup)"),
    Secret("etc/ssh/ssh_host_*_key", "SSH host private keys (a node makes its own)"),
    Secret("etc/munge/munge.key", "MUNGE's key: it forges Slurm job credentials"),
    Secret("etc/security/opasswd", "old password hashes (pam_pwhistory, pam_unix remember=)"),
    Secret("var/cache/debconf/passwords.dat", "debconf's answers to password questions, plain"),
    Secret("var/backups/shadow.bak", "password hashes (the daily copy of cron.daily/passwd)"),
    Secret("var/backups/gshadow.bak", "group password hashes (the daily copy)"),
    Secret("var/lib/systemd/credential.secret", "systemd's host key for credentials"),
    Secret("var/lib/systemd/random-seed", "the kernel random pool's saved seed"),
    Secret("root/.ssh/id_*", "root's SSH keys: shared, they give root on every node"),
    Secret("etc/krb5.keytab", "the host's Kerberos keys"),
    Secret("etc/ssl/private", "TLS private keys (ssl-cert's snakeoil key among them)"),
    Secret("etc/sssd/sssd.conf", "SSSD's settings, with the LDAP bind password"),
    Secret("var/lib/sss/db", "SSSD's cache, with password hashes"),
    Secret("var/lib/sss/secrets", "SSSD's stored secrets"),
    Secret("etc/ldap.secret", "libpam-ldap's root bind password"),
    Secret("etc/nslcd.conf", "nslcd's settings, with the LDAP bind password"),
    Secret("var/lib/samba/private", "Samba's machine account and password databases"),
    Secret("etc/exim4/passwd.client", "exim's passwords for its smarthost"),
    Secret("etc/postfix/sasl_passwd*", "postfix's passwords for its relay"),
    Secret("etc/ceph/*.keyring", "Ceph's keys"),
    Secret("etc/wireguard", "WireGuard's private keys"),
)
#: The patterns alone, in order.
SECRET_PATTERNS = tuple(s.path for s in SECRETS)
