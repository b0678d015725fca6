"""Cross-field checks of an inventory: every problem is collected, each named by its path."""

from __future__ import annotations

import posixpath
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping
from ipaddress import IPv4Address
from typing import TypeVar

from clustcontrol.contract import rendered_words
from clustcontrol.inventory.model import UPDATE_NODE_LABEL, Inventory, Node

# Where a control directory must not be: pseudo and scratch file systems, the master's own
# state of the generations.
_NOT_UNDER = ("/proc", "/sys", "/dev", "/run", "/tmp")

#: The master's directories no image root may be or hold. The update node writes its image's
#: working tree as root (NFS, no_root_squash): a working tree holding one of these gives it
#: root on the master. The FHS top directories and the trees that programs running as root on
#: the master read or run (configuration, packages' state, spools, NFS server state).
MASTER_DIRS: tuple[str, ...] = (
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/etc/ssh",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/usr/local",
    "/var",
    "/var/backups",
    "/var/cache",
    "/var/lib",
    "/var/lib/nfs",
    "/var/log",
    "/var/mail",
    "/var/spool",
    "/var/tmp",
)
#: Of them, those no image root may lie inside either: the master's programs, configuration,
#: kernel file systems and NFS and spool state (/etc/cron.d or /usr/local/bin as a working tree
#: is root on the master too).
MASTER_TREES: tuple[str, ...] = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    # The state of programs that run as root and act on what it holds: package managers
    # (dpkg's maintainer scripts in /var/lib/dpkg/info), systemd, polkit, sudo, the DHCP and
    # DNS servers apply configures, NFS.
    "/var/lib/apt",
    "/var/lib/bind",
    "/var/lib/dhcp",
    "/var/lib/dpkg",
    "/var/lib/kea",
    "/var/lib/misc",
    "/var/lib/nfs",
    "/var/lib/polkit-1",
    "/var/lib/sudo",
    "/var/lib/systemd",
    "/var/lib/ucf",
    "/var/spool",
)

Key = TypeVar("Key", bound=Hashable)


def _duplicates(pairs: Iterable[tuple[Key, str]]) -> list[tuple[Key, list[str]]]:
    """The keys that occur more than once, each with where it occurs, in first-seen order."""
    pairs = list(pairs)
    if len({key for key, _where in pairs}) == len(pairs):
        return []  # the usual case, at the cost of one set
    seen: dict[Key, list[str]] = defaultdict(list)
    for key, where in pairs:
        seen[key].append(where)
    return [(key, wheres) for key, wheres in seen.items() if len(wheres) > 1]


