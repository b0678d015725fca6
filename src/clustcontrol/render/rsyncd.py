"""rsync daemon: one read-only module per standard root (the nodes' rsync transport)."""

from __future__ import annotations

from collections.abc import Iterator

from clustcontrol.contract import SECRET_PATTERNS
from clustcontrol.render.base import Output, RenderContext, render_template

RSYNCD_CONF = "/etc/rsyncd.conf"


def render_rsyncd(ctx: RenderContext) -> Iterator[Output]:
    """/etc/rsyncd.conf (rsyncd.conf(5)): one read-only module per image, named after it,
    serving its generation roots (Inventory.generation_roots, never the working tree), open to
    the cluster subnet only, on cluster.rsync_port with at most cluster.rsync_max_connections
    clients; with the master's cluster interface set, the daemon listens on the master's
    address alone (`address`, ClusterView.listen_ip; read when the daemon starts, unlike the
    modules, which it reads per connection). The trees hold no secrets (image/secrets.py); the
    contract's secret files are excluded by the daemon too (`exclude`, anchored at each
    generation: /*/etc/shadow ...), so no client can ask for one should a tree ever hold it.
    Not the image's own patterns: one may match a directory, which the node must see (its
    secrets below stay on the node)."""
    view = ctx.view
    yield Output(
        path=RSYNCD_CONF,
        service="rsyncd",
        content=render_template(
            "rsyncd/rsyncd.conf.j2",
            address=view.listen_ip,
            port=view.cluster.rsync_port,
            max_connections=view.cluster.rsync_max_connections,
            hosts_allow=str(view.network),
            exclude=" ".join(f"/*/{pattern}" for pattern in SECRET_PATTERNS),
            modules=[
                {"name": image.name, "root": view.inv.generation_roots(image.name)}
                for image in view.images
            ],
        ),
    )
