"""The control directory (/etc/clustcontrol) read by the nodes at boot.

    default              cluster-wide parameters (shell-sourceable KEY='value')
    images/IMAGE         per standard root: its path, transport, persistent paths, disk layout
    layouts/LAYOUT       per disk layout: device, root/swap/data partitions
    sfdisk-LAYOUT        the layout's sfdisk script (fed to `sfdisk DEVICE`)
    nodes/NAME           per node: host name, address, MAC, image, layout
    nodes.by-mac         MAC -> node name, for a node that knows only its boot MAC

Every value was validated by the inventory model and is shell-quoted again here."""

from __future__ import annotations

from collections.abc import Iterator
from posixpath import join as pjoin

from clustcontrol.inventory.model import DiskLayout, Inventory
from clustcontrol.render.base import Output, RenderContext, render_template, template_macro
from clustcontrol.render.pxe import partition_device
from clustcontrol.render.view import ClusterView

Values = list[tuple[str, object]]


def _params(path: str, title: str, values: Values) -> Output:
    content = template_macro("control/params.j2", "params")(title, values)
    return Output(path=path, service="control", content=content)


def _cluster_values(inv: Inventory, view: ClusterView) -> Values:
    c = inv.cluster
    return [
        ("CC_DOMAIN", c.domain),
        ("CC_MASTER_NAME", c.master.name),
        ("CC_MASTER_IP", c.master.ip),
        ("CC_NETWORK", c.network),
        ("CC_NETMASK", view.netmask),
        ("CC_GATEWAY", c.gateway or ""),
        ("CC_UPDATE_IP", inv.update_ip),
        ("CC_DEFAULT_IMAGE", inv.default_image_name),
        ("CC_CONTROL_DIR", c.control_dir),
        ("CC_TRANSPORT", c.transport),
        ("CC_RSYNC_PORT", c.rsync_port),
        ("CC_SYNC_RETRIES", c.sync_retries),
    ]


def _image_values(inv: Inventory, name: str) -> Values:
    image = inv.images[name]
    return [
        ("CC_IMAGE", name),
        ("CC_IMAGE_ROOT", image.root),
        ("CC_IMAGE_TRANSPORT", inv.transport_of(name)),
        ("CC_RSYNC_MODULE", name),
        ("CC_PERSISTENT", " ".join(image.persistent)),
        ("CC_DISK_LAYOUT", image.disk_layout),
        ("CC_BOOT_INTERFACE", image.boot_interface),
        ("CC_VERIFY_EVERY", image.verify_every),
    ]


def _layout_values(name: str, layout: DiskLayout) -> Values:
    parts = sorted(layout.partitions, key=lambda p: p.number)
    return [
        ("CC_LAYOUT", name),
        ("CC_DISK_DEVICE", layout.device),
        ("CC_ROOT_PARTITION", layout.root.number),
        ("CC_ROOT_DEVICE", partition_device(layout.device, layout.root.number)),
        ("CC_ROOT_FS", layout.root.filesystem),
        ("CC_SWAP_PARTITIONS", " ".join(str(p.number) for p in parts if p.use == "swap")),
        ("CC_PERSISTENT_PARTITIONS", " ".join(str(p.number) for p in parts if p.persistent)),
        # number:use:fs:mount:persistent, one word per partition.
        (
            "CC_PARTITIONS",
            " ".join(
                f"{p.number}:{p.use}:{p.filesystem}:{p.mount or ('/' if p.use == 'root' else '')}:"
                f"{int(p.persistent)}"
                for p in parts
            ),
        ),
    ]


def render_control(ctx: RenderContext) -> Iterator[Output]:
    inv = ctx.inventory
    view = ctx.view
    base = inv.cluster.control_dir
    yield _params(pjoin(base, "default"), "cluster-wide parameters", _cluster_values(inv, view))
    for name in sorted(inv.images):
        yield _params(
            pjoin(base, "images", name), f"standard root {name!r}", _image_values(inv, name)
        )
    for name, layout in sorted(inv.disk_layouts.items()):
        yield _params(
            pjoin(base, "layouts", name), f"disk layout {name!r}", _layout_values(name, layout)
        )
        yield Output(
            path=pjoin(base, f"sfdisk-{name}"), service="control", content=layout.sfdisk.encode()
        )
    for host in view.hosts:
        yield _params(
            pjoin(base, "nodes", host.name),
            f"node {host.name!r}",
            [
                ("CC_HOSTNAME", host.name),
                ("CC_FQDN", f"{host.name}.{inv.cluster.domain}"),
                ("CC_IP", host.ip),
                ("CC_MAC", host.mac),
                ("CC_IMAGE", host.image),
                ("CC_DISK_LAYOUT", host.layout),
                ("CC_KERNEL_ARGS", " ".join(host.kernel_args)),
            ],
        )
    yield Output(
        path=pjoin(base, "nodes.by-mac"),
        service="control",
        content=render_template("control/nodes.by-mac.j2", hosts=view.hosts),
    )
