"""Checks and normalisation of typed values (inventory.normalize) and the document edits they
feed (inventory.edit): each bad value is named with its field, all at once."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clustcontrol.errors import InvalidInputError
from clustcontrol.inventory import edit
from clustcontrol.inventory.normalize import (
    NodeEntry,
    canonical_mac,
    check_cluster_settings,
    check_fields,
    image_name,
    ipv4_address,
    ipv4_network,
    mac_address,
    new_node,
    node_changes,
    read_node_csv,
)
from clustcontrol.inventory.store import dump_document, load_document, parse_inventory, to_plain
from clustcontrol.inventory.types import check_mac
from tests.conftest import inventory_data


def problems_of(call: object, *args: object, **kwargs: object) -> list[str]:
    assert callable(call)
    with pytest.raises(InvalidInputError) as info:
        call(*args, **kwargs)
    return info.value.problems


# --- single values ----------------------------------------------------------------------------


def test_ipv4_address() -> None:
    assert ipv4_address("192.168.0.11") == "192.168.0.11"
    for bad in ("192.168.0.300", "1.2.3", "192.168.000.1", " 1.2.3.4", "", "::1"):
        with pytest.raises(ValueError, match=r"is not an IPv4 address"):
            ipv4_address(bad)


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_ipv4_address_round_trips(number: int) -> None:
    text = str(IPv4Address(number))
    assert ipv4_address(text) == text


@given(st.text(alphabet="0123456789. x", max_size=18))
def test_ipv4_address_accepts_only_its_canonical_text(text: str) -> None:
    # The CLI stores the checked value: an accepted address must be written as it was typed.
    try:
        assert ipv4_address(text) == text
    except ValueError as exc:
        assert repr(text) in str(exc)


def test_ipv4_network() -> None:
    assert ipv4_network("192.168.0.0/24") == "192.168.0.0/24"
    assert ipv4_network("192.168.0.0/255.255.255.0") == "192.168.0.0/24"
    with pytest.raises(ValueError, match=r"'1.2.3.0/33' is not an IPv4 network: .*netmask"):
        ipv4_network("1.2.3.0/33")
    with pytest.raises(ValueError, match=r"has host bits set"):
        ipv4_network("192.168.0.1/24")


def test_mac_notations() -> None:
    assert mac_address("52:54:00:AA:00:01") == "52:54:00:aa:00:01"
    assert mac_address(" 52-54-00-aa-00-02 ") == "52:54:00:aa:00:02"
    assert mac_address("5254.00AA.0003") == "52:54:00:aa:00:03"
    assert mac_address("5254000000AB") == "52:54:00:00:00:ab"
    bad_ones = ("zz", "", "52:54:00:00:00:0g", "52:54-00:00:00:01", "5254.00aa.0001.02")
    for bad in (*bad_ones, "52:54:00:00:00", "5254:00aa:0001", "52540000000"):
        with pytest.raises(ValueError, match=r"is not a MAC address"):
            mac_address(bad)
    assert canonical_mac("not a mac") == "not a mac"


@given(
    st.binary(min_size=6, max_size=6),
    st.sampled_from([":", "-", "", "cisco"]),
    st.booleans(),
)
def test_mac_any_notation_gives_the_canonical_one(raw: bytes, sep: str, upper: bool) -> None:
    """Colons, IEEE 802 hyphens, bare hex digits and Cisco's dotted groups of four."""
    canonical = ":".join(f"{b:02x}" for b in raw)
    pairs = [f"{b:02X}" if upper else f"{b:02x}" for b in raw]
    if sep == "cisco":
        typed = ".".join("".join(pairs[i : i + 2]) for i in (0, 2, 4))
    else:
        typed = sep.join(pairs)
    assert canonical_mac(typed) == canonical
    if raw[0] & 1:  # the I/G bit: a group (multicast or broadcast) address, no interface's
        with pytest.raises(ValueError, match=r"is (a multicast|the broadcast) address, not an"):
            mac_address(typed)
    elif not any(raw):
        with pytest.raises(ValueError, match=r"is the all-zero address, which no interface has"):
            mac_address(typed)
    else:
        assert mac_address(typed) == canonical


