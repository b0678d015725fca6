"""The control directory (/etc/clustcontrol) read by the nodes at boot.

    default              cluster-wide parameters (shell-sourceable KEY='value'; the keys of
                         every file are those of the contract, clustcontrol/contract/)
    images/IMAGE         per standard root: its path, transport, persistent paths, disk layout
    layouts/LAYOUT       per disk layout: device, root/swap/data partitions
    sfdisk-LAYOUT        the layout's sfdisk script (fed to `sfdisk DEVICE`)
    nodes/NAME           per node: host name, address, MAC, image, layout
    nodes.by-mac         MAC -> node name, for a node that knows only its boot MAC

Every value was validated by the inventory model and is shell-quoted again here."""

from __future__ import annotations

from collections.abc import Iterator
from posixpath import join as pjoin

from clustcontrol.contract import control_values
from clustcontrol.render.base import Output, RenderContext, render_template, template_macro

Values = list[tuple[str, object]]


def _params(path: str, title: str, values: Values) -> Output:
    content = template_macro("control/params.j2", "params")(title, values)
    return Output(path=path, service="control", content=content)


def render_control(ctx: RenderContext) -> Iterator[Output]:
    """Every file of the control directory, under cluster.control_dir.

    The keys and their values come from the contract's table (contract.PARAMS), one file per
    source: cluster -> default, image -> images/NAME, layout -> layouts/NAME, node ->
    nodes/NAME. Returns the outputs (service "control", mode 0644) in a stable order."""
    inv = ctx.inventory
    view = ctx.view
    base = inv.cluster.control_dir
    yield _params(pjoin(base, "default"), "cluster-wide parameters", control_values("cluster", inv))
    for name in sorted(inv.images):
        yield _params(
            pjoin(base, "images", name),
            f"standard root {name!r}",
            control_values("image", inv, name),
        )
    for name, layout in sorted(inv.disk_layouts.items()):
        yield _params(
            pjoin(base, "layouts", name),
            f"disk layout {name!r}",
            control_values("layout", name, layout),
        )
        yield Output(
            path=pjoin(base, f"sfdisk-{name}"), service="control", content=layout.sfdisk.encode()
        )
    for host in view.hosts:
        yield _params(
            pjoin(base, "nodes", host.name),
            f"node {host.name!r}",
            control_values("node", inv, host),
        )
    yield Output(
        path=pjoin(base, "nodes.by-mac"),
        service="control",
        content=render_template("control/nodes.by-mac.j2", hosts=view.hosts),
    )
