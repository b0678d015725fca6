"""Validation of the inventory: each bad value gets one line naming the field and the value."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from clustcontrol.errors import InvalidInputError
from clustcontrol.inventory import model
from clustcontrol.inventory import types as T
from clustcontrol.inventory.store import load_inventory, parse_inventory
from tests.conftest import BASE, inventory_data, make_inventory


def problems(data: dict[str, object]) -> list[str]:
    with pytest.raises(InvalidInputError) as info:
        parse_inventory(data)
    return info.value.problems


def node(
    name: str = "node03", mac: str = "52:54:00:00:00:03", ip: str = "192.168.0.13", **kw: str
) -> dict[str, str]:
    return {"name": name, "mac": mac, "ip": ip, **kw}


def with_nodes(*extra: dict[str, str]) -> dict[str, object]:
    return inventory_data(nodes=[*BASE["nodes"], *extra])


def test_valid_inventory_has_derived_defaults() -> None:
    inv = make_inventory()
    assert str(inv.update_ip) == "192.168.0.253"
    assert inv.default_image_name == "default"
    assert inv.cluster.tftp_root == "/var/lib/tftpboot"
    assert inv.nodes[0].mac == ("52:54:00:00:00:01",)


def test_mac_is_normalized() -> None:
    inv = parse_inventory(with_nodes(node(mac="52-54-00-AB-CD-EF")))
    assert inv.nodes[-1].mac == ("52:54:00:ab:cd:ef",)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            node(mac="52:54:00:00:00:01"),
            "nodes.node03.mac: '52:54:00:00:00:01' duplicates the mac of node 'node01'",
        ),
        (
            node(ip="192.168.0.11"),
            "nodes.node03.ip: '192.168.0.11' duplicates the ip of node 'node01'",
        ),
        (node(name="node01"), "nodes.node01.name: 'node01' is defined more than once"),
        (
            node(ip="10.0.0.5"),
            "nodes.node03.ip: '10.0.0.5' is outside the cluster network 192.168.0.0/24",
        ),
        (node(ip="192.168.0.1"), "nodes.node03.ip: '192.168.0.1' is the master's address"),
        (node(ip="192.168.0.253"), "nodes.node03.ip: '192.168.0.253' is the update node's address"),
        (
            node(ip="192.168.0.255"),
            "nodes.node03.ip: '192.168.0.255' is the network or broadcast address",
        ),
        (node(image="gpu"), "nodes.node03.image: 'gpu' is not a defined image"),
        (
            node(mac="52:54:zz:00:00:03"),
            "nodes.node03.mac: '52:54:zz:00:00:03' is not a MAC address",
        ),
        (node(name="node_03"), "nodes.node_03.name: 'node_03' is not a host name"),
        (node(name="master"), "nodes.master.name: 'master' is reserved for the master"),
        (
            node(name="updatenode"),
            "nodes.updatenode.name: 'updatenode' is reserved for the update node",
        ),
    ],
)
def test_node_problem_is_one_line_naming_field_and_value(
    extra: dict[str, str], expected: str
) -> None:
    lines = problems(with_nodes(extra))
    assert len(lines) == 1, lines
    assert lines[0].startswith(expected), lines


@pytest.mark.parametrize(
    "hostile",
    [
        "node03\nhost evil { }",
        "node03;reboot",
        "node}03",
        "node'03",
        'node"03',
        "node 03",
        "$(reboot)",
    ],
)
def test_injection_in_host_name_is_rejected(hostile: str) -> None:
    lines = problems(with_nodes(node(name=hostile)))
    assert any("is not a host name" in line and repr(hostile) in line for line in lines), lines


@pytest.mark.parametrize(
    "hostile",
    ["quiet\ninit=/bin/sh", "a;b", "a}b", "a'b", 'a"b', "a b", "a`b`", "$(x)"],
)
def test_injection_in_kernel_argument_is_rejected(hostile: str) -> None:
    data = inventory_data(images={"default": {"root": "/srv/x", "kernel_args": ["quiet", hostile]}})
    lines = problems(data)
    assert lines == [
        f"images.default.kernel_args[1]: {hostile!r} is not a safe kernel argument "
        "(letters, digits and '_.,:=/+@%-' only; no spaces, quotes, ';' or braces)"
    ]


@pytest.mark.parametrize(
    "hostile", ["rost;clust", "rost\nclust", "rost}clust", "rost'clust", "rost clust"]
)
def test_injection_in_domain_is_rejected(hostile: str) -> None:
    data = inventory_data(cluster={**BASE["cluster"], "domain": hostile})
    assert any(
        line.startswith("cluster.domain:") and "not a domain name" in line
        for line in problems(data)
    )


@pytest.mark.parametrize("domain", ["0.168.192.in-addr.arpa", "arpa", "x.ip6.ARPA"])
def test_a_domain_under_arpa_is_refused(domain: str) -> None:
    """0.168.192.in-addr.arpa made two renderers write one zone file (a traceback)."""
    data = inventory_data(cluster={**BASE["cluster"], "domain": domain})
    (line,) = problems(data)
    assert line.startswith(f"cluster.domain: {domain!r} is not a domain for hosts")


@pytest.mark.parametrize("domain", ["0.0.10", "cluster.42", "7"])
def test_a_domain_whose_last_label_is_all_digits_is_refused(domain: str) -> None:
    """NAME.DOMAIN would read as an IPv4 address (10.0.0.10), to dnsmasq's dhcp-host too."""
    data = inventory_data(cluster={**BASE["cluster"], "domain": domain})
    assert problems(data) == [
        f"cluster.domain: {domain!r} is not a domain name (its last label is all digits)"
    ]
    assert T.check_domain("0.cluster") == "0.cluster"