def test_group_mac_addresses_are_refused() -> None:
    for group in (
        "ff:ff:ff:ff:ff:ff",
        "01:00:5e:00:00:01",
        "33:33:00:00:00:01",
        "03:00:00:00:00:00",
    ):
        with pytest.raises(ValueError, match=r"first octet's lowest bit is set"):
            mac_address(group)
    for unicast in ("02:00:00:00:00:01", "fe:ff:ff:ff:ff:ff", "00:00:00:00:00:01"):
        assert mac_address(unicast) == unicast
    with pytest.raises(ValueError, match=r"all-zero address"):
        mac_address("00:00:00:00:00:00")


@given(st.text(max_size=20))
def test_canonical_mac_is_idempotent_and_never_raises(text: str) -> None:
    once = canonical_mac(text)
    assert canonical_mac(once) == once
    if once != text:
        assert check_mac(once) == once


# --- several values at once -------------------------------------------------------------------


def test_check_fields_reports_every_problem_in_order_and_skips_none() -> None:
    fields = {
        "ip": (ipv4_address, "1.2.3"),
        "image": (image_name, None),
        "mac": (mac_address, "zz"),
    }
    assert problems_of(check_fields, fields) == [
        "ip: '1.2.3' is not an IPv4 address",
        "mac: 'zz' is not a MAC address (six hex pairs, e.g. 52:54:00:12:34:56)",
    ]
    assert check_fields({"ip": (ipv4_address, "10.0.0.1"), "mac": (mac_address, None)}) == {
        "ip": "10.0.0.1",
        "mac": None,
    }


def test_cluster_settings() -> None:
    check_cluster_settings(
        domain="rostclust",
        network="192.168.0.0/24",
        master_ip="192.168.0.1",
        master_name="master",
        image_root="/srv/nfs4/clusternoderoot",
    )
    lines = problems_of(
        check_cluster_settings,
        domain="x;y",
        network="1.2.3.0/33",
        master_ip="1.2.3.400",
        master_name="a b",
        image_root="rel",
    )
    assert [line.split(":")[0] for line in lines] == [
        "domain",
        "network",
        "master_ip",
        "master_name",
        "image_root",
    ]
    assert "master_ip: '1.2.3.400' is not an IPv4 address" in lines


def test_image_name() -> None:
    assert image_name("gpu") == "gpu"
    assert problems_of(image_name, "Bad")[0].startswith("name: 'Bad' is not a valid name")


def test_new_node_is_canonical() -> None:
    entry = new_node("Node01", "52-54-00-AA-00-01", "192.168.0.11", None)
    assert entry == NodeEntry("node01", "52:54:00:aa:00:01", "192.168.0.11", None)
    assert entry.fields() == {
        "name": "node01",
        "mac": "52:54:00:aa:00:01",
        "ip": "192.168.0.11",
        "image": None,
        "boot": None,
    }
    assert new_node("n2", "52:54:00:aa:00:02", "192.168.0.12", None, "auto").boot is None
    assert new_node("n2", "52:54:00:aa:00:02", "192.168.0.12", None, "bios").boot == "bios"
    lines = problems_of(new_node, "node03;reboot", "zz", "1.2.3", "B@d")
    assert [line.split(":")[0] for line in lines] == ["name", "mac", "ip", "image"]


def test_node_changes() -> None:
    assert node_changes(mac="52-54-00-AA-00-09", ip=None, image="", disk_layout=None) == {
        "mac": "52:54:00:aa:00:09",
        "ip": None,
        "image": "",
        "disk_layout": None,
        "boot": None,
    }
    assert problems_of(node_changes, mac="", ip="x", image=None, disk_layout=None) == [
        "mac: '' is not a MAC address (six hex pairs, e.g. 52:54:00:12:34:56)",
        "ip: 'x' is not an IPv4 address",
    ]


# --- CSV --------------------------------------------------------------------------------------


