"""NFS: the exports of the standard roots and of each image's secrets, and the bind mount of the
control directory into the roots."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from posixpath import join as pjoin

from clustcontrol.render.base import Output, RenderContext, render_template
from clustcontrol.render.view import ClusterView

EXPORTS = "/etc/exports.d/clustcontrol.exports"
GANESHA_CONF = "/etc/ganesha/ganesha.conf"
NFSD_CONF = "/etc/nfs.conf.d/clustcontrol.conf"
FSTAB = "/etc/fstab"
# subtree_check on every kernel export (exports(5)): none of them is the root of a file system
# of its own as a rule (the generation roots and the secrets are subdirectories of
# cluster.state_dir, a working tree one of the master's file system), and without the check
# the kernel takes a file handle made for one export for any inode of the same file system:
# a client allowed on the export swaps in inode 2, generation 0 (an ext4 file system's root)
# and LOOKUPs its way to every file there, the secrets and the master's own included. With
# subtree_check the server accepts a handle only for a file under the export's root (the
# kernel's nfsd_acceptable, fs/nfsd/nfsfh.c). Mounts below an export that crossmnt reaches
# (the control directory's bind mount) inherit the export's options, subtree_check with them
# (nfs-utils support/export/cache.c, dump_to_cache). The update node's read-write export
# carries it too, in spite of exports(5)'s caveat: a file renamed into another directory while
# a client holds it open becomes a stale handle for that client. A package upgrade renames
# within one directory (dpkg's .dpkg-new files), which keeps the handle; without the check,
# root on the update address writes anywhere on the file system that holds the working tree.
EXPORT_OPTIONS = "sync,subtree_check,no_root_squash,crossmnt"
NFS_PORT = 2049  # RFC 7530 section 3.1 (NFSv4), the port NFSv3 servers use too
RPCBIND_PORT = 111  # RFC 1833
# The MOUNT protocol (NFSv3's mountd) has no fixed port: rpc.mountd (rpc.mountd(8), --port) and
# ganesha (MNT_Port 0 by default, ganesha-core-config(8)) take one that rpcbind hands out. Both
# are pinned to 20048, IANA's "mountd", so that the firewall (render/firewall.py) can name it.
MOUNTD_PORT = 20048
# An image's secrets (image/secrets.py): read-only, from a privileged source port only (secure,
# exports(5): root on the client), root not squashed (the files are root's), nothing below, no
# handle outside the directory (subtree_check, see EXPORT_OPTIONS).
SECRETS_OPTIONS = "ro,secure,sync,subtree_check,no_root_squash"
# ganesha: addresses per CLIENT block (one long Clients list is valid too; blocks keep the lines
# short at tens of thousands of nodes).
CLIENTS_PER_BLOCK = 64


def control_mount_point(image_root: str, control_dir: str) -> str:
    """Where the master's control directory appears inside a standard root."""
    return pjoin(image_root, control_dir.lstrip("/"))


def _update_export(view: ClusterView) -> list[tuple[str, str]]:
    """(working tree, client) of the one read-write export: the update image's working tree to
    the update address, only while an update node is set (update_node.node); else none."""
    if view.update_host is None:
        return []
    return [(view.update_image.root, str(view.update_ip))]


def _secrets_exports(view: ClusterView) -> list[tuple[str, list[str], str]]:
    """(secrets directory, its clients, the image's name) of each image that has nodes: the
    addresses of its nodes alone, sorted (Inventory.secrets_root, Inventory.node_addresses). An
    image without nodes gets no export: an export line without clients would be open to every
    host."""
    exports = []
    for image in view.images:
        clients = [str(ip) for ip in view.inv.node_addresses(image.name)]
        if clients:
            exports.append((view.inv.secrets_root(image.name), clients, image.name))
    return exports


@dataclass(frozen=True)
class ExportedDirectory:
    """A directory the master serves over NFS, for the checks on where it lies: `path` as the
    inventory gives it (absolute), `what` it is and to whom it goes, in words (for messages),
    e.g. "image default's generation roots, read-only to 192.168.0.0/24"."""

    path: str
    what: str


def exported_directories(view: ClusterView) -> list[ExportedDirectory]:
    """Every directory the NFS exports serve, as both renderers write them: the control
    directory (bind-mounted into each export: ganesha exports each mount point, the kernel's
    crossmnt reaches it), each image's generation roots, the secrets directory of each image
    that has nodes and, while an update node is set, the update image's working tree."""
    network = str(view.network)
    found = [
        ExportedDirectory(
            view.cluster.control_dir, "the control directory, read-only inside every export"
        )
    ]
    found += [
        ExportedDirectory(
            view.inv.generation_roots(image.name),
            f"image {image.name}'s generation roots, read-only to {network}",
        )
        for image in view.images
    ]
    found += [
        ExportedDirectory(
            path,
            f"image {name}'s secrets, read-only to its nodes' addresses",
        )
        for path, _, name in _secrets_exports(view)
    ]
    found += [
        ExportedDirectory(
            root,
            f"image {view.update_image.name}'s working tree, read-write to {client}",
        )
        for root, client in _update_export(view)
    ]
    return found