@pytest.mark.parametrize(
    "path", ["srv/relative", "/srv/a b", "/srv/x;rm", "/srv/../etc", "/srv/'x'"]
)
def test_paths_must_be_safe_and_absolute(path: str) -> None:
    lines = problems(inventory_data(images={"default": {"root": path}}))
    assert len(lines) == 1 and lines[0].startswith(f"images.default.root: {path!r} is not"), lines


# Issue 11, case 1: each type's pattern must cover the whole value. With re.match and a pattern
# ending in `$`, a value ending in "\n" passed; the other line breaks str.splitlines knows, NUL
# and blanks must not pass either, wherever they are.
GOOD_VALUES = [
    (T.check_host_label, "node01"),
    (T.check_domain, "rostclust.example"),
    (T.check_name, "default"),
    (T.check_mac, "52:54:00:00:00:01"),
    (T.check_abs_path, "/srv/nfs4/root"),
    (T.check_file_name, "vmlinuz-6.1.0-13-amd64"),
    (T.check_kernel_arg, "console=ttyS0,115200"),
    (T.check_ifname, "eth0"),
    (T.check_device, "/dev/disk/by-path/pci-0000:00:1f.2-ata-1"),
]
BREAKS = ["\n", "\r", "\r\n", "\x00", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029", " ", "\t"]


@pytest.mark.parametrize(("check", "good"), GOOD_VALUES, ids=[c.__name__ for c, _ in GOOD_VALUES])
@pytest.mark.parametrize("char", BREAKS, ids=[repr(c) for c in BREAKS])
def test_no_type_accepts_a_line_break_or_blank(check: Any, good: str, char: str) -> None:
    check(good)
    for bad in (good + char, char + good, good[:3] + char + good[3:]):
        with pytest.raises(ValueError, match="is not") as info:
            check(bad)
        assert repr(bad) in str(info.value)


def test_mac_surrounding_blanks_are_dropped_but_not_line_breaks() -> None:
    assert T.normalize_mac(" 52-54-00-AB-CD-EF\t") == "52:54:00:ab:cd:ef"
    assert T.normalize_mac("52:54:00:ab:cd:ef\n") == "52:54:00:ab:cd:ef\n"  # for check_mac


def test_abs_path_rejects_a_long_bad_path_at_once() -> None:
    # The earlier pattern /(?:[...]+/?)* backtracked 2**n ways over a component of n characters.
    start = time.monotonic()
    for bad in ("/" + "a" * 100 + ";", "/a" * 1000 + "\n", "/" + "a/" * 1000 + "/"):
        with pytest.raises(ValueError):
            T.check_abs_path(bad)
    assert time.monotonic() - start < 1


@pytest.mark.parametrize("char", ["\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028"])
def test_sfdisk_script_lines_are_split_at_newline_only(char: str) -> None:
    assert T.check_sfdisk_script("label: dos\n\t,,L\n") == "label: dos\n\t,,L\n"
    with pytest.raises(ValueError, match="line 1 of the sfdisk script has a non-printable"):
        T.check_sfdisk_script(f"label: dos{char},,L\n")


@pytest.mark.parametrize(
    "good", ["ttyS0", "ttyS1,9600", "ttyS0,115200n8", "ttyS3,57600e7r", "tty0"]
)
def test_serial_console_forms(good: str) -> None:
    assert T.check_serial_console(good) == good


@pytest.mark.parametrize(
    "bad", ["ttyS", "ttySe", "ttyS,115200", "ttyS0,", "ttyS0:1", "ttyS0,9600x"]
)
def test_serial_port_console_must_give_port_and_speed(bad: str) -> None:
    # PXELINUX's SERIAL line is made from them: "SERIAL e 115200", "SERIAL  115200" (port
    # 115200, an I/O address) ...
    data = inventory_data(cluster={**BASE["cluster"], "serial_console": bad})
    assert problems(data) == [
        f"cluster.serial_console: {bad!r} is not a serial console "
        "(ttyS<port>[,<baud>[<parity>[<bits>[r]]]], e.g. ttyS0,115200n8)"
    ]


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (inventory_data(images={"a\nb": {"root": "/srv/x"}}), "images.'a\\nb'.[key]: "),
        (with_nodes(node(name="n\rx")), "nodes.'n\\rx'.name: "),
        (with_nodes(node(name="n x")), "nodes.'n x'.name: "),
    ],
)
def test_a_problem_with_a_hostile_key_or_name_is_one_line(
    data: dict[str, object], where: str
) -> None:
    lines = problems(data)
    assert any(line.startswith(where) for line in lines), lines
    assert all(line.isprintable() for line in lines), lines


