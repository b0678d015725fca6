"""`clustcontrol init`: a commented starter inventory."""

from __future__ import annotations

import click

from clustcontrol.cli.common import State, out, pass_state
from clustcontrol.errors import ClustcontrolError
from clustcontrol.inventory import normalize
from clustcontrol.inventory.store import save_new_document
from clustcontrol.render.base import render_template


@click.command()
@click.option("--domain", required=True, help="DNS domain of the cluster, e.g. rostclust.")
@click.option("--network", required=True, help="Cluster subnet, e.g. 192.168.0.0/24.")
@click.option("--master-ip", required=True, help="The master's address in that subnet.")
@click.option("--master-name", default="master", show_default=True)
@click.option(
    "--image-root",
    default="/srv/nfs4/clusternoderoot",
    show_default=True,
    help="Root of the standard image 'default'.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing inventory.")
@pass_state
def init(
    state: State,
    domain: str,
    network: str,
    master_ip: str,
    master_name: str,
    image_root: str,
    force: bool,
) -> None:
    """Write a commented starter inventory with one image 'default'.

    The file gets mode 0600, a directory made for it 0700: only root reads the inventory. It
    may not lie inside anything the master serves (the control directory, the state directory,
    an image's root, the TFTP root).

    \b
    Example:
      clustcontrol init --domain rostclust --network 192.168.0.0/24 --master-ip 192.168.0.1
    """
    normalize.check_cluster_settings(
        domain=domain,
        network=network,
        master_ip=master_ip,
        master_name=master_name,
        image_root=image_root,
    )
    if state.config.exists() and not force:
        raise ClustcontrolError(
            f"{state.config} already exists", hint="use --force to overwrite it"
        )
    text = render_template(
        "inventory/cluster.yaml.j2",
        domain=domain,
        network=network,
        master_ip=master_ip,
        master_name=master_name,
        image_root=image_root,
    ).decode()
    save_new_document(state.config, text)
    out.print(f"wrote {state.config}")
