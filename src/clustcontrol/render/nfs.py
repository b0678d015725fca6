"""NFS: the exports of the standard roots, and the bind mount of the control directory into them."""

from __future__ import annotations

from collections.abc import Iterator
from posixpath import join as pjoin

from clustcontrol.render.base import Output, RenderContext, render_template

EXPORTS = "/etc/exports.d/clustcontrol.exports"
GANESHA_CONF = "/etc/ganesha/ganesha.conf"
NFS_CONF = "/etc/nfs.conf.d/clustcontrol.conf"
FSTAB = "/etc/fstab"
EXPORT_OPTIONS = "sync,no_subtree_check,no_root_squash,crossmnt"
NFS_PORT = 2049  # RFC 7530 section 3.1 (NFSv4), the port NFSv3 servers use too
RPCBIND_PORT = 111  # RFC 1833
# The MOUNT protocol (NFSv3's mountd) has no fixed port: rpc.mountd (rpc.mountd(8), --port) and
# ganesha (MNT_Port 0 by default, ganesha-core-config(8)) take one that rpcbind hands out. Both
# are pinned to 20048, IANA's "mountd", so that the firewall (render/firewall.py) can name it.
MOUNTD_PORT = 20048


def control_mount_point(image_root: str, control_dir: str) -> str:
    """Where the master's control directory appears inside a standard root."""
    return pjoin(image_root, control_dir.lstrip("/"))


def render_exports(ctx: RenderContext) -> Iterator[Output]:
    """/etc/exports.d/clustcontrol.exports (exports(5)): each image's generation roots
    (Inventory.generation_roots: what nodes sync from) read-only to the cluster subnet, and the
    update image's working tree read-write to the update address alone (the update node's NFS
    root). Both use EXPORT_OPTIONS; crossmnt makes the bind-mounted control directory visible."""
    view = ctx.view
    update_image = view.update_image.name
    exports: list[dict[str, str | None]] = [
        {"root": view.inv.generation_roots(image.name), "rw_client": None, "ro": str(view.network)}
        for image in view.images
    ]
    exports.append({"root": view.update_image.root, "rw_client": str(view.update_ip), "ro": None})
    yield Output(
        path=EXPORTS,
        service="nfs-kernel",
        content=render_template(
            "nfs/clustcontrol.exports.j2",
            exports=exports,
            options=EXPORT_OPTIONS,
            update_image=update_image,
        ),
    )


def render_nfs_conf(ctx: RenderContext) -> Iterator[Output]:
    """/etc/nfs.conf.d/clustcontrol.conf (nfs.conf(5): files in /etc/nfs.conf.d override
    /etc/nfs.conf): the kernel server's rpc.mountd on MOUNTD_PORT, not a random port, so the
    firewall (render/firewall.py) covers it. Applied by restarting nfs-mountd."""
    yield Output(
        path=NFS_CONF,
        service="nfs-kernel",
        content=render_template("nfs/nfs.conf.j2", mountd_port=MOUNTD_PORT),
    )


def render_ganesha(ctx: RenderContext) -> Iterator[Output]:
    """nfs-ganesha exports: each image's generation roots read-only to the cluster subnet, the
    update image's working tree read-write to the update address alone, and the control
    directory bind-mounted into each of them (ganesha does not cross into a mount below an
    export, so each gets an export of its own). Its MOUNT service listens on MOUNTD_PORT
    (NFS_CORE_PARAM MNT_Port, ganesha-core-config(8))."""
    view = ctx.view
    control_dir = view.cluster.control_dir
    served: list[tuple[str, str | None, str | None]] = [
        (view.inv.generation_roots(image.name), None, str(view.network)) for image in view.images
    ]
    served.append((view.update_image.root, str(view.update_ip), None))
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
        content=render_template("nfs/ganesha.conf.j2", exports=exports, mountd_port=MOUNTD_PORT),
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