def test_persistent_paths_are_validated() -> None:
    lines = problems(
        inventory_data(images={"default": {"root": "/srv/x", "persistent": ["/ok", "rel"]}})
    )
    assert lines == ["images.default.persistent[1]: 'rel' is not an absolute path"]


def test_every_problem_is_reported_at_once() -> None:
    lines = problems(
        with_nodes(
            node(mac="52:54:00:00:00:01"),
            node(name="node04", ip="10.1.1.1", mac="52:54:00:00:00:04"),
        )
    )
    assert len(lines) == 2, lines


def test_unknown_field_is_named() -> None:
    data = inventory_data(nodes=[{**BASE["nodes"][0], "colour": "blue"}])
    assert problems(data) == ["nodes.node01.colour: unknown field"]


def test_missing_field_is_named() -> None:
    data = inventory_data(nodes=[{"name": "node01", "ip": "192.168.0.11"}])
    assert problems(data) == ["nodes.node01.mac: required field is missing"]


def test_master_outside_network() -> None:
    data = inventory_data(cluster={**BASE["cluster"], "master": {"ip": "10.0.0.1"}})
    assert problems(data) == [
        "cluster.master.ip: '10.0.0.1' is outside the cluster network 192.168.0.0/24"
    ]


def test_update_node_must_exist() -> None:
    data = inventory_data(update_node={"node": "node09"})
    assert problems(data) == ["update_node.node: 'node09' is not a defined node"]


def test_disk_layout_needs_one_root() -> None:
    data = inventory_data(disk_layouts={"default": {"partitions": [{"number": 1, "use": "swap"}]}})
    assert problems(data) == ["disk_layouts.default: needs exactly one root partition, has 0"]


def test_two_images_cannot_share_a_root() -> None:
    data = inventory_data(images={"a": {"root": "/srv/x"}, "b": {"root": "/srv/x"}})
    assert problems(data) == ["images.b.root: '/srv/x' is also the root of 'a'"]


