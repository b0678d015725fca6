"""Run every renderer over one inventory."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from clustcontrol.gcpause import gc_paused
from clustcontrol.render.base import Output, RenderContext, RenderedTree
from clustcontrol.render.control import render_control
from clustcontrol.render.dhcp.dnsmasq import render_dnsmasq
from clustcontrol.render.dhcp.isc import render_isc
from clustcontrol.render.dhcp.kea import render_kea
from clustcontrol.render.dns import render_dns
from clustcontrol.render.firewall import render_firewall
from clustcontrol.render.grub import render_grub
from clustcontrol.render.nfs import (
    render_bind_mounts,
    render_exports,
    render_ganesha,
    render_nfsd,
)
from clustcontrol.render.pxe import render_pxe, render_tftpd
from clustcontrol.render.rsyncd import render_rsyncd

Renderer = Callable[[RenderContext], Iterable[Output]]

RENDERERS: tuple[Renderer, ...] = (
    render_dns,
    render_isc,
    render_kea,
    render_dnsmasq,
    render_pxe,
    render_grub,
    render_tftpd,
    render_exports,
    render_nfsd,
    render_ganesha,
    render_bind_mounts,
    render_rsyncd,
    render_control,
    render_firewall,
)


def render_all(ctx: RenderContext) -> RenderedTree:
    """Every output of every renderer in RENDERERS, for all services (apply selects later).

    Nothing is written; the files the PXE renderers copy (pxelinux.0, .c32 modules, the signed
    shim and GRUB) are only located here and read when installed. Raises ValueError when two
    renderers produce the same path and ClustcontrolError when one of those files is not
    installed."""
    tree = RenderedTree()
    with gc_paused():
        for renderer in RENDERERS:
            tree.extend(renderer(ctx))
    return tree
