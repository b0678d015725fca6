"""Constrained value types: everything that can reach a config file or a node shell script.

Each type accepts only a conservative character set, so no value from the inventory can break
out of the config line or the sourced shell file it is written into (no newline, `;`, quote,
brace or space). Each pattern must match the whole value (re.fullmatch), never a prefix of it."""

from __future__ import annotations

import re
import reprlib
from ipaddress import IPv4Address
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field

from clustcontrol.contract import PATH_CHARACTERS

# Every pattern is applied with fullmatch: it must cover the whole value. (re.match with a
# pattern ending in `$` also accepts a value ending in "\n", which then breaks out of the line it
# is written into: issue 11.) None of them may backtrack more than linearly on a long value.
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")
# "/", or components of PATH_CHARACTERS separated by single '/', optionally ending in '/'.
# (Not `/(?:[...]+/?)*`: that nests two repetitions that can split a component in 2**n ways,
# so a long component followed by a bad character took minutes to reject.)
_ABS_PATH = re.compile(rf"/(?:[{PATH_CHARACTERS}]+(?:/[{PATH_CHARACTERS}]+)*/?)?")
# A secret pattern: like an absolute path, with '*' (within one name) allowed in a component.
_SECRET_PATTERN = re.compile(rf"(?:/[*{PATH_CHARACTERS}]+)+")
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_KERNEL_ARG = re.compile(r"[A-Za-z0-9_.,:=/+@%-]+")
_IFNAME = re.compile(r"(?=.{1,15}\Z)[A-Za-z0-9][A-Za-z0-9_.-]*(?::[A-Za-z0-9_.-]+)?")
# /dev/NAME[/NAME...]: udev's by-path names hold ':' (pci-0000:00:1f.2-ata-1); no empty names.
_DEVICE = re.compile(r"/dev(?:/[A-Za-z0-9_.:+@-]+)+")
# A serial console: ttyS<n>[,<baud>[<parity>[<bits>[r]]]] (the kernel's console= syntax,
# Documentation/admin-guide/kernel-parameters.txt, "console="); PXELINUX's SERIAL line is made
# from its port and baud rate (render/pxe.py).
_SERIAL_TTY = re.compile(r"ttyS[0-9]+(?:,[0-9]+(?:[noe](?:[5-8]r?)?)?)?")
# What surrounds a MAC address that normalize_mac drops: blanks only, not line breaks.
_BLANKS = " \t"


#: Longest file name component and path Linux takes (NAME_MAX, PATH_MAX less the NUL; limits.h).
NAME_MAX = 255
PATH_MAX = 4095
#: Longest value an error line quotes whole; longer ones are cut (shown).
SHOWN_MAX = 60


def shown(value: object) -> str:
    """repr(value) for an error line, cut to its first SHOWN_MAX characters with the length
    said when it is longer: a 400-character value makes one short line, not megabytes."""
    if isinstance(value, str) and len(value) > SHOWN_MAX:
        return f"{value[:SHOWN_MAX]!r}... ({len(value)} characters)"
    if isinstance(value, str):
        return repr(value)
    # Containers through reprlib's limits: a YAML alias bomb shares one list 10**7 times over,
    # and repr would spell every copy out.
    text = _SHORT_REPR.repr(value)
    return text if len(text) <= SHOWN_MAX + 2 else f"{text[:SHOWN_MAX]}..."


def _short_repr() -> reprlib.Repr:
    short = reprlib.Repr()
    short.maxlevel, short.maxlist, short.maxdict, short.maxstring = 3, 6, 6, SHOWN_MAX
    return short


_SHORT_REPR = _short_repr()


def _too_long(value: str) -> str | None:
    """Why a path is longer than Linux takes, or None (NAME_MAX per component, PATH_MAX)."""
    if len(value.encode()) > PATH_MAX:
        return f"longer than {PATH_MAX} bytes"
    if any(len(c.encode()) > NAME_MAX for c in value.split("/")):
        return f"a component is longer than {NAME_MAX} bytes"
    return None