def check_inventory(inv: Inventory) -> list[str]:
    """Return one line per problem; an empty list means the inventory is consistent."""
    problems: list[str] = []
    cluster = inv.cluster
    net = cluster.network
    master_ip = cluster.master.ip

    def address_problem(where: str, ip: IPv4Address) -> str | None:
        if ip not in net:
            return f"{where}: {str(ip)!r} is outside the cluster network {net}"
        if net.prefixlen < 31 and ip in (net.network_address, net.broadcast_address):
            return f"{where}: {str(ip)!r} is the network or broadcast address of {net}"
        return None

    if net.prefixlen > 30:
        problems.append(f"cluster.network: {str(net)!r} is too small for a cluster (at most /30)")
    if net.prefixlen < MIN_PREFIX:
        problems.append(
            f"cluster.network: {str(net)!r} is too large for a cluster network (at least "
            f"/{MIN_PREFIX}: its reverse zones and DHCP range span the whole network)"
        )
    if (p := address_problem("cluster.master.ip", master_ip)) is not None:
        problems.append(p)
    if cluster.gateway is not None and (p := address_problem("cluster.gateway", cluster.gateway)):
        problems.append(p)
    interface, older = cluster.master.interface, cluster.dhcp_interface
    if interface is not None and older is not None and interface != older:
        problems.append(
            f"cluster.dhcp_interface: {older!r} differs from cluster.master.interface "
            f"{interface!r} (dhcp_interface is its older name: keep one)"
        )

    update_ip = inv.update_ip
    if (p := address_problem("update_node.ip", update_ip)) is not None:
        problems.append(p)
    if update_ip == master_ip:
        problems.append(f"update_node.ip: {str(update_ip)!r} is the master's address")
    if cluster.gateway is not None and cluster.gateway in (master_ip, update_ip):
        what = "the master's address" if cluster.gateway == master_ip else "the update address"
        problems.append(f"cluster.gateway: {str(cluster.gateway)!r} is {what}")

    if inv.default_image is not None and inv.default_image not in inv.images:
        problems.append(f"default_image: {inv.default_image!r} is not a defined image")
    if inv.update_node.image is not None and inv.update_node.image not in inv.images:
        problems.append(f"update_node.image: {inv.update_node.image!r} is not a defined image")
    if inv.update_node.node is not None and inv.node(inv.update_node.node) is None:
        problems.append(f"update_node.node: {inv.update_node.node!r} is not a defined node")

    for name, image in inv.images.items():
        if image.disk_layout not in inv.disk_layouts:
            problems.append(
                f"images.{name}.disk_layout: {image.disk_layout!r} is not a defined disk layout"
            )
    for root, wheres in _duplicates(
        (img.root, f"images.{n}.root") for n, img in inv.images.items()
    ):
        problems.append(f"{wheres[1]}: {root!r} is also the root of {wheres[0].split('.')[1]!r}")
    for name, image in inv.images.items():
        problems += [
            f"images.{name}.root: {image.root!r} lies inside the root of image {other!r}"
            for other, o in inv.images.items()
            if other != name and image.root != o.root and _inside(image.root, o.root)
        ]
        problems += _persistent_problems(f"images.{name}.persistent", image.persistent)

    problems += _image_root_problems(inv)
    problems += _name_length_problems(inv)
    problems += _control_dir_problems(inv)
    problems += _state_dir_problems(inv)
    problems += _kernel_args_problems(inv)

    reserved = {cluster.master.name: "the master", UPDATE_NODE_LABEL: "the update node"}
    taken_ips = {master_ip: "the master's address", update_ip: "the update node's address"}
    if cluster.gateway is not None:
        taken_ips.setdefault(cluster.gateway, "the gateway's address")

    for node in inv.nodes:
        where = f"nodes.{node.name}"
        if node.name in reserved:
            problems.append(f"{where}.name: {node.name!r} is reserved for {reserved[node.name]}")
        if (p := address_problem(f"{where}.ip", node.ip)) is not None:
            problems.append(p)
        elif node.ip in taken_ips:
            problems.append(f"{where}.ip: {str(node.ip)!r} is {taken_ips[node.ip]}")
        if node.image is not None and node.image not in inv.images:
            problems.append(f"{where}.image: {node.image!r} is not a defined image")
        if node.disk_layout is not None and node.disk_layout not in inv.disk_layouts:
            problems.append(
                f"{where}.disk_layout: {node.disk_layout!r} is not a defined disk layout"
            )

    # Each node's values of a field: its name, every MAC of its boot NICs, its address.
    keys: tuple[tuple[str, Callable[[Node], Iterable[Hashable]]], ...] = (
        ("name", lambda n: (n.name,)),
        ("mac", lambda n: n.mac),
        ("ip", lambda n: (n.ip,)),
    )
    for field, key in keys:
        pairs = ((value, n.name) for n in inv.nodes for value in key(n))
        for value, wheres in _duplicates(pairs):
            first, *others = wheres
            shown = repr(str(value))
            for other in others:
                if field == "name":
                    problems.append(f"nodes.{other}.name: {shown} is defined more than once")
                elif other == first:
                    problems.append(f"nodes.{other}.{field}: {shown} is listed twice")
                else:
                    problems.append(
                        f"nodes.{other}.{field}: {shown} duplicates the {field} of node {first!r}"
                    )
    if not problems:  # the labels need defined images and layouts
        # The command line is the PXELINUX renderer's; imported here, where it is asked for
        # (render imports the inventory).
        from clustcontrol.render.pxe import command_line_problems

        problems += command_line_problems(inv)
    return problems


