"""bind9: forward zone of the cluster domain, reverse zones of its network, named.conf parts."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from typing import NamedTuple

from clustcontrol.inventory.checks import SOA_MAILBOX
from clustcontrol.render.base import Output, RenderContext, render_template, template_macro
from clustcontrol.render.view import ClusterView, reverse_owner, reverse_zone_name, reverse_zones

BIND_DIR = "/etc/bind"
ZONE_DIR = f"{BIND_DIR}/clustcontrol"
SNIPPET = f"{BIND_DIR}/named.conf.clustcontrol"
OPTIONS = f"{BIND_DIR}/named.conf.options"
LOCAL = f"{BIND_DIR}/named.conf.local"

_HASH = re.compile(rb"^; content-hash: ([0-9a-f]+)$", re.MULTILINE)
_SERIAL = re.compile(rb"^\s*(\d+)\s*; serial", re.MULTILINE)


class ARecord(NamedTuple):
    """An A record: owner name relative to the zone origin, dotted IPv4 address (RFC 1035
    section 3.4.1)."""

    owner: str
    ip: str


class PtrRecord(NamedTuple):
    """A PTR record: owner relative to its in-addr.arpa zone, target host label (the template
    appends the cluster domain) (RFC 1035 section 3.5)."""

    owner: str
    target: str


def next_serial(previous: bytes | None, content_hash: str) -> int:
    """Keep the installed serial when the content is unchanged, else bump it by one.

    `previous` is the installed zone file (None: not installed, serial 1), `content_hash` the
    hash of the new zone written with serial 0. The SOA serial is an unsigned 32-bit number
    (RFC 1035 section 3.3.13); it wraps to 1, skipping 0, as allowed by RFC 1982 serial
    arithmetic. A previous file without a recognisable serial starts again at 1."""
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


def _zone(ctx: RenderContext, path: str, origin: str, records: bytes) -> Output:
    """The zone file: its head, then the records. The content hash is taken with serial 0 and an
    empty hash in the head; only the head is rendered again with the real serial and hash."""
    view = ctx.view
    head = template_macro("dns/zone.j2", "head")
    values = {
        "origin": origin,
        "domain": view.domain,
        "master_name": view.master_name,
        "soa_mailbox": SOA_MAILBOX,
    }
    body = head(serial=0, content_hash="", **values) + records
    content_hash = hashlib.sha256(body).hexdigest()[:16]
    serial = next_serial(ctx.previous(path), content_hash)
    content = head(serial=serial, content_hash=content_hash, **values) + records
    return Output(path=path, service="dns", content=content)


def _named_hosts(view: ClusterView) -> list[tuple[IPv4Address, str, str]]:
    """(address, address as text, name) of every host with DNS records: the master, the update
    address while an update node is set (with none, nothing names that address), then every
    node: one A record and one PTR record each."""
    pairs = [(view.master_ip, str(view.master_ip), view.master_name)]
    if view.update_host is not None:
        pairs.append((view.update_ip, str(view.update_ip), view.update_label))
    pairs += [(h.address, h.ip, h.name) for h in view.hosts]
    return pairs


def _forward_records(view: ClusterView) -> list[ARecord]:
    return [ARecord(name, text) for _, text, name in _named_hosts(view)]


def render_dns(ctx: RenderContext) -> Iterator[Output]:
    """bind9 files: the forward zone db.DOMAIN (A records of the master, the update address
    while an update node is set, and every node), one db.N.N.in-addr.arpa per reverse zone
    (PTR records), the zone statements (named.conf.clustcontrol), named.conf.options, and a
    managed block in named.conf.local including the zone statements.

    Zone files use the master-file format of RFC 1035 section 5 and keep their serial while
    their content is unchanged (next_serial, read through ctx.previous); named.conf syntax is
    named.conf(5)."""
    view = ctx.view
    a_records = template_macro("dns/zone.j2", "a_records")(_forward_records(view))
    yield _zone(ctx, f"{ZONE_DIR}/db.{view.domain}", view.domain, a_records)
    zones = reverse_zones(view.network)
    # The zones are equally large: an address's zone is the one starting at its masked address.
    mask = int(zones[0].netmask)
    by_start = {int(zone.network_address): zone for zone in zones}
    by_zone: dict[IPv4Network, list[PtrRecord]] = {zone: [] for zone in zones}
    for ip, text, name in _named_hosts(view):
        zone = by_start[int(ip) & mask]
        by_zone[zone].append(PtrRecord(reverse_owner(text, zone), name))
    ptr_records = template_macro("dns/zone.j2", "ptr_records")
    for zone, records in by_zone.items():
        name = reverse_zone_name(zone)
        yield _zone(ctx, f"{ZONE_DIR}/db.{name}", name, ptr_records(records, view.domain))
    yield Output(
        path=SNIPPET,
        service="dns",
        content=render_template(
            "dns/named.conf.clustcontrol.j2",
            domain=view.domain,
            zone_dir=ZONE_DIR,
            reverse_zones=[{"name": reverse_zone_name(zone)} for zone in zones],
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