def check_host_label(value: str) -> str:
    """A host name label (RFC 1123 section 2.1: letters, digits and inner '-', 1 to 63
    characters), returned lower-cased. Raises ValueError otherwise."""
    if not isinstance(value, str) or not _LABEL.fullmatch(value):
        raise ValueError(
            f"{shown(value)} is not a host name (RFC 1123 label: letters, digits, '-')"
        )
    return value.lower()


def check_domain(value: str) -> str:
    """A domain name: dot-separated labels as check_host_label, at most 253 characters, the
    last one not all digits (RFC 1123 section 2.1: a host name is never in dotted-decimal
    form; RFC 3696 section 2: no all-numeric top-level domain), so that NAME.DOMAIN never reads
    as an IPv4 address (dnsmasq's dhcp-host, for one, would take it for the address).

    Returns it lower-cased without a trailing dot. Raises ValueError otherwise."""
    if not isinstance(value, str) or len(value) > 253 or not value:
        raise ValueError(f"{shown(value)} is not a domain name")
    labels = value.rstrip(".").split(".")
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise ValueError(f"{shown(value)} is not a domain name (bad label {label!r})")
    if labels[-1].isdigit():
        raise ValueError(f"{shown(value)} is not a domain name (its last label is all digits)")
    if labels[-1].lower() == "arpa":
        raise ValueError(
            f"{shown(value)} is not a domain for hosts (.arpa holds the reverse zones the master "
            "serves itself: RFC 3172)"
        )
    return value.rstrip(".").lower()


def check_name(value: str) -> str:
    """An inventory key (image, disk layout): 1 to 63 lower-case letters, digits, '-' and '_',
    starting with a letter or digit. Returned unchanged; raises ValueError otherwise."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(
            f"{shown(value)} is not a valid name (lower-case letters, digits, '-', '_'; "
            "starting with a letter or digit)"
        )
    return value


# The notations of a MAC address besides the canonical one: IEEE 802's hyphens
# (52-54-00-12-34-56), bare hex digits (525400123456) and Cisco's dotted groups of four
# (5254.0012.3456); any case.
_MAC_NOTATIONS = re.compile(
    r"[0-9a-f]{2}(?:-[0-9a-f]{2}){5}|[0-9a-f]{12}|[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}"
)


def normalize_mac(value: object) -> object:
    """A MAC address in the canonical form 52:54:00:12:34:56 (lower case, ':' separators) when
    `value` is one in any case, in that notation or one of _MAC_NOTATIONS, with or without
    surrounding blanks (spaces and tabs; a line break is not a blank); else `value` as is (for
    check_mac to reject). Separators are never mixed."""
    if isinstance(value, str):
        candidate = value.strip(_BLANKS).lower()
        if _MAC.fullmatch(candidate):
            return candidate
        if _MAC_NOTATIONS.fullmatch(candidate):
            digits = re.sub(r"[-.]", "", candidate)
            return ":".join(digits[i : i + 2] for i in range(0, 12, 2))
    return value


def check_mac(value: str) -> str:
    """A canonical MAC address (six lower-case hex pairs joined by ':') of one interface,
    unchanged.

    A group address (the I/G bit, the least significant bit of the first octet, set: IEEE
    802-2014 section 8.2; ff:ff:ff:ff:ff:ff, the broadcast address, is one) names no interface:
    no node boots with it, and a DHCP host entry for it would match other hosts' frames. Nor
    does 00:00:00:00:00:00: it is what firmware and drivers report for a NIC whose address was
    never set (Linux's is_zero_ether_addr refuses it as a device's address; ISC dhcpd and
    dnsmasq would match every client that sends an empty chaddr).
    Raises ValueError for those and for anything that is not a MAC address."""
    if not isinstance(value, str) or not _MAC.fullmatch(value):
        raise ValueError(
            f"{shown(value)} is not a MAC address (six hex pairs, e.g. 52:54:00:12:34:56)"
        )
    if int(value[:2], 16) & 1:
        kind = "the broadcast address" if value == "ff:ff:ff:ff:ff:ff" else "a multicast address"
        raise ValueError(
            f"{shown(value)} is {kind}, not an interface's (the first octet's lowest bit is set)"
        )
    if value == "00:00:00:00:00:00":
        raise ValueError(f"{shown(value)} is the all-zero address, which no interface has")
    return value


def check_abs_path(value: str) -> str:
    """An absolute path of safe characters (letters, digits, '._+@-'), without '.' or '..'
    components or empty ones ('//'). Returned without a trailing '/' ("/" stays "/").

    Raises ValueError otherwise."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"{shown(value)} is not an absolute path")
    if not _ABS_PATH.fullmatch(value) or "/../" in value + "/" or "/./" in value + "/":
        raise ValueError(
            f"{shown(value)} is not a safe absolute path (letters, digits, '._+@-' and '/' only, "
            "no '.' or '..' components)"
        )
    if (why := _too_long(value)) is not None:
        raise ValueError(f"{shown(value)} is not a usable path ({why})")
    return value.rstrip("/") or "/"