YAML_FEATURES = """\
base: &base {kernel_args: [quiet], verify_every: 0x10}
images:
  default: {<<: *base, root: /srv/a, persistent: [&p /var/x, *p]}
  gpu: {<<: [*base, {transport: rsync}], root: !!str /srv/b}
flags: [true, yes, ~, null, '', 1.5, .inf, 0o17, 017, 2020-01-01, !!binary aGk=, "52:54:00:00:01"]
? [a, b]
: c
set: !!set {x, y}
omap: !!omap [{a: 1}, {b: 2}]
"""


def test_fast_yaml_reading_agrees_with_ruamel_safe_loader() -> None:
    from ruamel.yaml import YAML

    from clustcontrol.inventory.store import _safe_yaml

    expected = YAML(typ="safe", pure=False).load(YAML_FEATURES)
    assert _safe_yaml().load(YAML_FEATURES) == expected
    assert expected["images"]["gpu"]["transport"] == "rsync"  # merge keys were applied


@pytest.mark.parametrize(
    "text",
    [
        "cluster: {domain: x}\ncluster: {}\n",
        "nodes: [\n",
        "cluster: {}\n",
        "images: {default: {root: /srv/x}}\ncluster: {domain: a, network: 10.0.0.0/24,"
        " master: {ip: 10.0.0.1}}\n",
    ],
)
def test_load_inventory_leaves_the_garbage_collector_enabled(tmp_path: Path, text: str) -> None:
    import gc

    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    assert gc.isenabled()
    with contextlib.suppress(InvalidInputError):
        load_inventory(path)
    assert gc.isenabled()


def _int_fields() -> list[tuple[str, str]]:
    """(model class name, field) of every integer field of the inventory's models."""
    found = []
    for cls in vars(model).values():
        if (
            isinstance(cls, type)
            and issubclass(cls, BaseModel)
            and cls.__module__ == model.__name__
        ):
            found += [
                (cls.__name__, f) for f, info in cls.model_fields.items() if info.annotation is int
            ]
    return sorted(found)


# Where each model with an integer field sits in a valid inventory (keys), and its name in a
# problem.
_PLACES: dict[str, tuple[tuple[str | int, ...], str]] = {
    "Cluster": (("cluster",), "cluster"),
    "Image": (("images", "default"), "images.default"),
    "Partition": (
        ("disk_layouts", "default", "partitions", 1),
        "disk_layouts.default.partitions[1]",
    ),
}


def test_the_integer_fields_are_known() -> None:
    """A new integer field, or one in another model, gets its place in the test below."""
    assert {cls for cls, _field in _int_fields()} == set(_PLACES)
    assert len(_int_fields()) == 6


@pytest.mark.parametrize(("cls", "field"), _int_fields())
@pytest.mark.parametrize("value", [True, False, "3", "0x10", 2.0, 3.5, None, [3], "ok"])
def test_integer_fields_take_integers_only(cls: str, field: str, value: object) -> None:
    """A YAML integer only: no bool (true is not 1), string or float is converted; an integer
    within the field's bounds is taken."""
    keys, where = _PLACES[cls]
    layout = {
        "sfdisk": model.DEFAULT_SFDISK,
        "partitions": [{"number": 1, "use": "swap"}, {"number": 2, "use": "root"}],
    }
    data: Any = inventory_data(disk_layouts={"default": layout})
    section = data
    for key in keys:
        section = section[key]
    if value == "ok":  # the field's upper bound, a valid integer
        bound = next(
            m.le for m in getattr(model, cls).model_fields[field].metadata if hasattr(m, "le")
        )
        section[field] = bound
        parse_inventory(data)  # no problem
        return
    section[field] = value
    assert problems(data) == [f"{where}.{field}: {value!r}: Input should be a valid integer"]


