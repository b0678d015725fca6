"""bind9: forward zone of the cluster domain, reverse zones of its network, named.conf parts."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address

from clustcontrol.render.base import Output, RenderContext, render_template
from clustcontrol.render.view import ClusterView, reverse_owner, reverse_zone_name, reverse_zones

BIND_DIR = "/etc/bind"
ZONE_DIR = f"{BIND_DIR}/clustcontrol"
SNIPPET = f"{BIND_DIR}/named.conf.clustcontrol"
OPTIONS = f"{BIND_DIR}/named.conf.options"
LOCAL = f"{BIND_DIR}/named.conf.local"

_HASH = re.compile(rb"^; content-hash: ([0-9a-f]+)$", re.MULTILINE)
_SERIAL = re.compile(rb"^\s*(\d+)\s*; serial", re.MULTILINE)


@dataclass(frozen=True)
class ARecord:
    owner: str
    ip: str


@dataclass(frozen=True)
class PtrRecord:
    owner: str
    target: str


def next_serial(previous: bytes | None, content_hash: str) -> int:
    """Keep the installed serial when the content is unchanged, else bump it by one."""
    if previous is None:
        return 1
    old_hash = _HASH.search(previous)
    old_serial = _SERIAL.search(previous)
    if old_serial is None:
        return 1
    serial = int(old_serial.group(1))
    if old_hash is not None and old_hash.group(1).decode() == content_hash:
        return serial
    return (serial + 1) % 2**32 or 1


def _zone(ctx: RenderContext, template: str, path: str, **values: object) -> Output:
    # Render once with a fixed serial to hash the content, then with the real serial.
    body = render_template(template, serial=0, content_hash="", **values)
    content_hash = hashlib.sha256(body).hexdigest()[:16]
    serial = next_serial(ctx.previous(path), content_hash)
    content = render_template(template, serial=serial, content_hash=content_hash, **values)
    return Output(path=path, service="dns", content=content)


def _forward_records(view: ClusterView) -> list[ARecord]:
    records = [
        ARecord(view.master_name, str(view.master_ip)),
        ARecord(view.update_label, str(view.update_ip)),
    ]
    records += [ARecord(h.name, h.ip) for h in view.hosts]
    return records


def _reverse_records(view: ClusterView) -> list[tuple[IPv4Address, str]]:
    pairs = [(view.master_ip, view.master_name), (view.update_ip, view.update_label)]
    pairs += [(h.address, h.name) for h in view.hosts]
    return pairs


def render_dns(ctx: RenderContext) -> Iterator[Output]:
    view = ctx.view
    common = {"domain": view.domain, "master_name": view.master_name}
    yield _zone(
        ctx,
        "dns/forward.zone.j2",
        f"{ZONE_DIR}/db.{view.domain}",
        records=_forward_records(view),
        **common,
    )
    zones = reverse_zones(view.network)
    by_zone: dict[str, list[PtrRecord]] = {reverse_zone_name(z): [] for z in zones}
    for ip, name in _reverse_records(view):
        zone = next(z for z in zones if ip in z)
        by_zone[reverse_zone_name(zone)].append(PtrRecord(reverse_owner(ip, zone), name))
    for zone_name, records in by_zone.items():
        yield _zone(
            ctx,
            "dns/reverse.zone.j2",
            f"{ZONE_DIR}/db.{zone_name}",
            zone_name=zone_name,
            records=records,
            **common,
        )
    yield Output(
        path=SNIPPET,
        service="dns",
        content=render_template(
            "dns/named.conf.clustcontrol.j2",
            domain=view.domain,
            zone_dir=ZONE_DIR,
            reverse_zones=[{"name": name} for name in by_zone],
        ),
    )
    yield Output(
        path=OPTIONS,
        service="dns",
        content=render_template(
            "dns/named.conf.options.j2",
            forwarders=[str(f) for f in view.cluster.dns_forwarders],
            master_ip=view.master_ip,
            network=view.network,
        ),
    )
    yield Output(
        path=LOCAL,
        service="dns",
        block=True,
        content=render_template("dns/named.conf.local.block.j2", snippet=SNIPPET),
    )
