"""Checks and normalisation of what a user types, before it reaches the inventory document.

The command-line verbs pass their raw arguments (and `node import` its CSV file) through these
functions. A bad value is reported under the name the user typed it as (`mac: 'zz' is not a MAC
address`), every problem of one command at once, as an InvalidInputError (exit status 2), and
nothing is edited. What passes is returned in the inventory's canonical form; the edited
document is then validated as a whole (store.edit_inventory) before it is written."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from clustcontrol.errors import ClustcontrolError, InvalidInputError
from clustcontrol.inventory import types as T

FieldCheck = Callable[[str], str]
"""Takes one raw value; returns its canonical form or raises ValueError naming the value."""

CSV_HEADER = ("name", "mac", "ip", "image")


@dataclass(frozen=True)
class NodeEntry:
    """One node as it is written into the inventory's `nodes` list.

    Attributes: name, a host name; mac, the boot interface's MAC address; ip, its fixed IPv4
    address in dotted-quad notation; image, the name of its standard root (None: the default
    image); boot, "bios" or "uefi" to force the boot file (None: by the client's architecture,
    inventory Node.boot "auto"). The values are not validated here: see new_node and
    read_node_csv."""

    name: str
    mac: str
    ip: str
    image: str | None = None
    boot: str | None = None

    def fields(self) -> dict[str, str | None]:
        """The entry as a mapping in document order: name, mac, ip, image, boot (None if
        unset)."""
        return {
            "name": self.name,
            "mac": self.mac,
            "ip": self.ip,
            "image": self.image,
            "boot": self.boot,
        }


def ipv4_address(value: str) -> str:
    """An IPv4 address in dotted-quad notation (RFC 791), e.g. '192.168.0.11'.

    Returns the address as Python's ipaddress module writes it (the same text for every value
    it accepts: four decimal octets, no leading zeros). Raises ValueError naming the value."""
    try:
        return str(IPv4Address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None


def ipv4_network(value: str) -> str:
    """An IPv4 network in CIDR notation (RFC 4632), e.g. '192.168.0.0/24'.

    A netmask ('192.168.0.0/255.255.255.0') is accepted; host bits must be zero. Returns the
    network as 'address/prefix length'. Raises ValueError naming the value and the reason."""
    try:
        return str(IPv4Network(value))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IPv4 network: {exc}") from None


def canonical_mac(value: str) -> str:
    """A MAC address (IEEE 802 EUI-48) in the inventory's notation, where that is possible.

    Surrounding blanks are dropped, hex digits lower-cased and the IEEE 802 hyphen notation
    ('52-54-00-AA-00-01') becomes the colon notation ('52:54:00:aa:00:01'). A value that is not
    six hex pairs is returned unchanged, for the inventory validation to report; never raises."""
    normalized = T.normalize_mac(value)
    return normalized if isinstance(normalized, str) else value


def mac_address(value: str) -> str:
    """A MAC address (IEEE 802 EUI-48): six hex pairs separated by ':' or '-', any case.

    Returns the canonical notation of canonical_mac ('52:54:00:aa:00:01'). Raises ValueError
    naming the value when it is not six hex pairs."""
    return T.check_mac(canonical_mac(value))


def mac_addresses(value: str) -> str:
    """One MAC address or several separated by ',' (a node with two boot NICs), each in any
    notation mac_address accepts. Returns them canonical, joined by ','. Raises ValueError
    naming the first bad one."""
    return ",".join(mac_address(part) for part in value.split(","))


def check_fields(fields: Mapping[str, tuple[FieldCheck, str | None]]) -> dict[str, str | None]:
    """Check several raw values at once; report every bad one.

    fields maps a field name (as the user knows it, e.g. 'master_ip') to a check and the raw
    value; a value None (an option not given) is not checked and stays None. Returns the same
    field names with the canonical values, in the order given. Raises InvalidInputError with one
    line 'field: problem' per bad value (the problem names the value)."""
    checked: dict[str, str | None] = {}
    problems: list[str] = []
    for field, (check, value) in fields.items():
        if value is None:
            checked[field] = None
            continue
        try:
            checked[field] = check(value)
        except ValueError as exc:
            problems.append(f"{field}: {exc}")
    if problems:
        raise InvalidInputError(problems)
    return checked


def check_cluster_settings(
    *, domain: str, network: str, master_ip: str, master_name: str, image_root: str
) -> None:
    """Check the settings of a starter inventory (`clustcontrol init`).

    domain: a DNS domain (RFC 1123 labels separated by dots); network: an IPv4 network in CIDR
    notation; master_ip: the master's IPv4 address; master_name: its host name (an RFC 1123
    label); image_root: the absolute path of the default standard root. The starter inventory
    keeps the values as typed (the model normalises them when it loads the file), so nothing is
    returned. Raises InvalidInputError naming every bad field and its value."""
    check_fields(
        {
            "domain": (T.check_domain, domain),
            "network": (ipv4_network, network),
            "master_ip": (ipv4_address, master_ip),
            "master_name": (T.check_host_label, master_name),
            "image_root": (T.check_abs_path, image_root),
        }
    )


def image_name(name: str) -> str:
    """The name of a standard root: lower-case letters, digits, '-' and '_', at most 63.

    Returns the name unchanged. Raises InvalidInputError ('name: ...') when it is not one."""
    return str(check_fields({"name": (T.check_name, name)})["name"])


def defined_image(name: str, defined: Iterable[str]) -> str:
    """An image NAME argument of a verb (image show, commit, prepare, publish, remove): a valid
    name (image_name) among `defined`, the inventory's image names. Returns it.

    Raises InvalidInputError with one line, the same for every verb: image_name's for a name
    that is not one, "images.NAME: 'NAME' is not a defined image (A, B)" for an unknown one."""
    name = image_name(name)
    known = sorted(defined)
    if name not in known:
        raise InvalidInputError(
            [f"images.{name}: {name!r} is not a defined image ({', '.join(known)})"]
        )
    return name


def new_node(name: str, mac: str, ip: str, image: str | None, boot: str | None = None) -> NodeEntry:
    """A node to add, from the raw values of `clustcontrol node add`.

    name: a host name (RFC 1123 label), lower-cased; mac: a MAC address in any notation
    mac_address accepts; ip: an IPv4 address (RFC 791 dotted quad); image: the name of a
    standard root, or None for the default image; boot: auto, bios or uefi (the CLI offers no
    other; auto or None writes no field). Returns the entry in canonical form; whether
    the name, MAC and address are free is checked with the whole inventory later. Raises
    InvalidInputError naming every bad field and its value."""
    checked = check_fields(
        {
            "name": (T.check_host_label, name),
            "mac": (mac_addresses, mac),
            "ip": (ipv4_address, ip),
            "image": (T.check_name, image),
        }
    )
    # name, mac and ip were given, so they are strings here.
    return NodeEntry(
        str(checked["name"]),
        str(checked["mac"]),
        str(checked["ip"]),
        checked["image"],
        None if boot == "auto" else boot,
    )


def node_changes(
    *,
    mac: str | None,
    ip: str | None,
    image: str | None,
    disk_layout: str | None,
    boot: str | None = None,
) -> dict[str, str | None]:
    """The changes of `clustcontrol node set`, keyed by the node's field names.

    mac and ip are checked and made canonical as in new_node; image and disk_layout are names
    checked with the whole inventory later. A value None leaves the field alone; '' for image
    or disk_layout removes the field (the image's or inventory's default applies). boot is
    auto, bios or uefi (the CLI offers no other); auto, the default, removes the field.
    Returns the mapping mac, ip, image, disk_layout, boot. Raises InvalidInputError naming
    each bad MAC or address (an empty MAC or address is bad too)."""
    checked = check_fields({"mac": (mac_addresses, mac), "ip": (ipv4_address, ip)})
    return {
        "mac": checked["mac"],
        "ip": checked["ip"],
        "image": image,
        "disk_layout": disk_layout,
        "boot": "" if boot == "auto" else boot,
    }


def read_node_csv(path: Path) -> list[NodeEntry]:
    """The nodes of a CSV file (RFC 4180, as Python's csv module reads it) for `node import`.

    The file is UTF-8 text, with or without a byte order mark (spreadsheets write one). The
    first line is the header 'name,mac,ip' or 'name,mac,ip,image'; each further record one
    node, the image column empty for the default image. Blanks around values are dropped, names
    are lower-cased and MACs put in canonical notation (canonical_mac); whether the values are
    valid and free is checked with the whole inventory later, all rows together. Returns the
    entries in file order. Raises InvalidInputError when the file does not exist or is not
    UTF-8, the header is another one, or records lack a name, MAC or address, have extra
    columns, hold a line break inside a quoted field, or name a node another record names too
    (one line each, 'PATH:LINE: ...', LINE where the record starts); ClustcontrolError (exit 1)
    when it exists but cannot be read."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InvalidInputError([f"{path}: no such file"]) from None
    except OSError as exc:
        raise ClustcontrolError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            [f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"],
            hint="save the file as UTF-8 (CSV UTF-8 in a spreadsheet)",
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        fields = next(reader, [])
    except csv.Error as exc:
        raise InvalidInputError([f"{path}:1: {exc}"]) from None
    header = [h.strip() for h in fields]
    if header[:3] != list(CSV_HEADER[:3]) or not set(header) <= set(CSV_HEADER):
        raise InvalidInputError(
            [f"{path}:1: header must be 'name,mac,ip,image', not {','.join(header)!r}"]
        )
    entries: list[NodeEntry] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    start = reader.line_num + 1
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(f"{path}:{start}: {exc}")
            break
        number, start = start, reader.line_num + 1
        if not record:
            continue  # an empty line
        if any("\n" in v or "\r" in v for v in record):
            problems.append(f"{path}:{number}: a quoted field holds a line break: {record!r}")
            continue
        row = dict(zip(header, (v.strip() for v in record), strict=False))
        if len(record) > len(header) or any(not row.get(k) for k in ("name", "mac", "ip")):
            problems.append(f"{path}:{number}: expected name,mac,ip[,image], got {record!r}")
            continue
        name = row["name"].lower()
        if name in first_line:
            problems.append(f"{path}:{number}: node {name!r} is on line {first_line[name]} already")
            continue
        first_line[name] = number
        entries.append(
            NodeEntry(
                name=name,
                mac=",".join(canonical_mac(m) for m in row["mac"].split(",")),
                ip=row["ip"],
                image=row.get("image") or None,
            )
        )
    if problems:
        raise InvalidInputError(problems)
    return entries