def test_a_field_error_no_longer_hides_the_cross_field_problems() -> None:
    """A bad MAC hid two other nodes sharing an address: one run names both problems."""
    nodes = [
        node("node03", mac="52:54:00:zz:00:03", ip="192.168.0.13"),
        node("node04", mac="52:54:00:00:00:04", ip="192.168.0.20"),
        node("node05", mac="52:54:00:00:00:05", ip="192.168.0.20"),
    ]
    lines = problems(inventory_data(nodes=nodes))
    assert len(lines) == 2, lines
    assert lines[0].startswith("nodes.node03.mac: '52:54:00:zz:00:03' is not a MAC address")
    assert lines[1] == "nodes.node05.ip: '192.168.0.20' duplicates the ip of node 'node04'"


def test_a_long_value_makes_a_short_error_line() -> None:
    """A 400-character value is quoted cut, with its length: never megabytes of output."""
    value = "/srv/" + "x" * 400
    (line,) = problems(inventory_data(images={"default": {"root": value + ";"}}))
    assert len(line) < 200, line
    assert "(406 characters)" in line


@pytest.mark.parametrize(
    ("field", "value"),
    [("root", "/srv/" + "c" * 300), ("root", "/srv" + "/c" * 2100)],
)
def test_a_path_linux_cannot_take_is_refused(field: str, value: str) -> None:
    """A 300-character component made a traceback (file name too long) at apply."""
    (line,) = problems(inventory_data(images={"default": {field: value}}))
    assert line.startswith(f"images.default.{field}: ") and "is not a usable path" in line


C = BASE["cluster"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"cluster": {**C, "network": "0.0.0.0/0", "master": {"name": "m", "ip": "10.0.0.1"}}},
            "cluster.network: '0.0.0.0/0' is too large for a cluster network (at least /8",
        ),
        (
            {
                "cluster": {
                    **C,
                    "network": "10.0.0.0/7",
                    "master": {"name": "m", "ip": "10.0.0.1"},
                },
                "nodes": [],
            },
            "cluster.network: '10.0.0.0/7' is too large",
        ),
        (
            {"cluster": {**C, "gateway": "192.168.0.253"}},
            "cluster.gateway: '192.168.0.253' is the update address",
        ),
        (
            {"cluster": {**C, "gateway": "192.168.0.1"}},
            "cluster.gateway: '192.168.0.1' is the master's address",
        ),
        (
            {"images": {"default": {"root": "/srv/a"}, "b": {"root": "/srv/a/b"}}},
            "images.b.root: '/srv/a/b' lies inside the root of image 'default'",
        ),
        (
            {"images": {"default": {"root": "/srv/a", "persistent": ["/"]}}},
            "images.default.persistent[0]: '/' is the whole root, not a path kept in it",
        ),
        (
            {"images": {"default": {"root": "/srv/a", "persistent": ["/var/x", "/var/x/"]}}},
            "images.default.persistent[1]: '/var/x' is listed already",
        ),
        (
            {"images": {"default": {"root": "/srv/a", "persistent": ["/var/x/y", "/var/x"]}}},
            "images.default.persistent[0]: '/var/x/y' lies inside persistent path '/var/x'",
        ),
        (
            {"nodes": [{**BASE["nodes"][0], "mac": "FF:FF:FF:FF:FF:FF"}]},
            "nodes.node01.mac: 'ff:ff:ff:ff:ff:ff' is the broadcast address, not an interface's",
        ),
        (
            {"nodes": [{**BASE["nodes"][0], "mac": "01:00:5e:00:00:fb"}]},
            "nodes.node01.mac: '01:00:5e:00:00:fb' is a multicast address, not an interface's",
        ),
        (
            {"nodes": [{**BASE["nodes"][0], "mac": "0000.0000.0000"}]},
            "nodes.node01.mac: '00:00:00:00:00:00' is the all-zero address, which no interface has",
        ),
        (
            {
                "disk_layouts": {
                    "default": {
                        "partitions": [
                            {"number": 1, "use": "root"},
                            {"number": 2, "use": "data", "mount": "/"},
                        ]
                    }
                }
            },
            "disk_layouts.default.partitions[1]: partition 2: a data partition cannot be mounted "
            "at '/'",
        ),
    ],
)
def test_what_the_real_checkers_or_the_node_reject_is_refused(
    overrides: dict[str, Any], expected: str
) -> None:
    lines = problems(inventory_data(**overrides))
    assert any(line.startswith(expected) for line in lines), lines