#: The largest cluster network, as a prefix length.
MIN_PREFIX = 8


def _inside(path: str, directory: str) -> bool:
    """path lies below directory (both absolute, normalized)."""
    return path.startswith(directory.rstrip("/") + "/")


def _persistent_problems(where: str, paths: list[str]) -> list[str]:
    """Persistent paths must be below the root, each named once, none inside another."""
    problems = []
    for i, path in enumerate(paths):
        if path == "/":
            problems.append(f"{where}[{i}]: '/' is the whole root, not a path kept in it")
        elif path in paths[:i]:
            problems.append(f"{where}[{i}]: {path!r} is listed already")
        elif outer := next((p for p in paths if p != "/" and _inside(path, p)), None):
            problems.append(f"{where}[{i}]: {path!r} lies inside persistent path {outer!r}")
    return problems


def _overlaps(a: str, b: str) -> bool:
    """True when path a is b, or one lies inside the other (both absolute, no trailing '/')."""
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def places(inv: Inventory) -> dict[str, str]:
    """The master's directories that must lie apart, by field, as written in the inventory
    (normalized): cluster.control_dir, cluster.state_dir, cluster.tftp_root and each
    images.NAME.root."""
    found = {
        "cluster.control_dir": inv.cluster.control_dir,
        "cluster.state_dir": inv.cluster.state_dir,
        "cluster.tftp_root": inv.cluster.tftp_root,
    }
    found.update({f"images.{name}.root": img.root for name, img in sorted(inv.images.items())})
    return {field: posixpath.normpath(path) for field, path in found.items()}


def _apart_from(inv: Inventory, field: str) -> list[str]:
    """The places (fields) `field`, cluster.control_dir or cluster.state_dir, must not overlap:
    every image root and the TFTP root; for the control directory also the state directory."""
    others = [f"images.{name}.root" for name in sorted(inv.images)] + ["cluster.tftp_root"]
    return others + (["cluster.state_dir"] if field == "cluster.control_dir" else [])


def _place(field: str, path: str) -> str:
    """A place in a problem: the image's root by its name, the others by what they are and
    `path`."""
    if field.startswith("images."):
        return f"the root of image {field.split('.')[1]!r}"
    return f"{'the TFTP root' if field == 'cluster.tftp_root' else field} {path!r}"


def _apart_problems(inv: Inventory, field: str) -> list[str]:
    written = places(inv)
    return [
        f"{field}: {written[field]!r} overlaps {_place(other, written[other])}"
        for other in _apart_from(inv, field)
        if _overlaps(written[field], written[other])
    ]


def resolved_overlaps(inv: Inventory, resolved: Mapping[str, str], under: str) -> list[str]:
    """The overlaps the inventory's checks refuse among places(inv), found again with each
    place where it leads on a machine: `resolved` maps every field of places(inv) to its path
    with symbolic links followed (under the prefix `under`, named in the problem). One line
    per overlapping pair, naming both paths as written and where they lead."""
    written = places(inv)

    def shown(field: str) -> str:
        if resolved[field] == written[field]:
            return repr(written[field])
        return f"{written[field]!r} (leads to {resolved[field]!r})"

    return [
        f"{field}: {shown(field)} overlaps {_place(other, written[other])}"
        + (f" (leads to {resolved[other]!r})" if resolved[other] != written[other] else "")
        + f", symbolic links followed under {under}"
        for field in ("cluster.control_dir", "cluster.state_dir")
        for other in _apart_from(inv, field)
        if _overlaps(resolved[field], resolved[other])
    ]