def test_read_node_csv(tmp_path: Path) -> None:
    path = tmp_path / "rack.csv"
    path.write_text(
        "name, mac ,ip,image\n"
        "N1,52-54-00-00-01-01,192.168.0.31,\n"
        '"n2","52:54:00:00:01:02", 192.168.0.32 ,gpu\r\n'
    )
    assert read_node_csv(path) == [
        NodeEntry("n1", "52:54:00:00:01:01", "192.168.0.31", None),
        NodeEntry("n2", "52:54:00:00:01:02", "192.168.0.32", "gpu"),
    ]
    three = tmp_path / "three.csv"
    three.write_text("name,mac,ip\nn3,zz,192.168.0.33\n")
    # Not checked here: the whole inventory is validated with the rows.
    assert read_node_csv(three) == [NodeEntry("n3", "zz", "192.168.0.33")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("host,mac,ip\nn5,52:54:00:00:01:05,192.168.0.35\n", ":1: header must be"),
        ("name,mac,ip,image,rack\n", ":1: header must be"),
        ("name,mac,ip\nn5,,192.168.0.35\n", ":2: expected name,mac,ip[,image]"),
        ("name,mac,ip\nn5,52:54:00:00:01:05,192.168.0.35,extra\n", ":2: expected"),
    ],
)
def test_read_node_csv_rejects(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    lines = problems_of(read_node_csv, path)
    assert len(lines) == 1 and lines[0].startswith(str(path)) and message in lines[0]


def test_read_node_csv_reports_every_bad_row_and_unreadable_files(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("name,mac,ip\nn1,,1.2.3.4\nn2,52:54:00:00:00:02,192.168.0.2\n,,\n")
    assert [line.split(": ")[0] for line in problems_of(read_node_csv, path)] == [
        f"{path}:2",
        f"{path}:4",
    ]
    assert problems_of(read_node_csv, tmp_path / "missing.csv") == [
        f"{tmp_path / 'missing.csv'}: no such file"
    ]


# --- document edits ---------------------------------------------------------------------------


def test_edits_keep_the_document_valid(tmp_path: Path) -> None:
    document = load_document(dump_document(inventory_data()), tmp_path / "c.yaml")
    edit.add_node(document, new_node("Node03", "52-54-00-00-00-03", "192.168.0.13", None))
    added, updated = edit.import_nodes(
        document,
        [
            NodeEntry("node04", "52:54:00:00:00:04", "192.168.0.14"),
            NodeEntry("NODE01", "52:54:00:00:00:11", "192.168.0.21"),
        ],
    )
    assert (added, updated) == (1, 1)
    edit.set_node(
        document, "node02", node_changes(mac=None, ip="192.168.0.22", image=None, disk_layout=None)
    )
    edit.set_update_node(document, "Node04", None)
    text = dump_document(document)
    assert 'mac: "52:54:00:00:00:03"' in text  # quoted: YAML 1.1 reads a bare MAC as a number
    inv = parse_inventory(to_plain(load_document(text, tmp_path / "c.yaml")))
    assert [(n.name, str(n.ip)) for n in inv.nodes] == [
        ("node01", "192.168.0.21"),
        ("node02", "192.168.0.22"),
        ("node03", "192.168.0.13"),
        ("node04", "192.168.0.14"),
    ]
    assert inv.update_node.node == "node04"
    with pytest.raises(InvalidInputError, match="defined more than once"):
        edit.add_node(document, NodeEntry("node03", "52:54:00:00:00:33", "192.168.0.33"))
    edit.remove_node(document, "node04")
    assert document["update_node"]["node"] is None


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("eth0", True),
        ("eth1:0", True),  # an address label: the firewall names its device
        ("enp0s31f6", True),
        ("a" * 15, True),
        ("a" * 16, False),  # IFNAMSIZ is 16 with the NUL
        ("0:", False),  # found by the fuzz test: ip link refuses it, no device has it
        (":0", False),
        ("eth0:1:2", False),
        ("eth0/1", False),
        ("eth 0", False),
    ],
)
def test_interface_names_are_what_linux_accepts(name: str, valid: bool) -> None:
    from clustcontrol.inventory.types import check_ifname

    if valid:
        assert check_ifname(name) == name
    else:
        with pytest.raises(ValueError, match="is not a network interface name"):
            check_ifname(name)