def render_exports(ctx: RenderContext) -> Iterator[Output]:
    """/etc/exports.d/clustcontrol.exports (exports(5)): each image's generation roots
    (Inventory.generation_roots: what nodes sync from) read-only to the cluster subnet and,
    only while an update node is set, the update image's working tree read-write to the update
    address alone (the update node's NFS root). Both use EXPORT_OPTIONS; crossmnt makes the
    bind-mounted control directory visible. Each image's secrets go read-only to the addresses
    of its nodes alone, from a privileged port (SECRETS_OPTIONS), one client a line (a trailing
    backslash continues an exports line)."""
    view = ctx.view
    exports: list[dict[str, str | None]] = [
        {"root": view.inv.generation_roots(image.name), "rw_client": None, "ro": str(view.network)}
        for image in view.images
    ]
    exports += [
        {"root": root, "rw_client": client, "ro": None} for root, client in _update_export(view)
    ]
    yield Output(
        path=EXPORTS,
        service="nfs-kernel",
        content=render_template(
            "nfs/clustcontrol.exports.j2",
            exports=exports,
            options=EXPORT_OPTIONS,
            update_image=view.update_image.name if view.update_host else None,
            secrets=[(path, clients) for path, clients, _ in _secrets_exports(view)],
            secrets_options=SECRETS_OPTIONS,
        ),
    )


def _bind_addr(view: ClusterView) -> str | None:
    """ganesha's Bind_addr for the master's address (ClusterView.listen_ip), None when no
    cluster interface is set: the IPv4-mapped IPv6 form ::ffff:A.B.C.D (RFC 4291 section
    2.5.5.2). Wherever the kernel has IPv6, ganesha listens on one IPv6 socket, which also takes
    IPv4, bound to the IPv6 form of Bind_addr (nfs-ganesha src/MainNFSD/
    nfs_rpc_dispatcher_thread.c, Bind_sockets_V6). Seen with Debian 12's ganesha 4.3
    (tests/daemons/test_listen.py): while some interface has an IPv6 address (a link-local one
    suffices, as every interface has by default) both forms bind A.B.C.D alone; with none, a
    plain IPv4 Bind_addr binds every address, while the mapped form is refused (ganesha's
    resolver finds no address for it) and ganesha does not start: it fails closed."""
    return None if view.listen_ip is None else f"::ffff:{view.listen_ip}"


def render_ganesha(ctx: RenderContext) -> Iterator[Output]:
    """nfs-ganesha exports: each image's generation roots read-only to the cluster subnet, only
    while an update node is set the update image's working tree read-write to the update
    address alone, and the control directory bind-mounted into each of them (ganesha does not
    cross into a mount below an export, so each gets an export of its own). Each image's
    secrets read-only to the addresses of its nodes alone. Every export takes requests from a
    privileged source port only (PrivilegedPort, ganesha-export-config(8); the kernel server's
    `secure` default), so an unprivileged process on a client can claim no uid (AUTH_SYS) of
    its choosing. With the master's cluster interface set, ganesha listens on the master's
    address alone (NFS_CORE_PARAM Bind_addr, ganesha-core-config(8); see _bind_addr for its
    form). Its MOUNT service listens on MOUNTD_PORT (MNT_Port)."""
    view = ctx.view
    control_dir = view.cluster.control_dir
    served: list[tuple[str, str | None, str | None]] = [
        (view.inv.generation_roots(image.name), None, str(view.network)) for image in view.images
    ]
    served += [(root, client, None) for root, client in _update_export(view)]
    exports = []
    for number, (path, rw_client, ro_clients) in enumerate(served, start=1):
        exports.append(
            {"id": number, "path": path, "rw_client": rw_client, "ro_clients": ro_clients}
        )
        exports.append(
            {
                "id": 1000 + number,
                "path": control_mount_point(path, control_dir),
                "rw_client": None,
                "ro_clients": ro_clients or rw_client,
            }
        )
    yield Output(
        path=GANESHA_CONF,
        service="nfs-ganesha",
        content=render_template(
            "nfs/ganesha.conf.j2",
            exports=exports,
            secrets=[
                {
                    "id": 2000 + number,
                    "path": path,
                    "clients": [
                        ", ".join(clients[i : i + CLIENTS_PER_BLOCK])
                        for i in range(0, len(clients), CLIENTS_PER_BLOCK)
                    ],
                }
                for number, (path, clients, _) in enumerate(_secrets_exports(view), start=1)
            ],
            bind_addr=_bind_addr(view),
            mountd_port=MOUNTD_PORT,
        ),
    )


def render_nfsd(ctx: RenderContext) -> Iterator[Output]:
    """/etc/nfs.conf.d/clustcontrol.conf (nfs.conf(5), read after /etc/nfs.conf): [mountd]
    port= MOUNTD_PORT, so rpc.mountd does not take a random port and the firewall
    (render/firewall.py) covers it (rpc.mountd(8), --port); and, when the master's cluster
    interface is set, [nfsd] host= the master's address, so the kernel NFS server accepts
    requests there alone (rpc.nfsd(8), --host). Both are read when nfs-server starts."""
    yield Output(
        path=NFSD_CONF,
        service="nfsd",
        content=render_template(
            "nfs/nfs.conf.j2", host=ctx.view.listen_ip, mountd_port=MOUNTD_PORT
        ),
    )


def render_bind_mounts(ctx: RenderContext) -> Iterator[Output]:
    """A managed block in /etc/fstab (fstab(5)): the control directory bind-mounted read-only
    into each image's generation roots and working tree, at control_mount_point."""
    view = ctx.view
    control_dir = view.cluster.control_dir
    mounts = [
        {"source": control_dir, "target": control_mount_point(root, control_dir)}
        for image in view.images
        for root in (view.inv.generation_roots(image.name), image.root)
    ]
    yield Output(
        path=FSTAB,
        service="bind-mount",
        block=True,
        content=render_template("nfs/fstab.block.j2", mounts=mounts),
    )
