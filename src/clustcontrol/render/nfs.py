"""NFS: the exports of the standard roots, and the bind mount of the control directory into them."""

from __future__ import annotations

from collections.abc import Iterator
from posixpath import join as pjoin

from clustcontrol.render.base import Output, RenderContext, render_template

EXPORTS = "/etc/exports.d/clustcontrol.exports"
GANESHA_CONF = "/etc/ganesha/ganesha.conf"
FSTAB = "/etc/fstab"
EXPORT_OPTIONS = "sync,no_subtree_check,no_root_squash,crossmnt"


def control_mount_point(image_root: str, control_dir: str) -> str:
    """Where the master's control directory appears inside a standard root."""
    return pjoin(image_root, control_dir.lstrip("/"))


def render_exports(ctx: RenderContext) -> Iterator[Output]:
    """/etc/exports.d/clustcontrol.exports (exports(5)): each image root read-only to the
    cluster subnet and, for the update image, read-write to the update address (a single host
    takes precedence over a network, whatever the order on the line). Both use EXPORT_OPTIONS;
    crossmnt makes the bind-mounted control directory visible."""
    view = ctx.view
    update_image = view.update_image.name
    exports = [
        {
            "root": image.root,
            "rw_client": str(view.update_ip) if image.name == update_image else None,
        }
        for image in view.images
    ]
    yield Output(
        path=EXPORTS,
        service="nfs-kernel",
        content=render_template(
            "nfs/clustcontrol.exports.j2",
            exports=exports,
            network=view.network,
            options=EXPORT_OPTIONS,
        ),
    )


def render_ganesha(ctx: RenderContext) -> Iterator[Output]:
    """nfs-ganesha exports: each image root, and the control directory bind-mounted into it
    (ganesha does not cross into a mount below an export, so it gets an export of its own)."""
    view = ctx.view
    update_image = view.update_image.name
    control_dir = view.cluster.control_dir
    exports = []
    for number, image in enumerate(view.images, start=1):
        rw_client = str(view.update_ip) if image.name == update_image else None
        exports.append(
            {"id": number, "path": image.root, "rw_client": rw_client, "ro_clients": view.network}
        )
        exports.append(
            {
                "id": 1000 + number,
                "path": control_mount_point(image.root, control_dir),
                "rw_client": None,
                "ro_clients": view.network,
            }
        )
    yield Output(
        path=GANESHA_CONF,
        service="nfs-ganesha",
        content=render_template("nfs/ganesha.conf.j2", exports=exports),
    )


def render_bind_mounts(ctx: RenderContext) -> Iterator[Output]:
    """A managed block in /etc/fstab (fstab(5)): the control directory bind-mounted read-only
    into each image root, at control_mount_point."""
    view = ctx.view
    control_dir = view.cluster.control_dir
    mounts = [
        {"source": control_dir, "target": control_mount_point(image.root, control_dir)}
        for image in view.images
    ]
    yield Output(
        path=FSTAB,
        service="bind-mount",
        block=True,
        content=render_template("nfs/fstab.block.j2", mounts=mounts),
    )