def master_dirs() -> dict[str, str]:
    """The master's directories no image root may be or hold (directory -> what it is):
    MASTER_DIRS, and where apply keeps its manifest (the update node could list /etc/passwd
    in it). apply's other files are under /etc and /run, in MASTER_TREES."""
    from clustcontrol.apply import MANIFEST  # imported here: apply imports the inventory

    found = dict.fromkeys(MASTER_DIRS, "a directory of the master's system")
    found[posixpath.dirname(MANIFEST)] = f"where apply keeps its manifest {MANIFEST}"
    return found


#: Inside /var/lib, where the master's programs keep their state (cloud-init runs
#: /var/lib/cloud/scripts/per-boot/* as root, dkms sources its dkms.conf, dpkg runs
#: info/*.postinst), an image root may only lie in these (or in a directory of clustcontrol's
#: own: /var/lib/NAME with "clustcontrol" in NAME; the state directory is checked apart).
VAR_LIB_IMAGE_TREES: tuple[str, ...] = ("/var/lib/machines",)  # systemd's: machinectl(1)


def _in_var_lib_of_another(root: str) -> bool:
    """True when `root` (normalized) lies inside /var/lib but in none of VAR_LIB_IMAGE_TREES
    nor a /var/lib/NAME of clustcontrol's own (NAME containing "clustcontrol")."""
    if not _inside(root, "/var/lib"):
        return False
    own = "clustcontrol" in root.split("/")[3]
    return not own and not any(_inside(root, t) for t in VAR_LIB_IMAGE_TREES)


def _master_place_problems(field: str, written: str, how: str) -> list[str]:
    """`field` (its value `written`) must not be or hold a directory of the master
    (master_dirs), nor lie inside one of MASTER_TREES; `how` says why, for the problem line."""
    from clustcontrol.apply import MANIFEST  # imported here: apply imports the inventory

    dirs = master_dirs()
    path = posixpath.normpath(written)
    held = [d for d in dirs if d == path or _inside(d, path)]
    if held:
        first = min(held, key=len)
        verb = "is" if first == path else "holds"
        return [f"{field}: {written!r} {verb} {first} ({dirs[first]}): {how}"]
    if _inside(path, apply_dir := posixpath.dirname(MANIFEST)):
        return [
            f"{field}: {written!r} lies inside {apply_dir}, where apply keeps its manifest and "
            f"the distribution's files it puts back: {how}"
        ]
    if tree := next((t for t in MASTER_TREES if _inside(path, t)), None):
        return [
            f"{field}: {written!r} lies inside {tree}, a directory of the master's system: {how}"
        ]
    return []


def _image_root_problems(inv: Inventory) -> list[str]:
    """An image root (the working tree the update node writes as root) must not be or hold a
    directory of the master (master_dirs), nor lie inside one of MASTER_TREES, nor inside
    /var/lib but out of VAR_LIB_IMAGE_TREES. The TFTP root (served to the whole cluster network
    without authentication) must not be or hold a master directory nor lie inside one of
    MASTER_TREES either. Compared as written; the control and state directories and the TFTP
    root are checked apart (_apart_problems), with links followed by `image commit` too."""
    how = "the update node writes it as root"
    problems = []
    for name, image in sorted(inv.images.items()):
        field = f"images.{name}.root"
        found = _master_place_problems(field, image.root, how)
        if not found and _in_var_lib_of_another(posixpath.normpath(image.root)):
            found = [
                f"{field}: {image.root!r} lies inside /var/lib, where the master's programs keep "
                f"their state: {how} (use /srv/..., {', '.join(VAR_LIB_IMAGE_TREES)}/... or a "
                "/var/lib directory named for clustcontrol)"
            ]
        problems += found
    problems += _master_place_problems(
        "cluster.tftp_root",
        inv.cluster.tftp_root,
        "in.tftpd serves it to the whole cluster network without authentication",
    )
    return problems