def check_secret_pattern(value: str) -> str:
    """A secret path pattern (images.NAME.secrets): an absolute path of safe characters
    (check_abs_path's) where a component may hold '*' (any characters within one name, as
    fnmatch without '?' and '[]'), e.g. /etc/ssl/private/*.key; not "/" and no '.' or '..'
    components. Returned without a trailing '/'; raises ValueError otherwise."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"{shown(value)} is not an absolute path pattern")
    stripped = value.rstrip("/")
    parts = stripped.split("/")[1:]
    if not _SECRET_PATTERN.fullmatch(stripped) or any(p in (".", "..") for p in parts):
        raise ValueError(
            f"{shown(value)} is not a safe absolute path pattern (letters, digits, '._+@-', '*' "
            "within a name and '/' only, not '/' alone, no '.' or '..' components)"
        )
    return stripped


def is_file_name(value: str) -> bool:
    """Whether value is a plain file name as check_file_name takes it (no '/', no control
    character, no blank: letters, digits and '._+-', not starting with '.', '+' or '-')."""
    return _FILE_NAME.fullmatch(value) is not None


def check_file_name(value: str) -> str:
    """A plain file name (no '/'): letters, digits and '._+-', not starting with '.', '+' or
    '-'. Returned unchanged; raises ValueError otherwise."""
    if not isinstance(value, str) or not is_file_name(value):
        raise ValueError(f"{shown(value)} is not a plain file name")
    return value


def check_kernel_arg(value: str) -> str:
    """One word of a kernel command line (e.g. console=ttyS0,115200): letters, digits and
    '_.,:=/+@%-' only. Returned unchanged; raises ValueError otherwise."""
    if not isinstance(value, str) or not _KERNEL_ARG.fullmatch(value):
        raise ValueError(
            f"{shown(value)} is not a safe kernel argument "
            "(letters, digits and '_.,:=/+@%-' only; no spaces, quotes, ';' or braces)"
        )
    return value


def check_serial_console(value: str) -> str:
    """A kernel console= value (one word, as check_kernel_arg). One that names a serial port
    (starts with ttyS) must be ttyS<n>[,<baud>[<parity>[<bits>[r]]]], e.g. ttyS0,115200n8:
    PXELINUX's SERIAL line is made of its port and baud rate. Returned unchanged; raises
    ValueError otherwise."""
    check_kernel_arg(value)
    if value.startswith("ttyS") and not _SERIAL_TTY.fullmatch(value):
        raise ValueError(
            f"{shown(value)} is not a serial console "
            "(ttyS<port>[,<baud>[<parity>[<bits>[r]]]], e.g. ttyS0,115200n8)"
        )
    return value


def check_ifname(value: str) -> str:
    """A network interface name: 1 to 15 characters (Linux IFNAMSIZ is 16 with the NUL) of
    letters, digits and '_.-', starting with a letter or digit, or such a device name, ':' and
    a label (an address label such as eth1:0, ip-address(8); the kernel's dev_valid_name
    refuses ':' in a device's own name, so "0:" names nothing). Returned unchanged; raises
    ValueError otherwise."""
    if not isinstance(value, str) or not _IFNAME.fullmatch(value):
        raise ValueError(f"{shown(value)} is not a network interface name")
    return value


def check_device(value: str) -> str:
    """A device path under /dev (e.g. /dev/sda, /dev/disk/by-path/pci-0000:00:1f.2-ata-1),
    without '..', empty components or a trailing '/'.

    Returned unchanged; raises ValueError otherwise."""
    if not isinstance(value, str) or not _DEVICE.fullmatch(value) or ".." in value:
        raise ValueError(f"{shown(value)} is not a device path under /dev")
    if (why := _too_long(value)) is not None:
        raise ValueError(f"{shown(value)} is not a usable device path ({why})")
    return value


def check_sfdisk_script(value: str) -> str:
    """An sfdisk input script (sfdisk(8), "INPUT FORMATS"): not empty, and each line (split at
    "\n" only, as sfdisk reads it) holds printable ASCII and tabs only, so no carriage return,
    form feed or other line separator of str.splitlines hides in a line. Its syntax is left to
    sfdisk. Returned ending with a newline; raises ValueError otherwise."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("the sfdisk script is empty")
    for number, line in enumerate(value.split("\n"), 1):
        if any(not (ch.isprintable() and ch.isascii()) and ch != "\t" for ch in line):
            raise ValueError(
                f"line {number} of the sfdisk script has a non-printable character "
                f"(only printable ASCII and tabs): {line!r}"
            )
    return value if value.endswith("\n") else value + "\n"


HostLabel = Annotated[str, AfterValidator(check_host_label)]
DomainName = Annotated[str, AfterValidator(check_domain)]
Name = Annotated[str, AfterValidator(check_name)]
MacAddress = Annotated[str, BeforeValidator(normalize_mac), AfterValidator(check_mac)]


def one_or_more(value: object) -> object:
    """A single value as a one-item list (a YAML scalar where a list is allowed); else as is."""
    return [value] if isinstance(value, str) else value


#: One MAC address or a list of them (a node with two boot NICs), at least one, as a tuple.
MacAddresses = Annotated[
    tuple[MacAddress, ...], BeforeValidator(one_or_more), Field(min_length=1, max_length=8)
]
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DOTTED_QUAD = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")


def dotted_quad(value: object) -> object:
    """A string of four decimal octets without leading zeros ("10.0.3.44") as the IPv4Address
    it names, built from its integer: what IPv4Address(value) returns, at a fraction of its
    cost (a 50,000-node inventory has 50,000 of them). Anything else is returned as is, for
    pydantic's own IPv4Address validation and its errors."""
    if isinstance(value, str) and (match := _DOTTED_QUAD.fullmatch(value)):
        a, b, c, d = match.groups()
        return IPv4Address(int(a) << 24 | int(b) << 16 | int(c) << 8 | int(d))
    return value


#: An IPv4 address, validated as pydantic validates IPv4Address (dotted_quad first).
NodeAddress = Annotated[IPv4Address, BeforeValidator(dotted_quad)]
AbsPath = Annotated[str, AfterValidator(check_abs_path)]
FileName = Annotated[str, AfterValidator(check_file_name)]
KernelArg = Annotated[str, AfterValidator(check_kernel_arg)]
SerialConsole = Annotated[str, AfterValidator(check_serial_console)]
IfName = Annotated[str, AfterValidator(check_ifname)]
DevicePath = Annotated[str, AfterValidator(check_device)]
SfdiskScript = Annotated[str, AfterValidator(check_sfdisk_script)]
SecretPattern = Annotated[str, AfterValidator(check_secret_pattern)]

__all__ = [
    "AbsPath",
    "DevicePath",
    "DomainName",
    "FileName",
    "HostLabel",
    "IPv4Address",
    "IfName",
    "KernelArg",
    "MacAddress",
    "Name",
    "NodeAddress",
    "SecretPattern",
    "SerialConsole",
    "SfdiskScript",
]