def _control_dir_problems(inv: Inventory) -> list[str]:
    """cluster.control_dir is bind-mounted read-only over the same path in every standard root
    and excluded from every node's sync: it must be a directory of clustcontrol's own, not one
    it would hide (/etc, /etc/default ...), overlap (an image root, the TFTP tree) or lose."""
    where = "cluster.control_dir"
    path = inv.cluster.control_dir
    name = path.rsplit("/", 1)[-1]
    problems = []
    if path.count("/") < 2 or "clustcontrol" not in name:
        problems.append(
            f"{where}: {path!r} must be a directory of its own, named for clustcontrol (its last "
            "component contains 'clustcontrol', e.g. /etc/clustcontrol, /srv/clustcontrol): it "
            "is mounted over that path in every standard root"
        )
    for other in _NOT_UNDER:
        if _overlaps(path, other):
            problems.append(f"{where}: {path!r} overlaps {other}")
    return problems + _apart_problems(inv, where)


def _state_dir_problems(inv: Inventory) -> list[str]:
    """cluster.state_dir holds the generation trees `image commit` copies each working tree
    into: it must not overlap a working tree (a commit would copy its own output), the TFTP
    tree or a kernel file system (the control directory's check covers that pair). The paths
    are compared as written; `image commit` compares them again with links followed
    (resolved_overlaps)."""
    where = "cluster.state_dir"
    path = inv.cluster.state_dir
    problems = []
    if path.count("/") < 2:
        problems.append(f"{where}: {path!r} must be a directory of its own, not a top directory")
    for other in _NOT_UNDER[:3]:  # /proc, /sys, /dev: /tmp and /run are the admin's choice
        if _overlaps(path, other):
            problems.append(f"{where}: {path!r} overlaps {other}")
    return problems + _apart_problems(inv, where)


#: The longest domain name in text, without the root's dot: 255 octets on the wire, less the
#: length octets (RFC 1035 section 2.3.4); named-checkzone says "ran out of space" beyond.
MAX_DOMAIN_NAME = 253
#: The zone's SOA mailbox label (templates/dns/zone.j2): hostmaster.DOMAIN.
SOA_MAILBOX = "hostmaster"


def _name_length_problems(inv: Inventory) -> list[str]:
    """Every name the zone holds (the master, the update node, each node, the SOA mailbox) is
    LABEL.DOMAIN; the longest must fit in MAX_DOMAIN_NAME. One line at most: the domain is
    what leaves no room."""
    labels = [SOA_MAILBOX, inv.cluster.master.name, UPDATE_NODE_LABEL, *(n.name for n in inv.nodes)]
    longest = max(labels, key=len)
    if len(longest) + 1 + len(inv.cluster.domain) <= MAX_DOMAIN_NAME:
        return []
    return [
        f"cluster.domain: {len(inv.cluster.domain)} characters leave no room for "
        f"{longest}.DOMAIN in a DNS name of {MAX_DOMAIN_NAME} (RFC 1035 section 2.3.4)"
    ]


def _kernel_args_problems(inv: Inventory) -> list[str]:
    """kernel_args must not set again what the master renders on every sync label (the sync's
    own clustcontrol switches, root=, ip=, initrd=, BOOTIF= ...): the kernel and the node would
    read one value, the master another."""
    taken = rendered_words()
    owners = [(f"images.{n}", img.kernel_args) for n, img in sorted(inv.images.items())]
    owners += [(f"nodes.{node.name}", node.kernel_args) for node in inv.nodes if node.kernel_args]
    return [
        f"{owner}.kernel_args: {arg!r} sets {arg.split('=', 1)[0]}=, which clustcontrol "
        "renders itself"
        for owner, args in owners
        for arg in args
        if arg.split("=", 1)[0] in taken
    ]
