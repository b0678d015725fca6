"""What each renderer writes, asserted on the parts an administrator relies on."""

from __future__ import annotations

import re
from ipaddress import IPv4Network

import pytest

from clustcontrol.render import RenderContext, render_all
from clustcontrol.render.base import RenderedTree
from clustcontrol.render.dns import next_serial
from clustcontrol.render.firewall import RULESET, FirewallPort, firewall_ports
from clustcontrol.render.nfs import MOUNTD_PORT, NFSD_CONF
from clustcontrol.render.view import hex_ip, reverse_zone_name, reverse_zones
from tests.conftest import BASE, make_inventory

BOOT = "/var/lib/tftpboot/cluster_node"


def text(tree: RenderedTree, path: str) -> str:
    return tree[path].data().decode()


def render(**overrides: object) -> RenderedTree:
    return render_all(RenderContext(make_inventory(**overrides)))


def test_hex_ip_is_pxelinux_name() -> None:
    from ipaddress import IPv4Address

    assert hex_ip(IPv4Address("192.168.0.253")) == "C0A800FD"


@pytest.mark.parametrize(
    ("network", "zones"),
    [
        ("192.168.0.0/24", ["0.168.192.in-addr.arpa"]),
        ("10.1.0.0/16", ["1.10.in-addr.arpa"]),
        ("10.1.4.0/22", [f"{i}.1.10.in-addr.arpa" for i in range(4, 8)]),
        ("192.168.7.128/25", ["7.168.192.in-addr.arpa"]),
        ("10.0.0.0/8", ["10.in-addr.arpa"]),
    ],
)
def test_reverse_zones_are_octet_aligned(network: str, zones: list[str]) -> None:
    assert [reverse_zone_name(z) for z in reverse_zones(IPv4Network(network))] == zones


def test_forward_and_reverse_zone_records() -> None:
    tree = render(update_node={"node": "node01"})
    forward = text(tree, "/etc/bind/clustcontrol/db.rostclust")
    assert "master\tIN\tA\t192.168.0.1\n" in forward
    assert "updatenode\tIN\tA\t192.168.0.253\n" in forward
    # The update node keeps its own name and address in DNS as well.
    assert "node01\tIN\tA\t192.168.0.11\n" in forward
    reverse = text(tree, "/etc/bind/clustcontrol/db.0.168.192.in-addr.arpa")
    assert "11\tIN\tPTR\tnode01.rostclust.\n" in reverse
    assert "253\tIN\tPTR\tupdatenode.rostclust.\n" in reverse
    snippet = text(tree, "/etc/bind/named.conf.clustcontrol")
    assert 'zone "rostclust"' in snippet and 'zone "0.168.192.in-addr.arpa"' in snippet


def test_each_reverse_zone_has_exactly_its_own_records() -> None:
    nodes = [
        {"name": f"n{i}", "mac": f"52:54:00:00:00:{i:02x}", "ip": f"10.1.{4 + i % 4}.{10 + i}"}
        for i in range(8)
    ]
    cluster = {**BASE["cluster"], "network": "10.1.4.0/22", "master": {"ip": "10.1.4.1"}}
    tree = render(cluster=cluster, nodes=nodes, update_node={"node": "n0"})
    ptr = re.compile(r"^(\S+)\tIN\tPTR\t(\S+)\.rostclust\.$", re.MULTILINE)
    for third in range(4, 8):
        zone = text(tree, f"/etc/bind/clustcontrol/db.{third}.1.10.in-addr.arpa")
        expected = [(str(10 + i), f"n{i}") for i in range(8) if 4 + i % 4 == third]
        if third == 4:
            expected.insert(0, ("1", "master"))
        if third == 7:
            expected.insert(0, ("253", "updatenode"))  # 10.1.7.253, the /22's update address
        assert sorted(ptr.findall(zone)) == sorted(expected), zone


def test_zone_serial_changes_only_with_content() -> None:
    path = "/etc/bind/clustcontrol/db.rostclust"
    first = render_all(RenderContext(make_inventory())).outputs[path].data()
    same = render_all(RenderContext(make_inventory(), previous=lambda p: first)).outputs[path]
    assert same.data() == first
    more = make_inventory(
        nodes=[*BASE["nodes"], {"name": "n3", "mac": "52:54:00:00:00:03", "ip": "192.168.0.13"}]
    )
    bumped = render_all(RenderContext(more, previous=lambda p: first)).outputs[path].data().decode()
    assert "\t\t2\t; serial" in bumped
    assert next_serial(b"\t\t41\t; serial\n", "abc") == 42  # hand-written zone: no hash -> bump


def test_dhcpd_moves_update_node_mac_to_update_address() -> None:
    plain = text(render(), "/etc/dhcp/dhcpd.conf")
    assert "host node01 { hardware ethernet 52:54:00:00:00:01; fixed-address 192.168.0.11;" in plain
    assert "host updatenode" not in plain
    assert 'filename "cluster_node/pxelinux.0";' in plain
    assert "next-server 192.168.0.1;" in plain
    conf = text(render(update_node={"node": "node01"}), "/etc/dhcp/dhcpd.conf")
    assert "host node01 " not in conf
    assert "hardware ethernet 52:54:00:00:00:01;\n    fixed-address 192.168.0.253;" in conf


def test_kea_is_json_with_reservations() -> None:
    import json

    raw = text(render(update_node={"node": "node02"}), "/etc/kea/kea-dhcp4.conf")
    config = json.loads(raw.split("\n", 1)[1])  # first line is Kea's // comment
    subnet = config["Dhcp4"]["subnet4"][0]
    assert subnet["boot-file-name"] == "cluster_node/pxelinux.0"
    assert {r["hw-address"]: r["ip-address"] for r in subnet["reservations"]} == {
        "52:54:00:00:00:02": "192.168.0.253",
        "52:54:00:00:00:01": "192.168.0.11",
    }


def test_dnsmasq_hosts() -> None:
    conf = text(render(), "/etc/dnsmasq.d/clustcontrol.conf")
    assert "dhcp-host=52:54:00:00:00:01,192.168.0.11,node01.rostclust\n" in conf
    assert (
        "dhcp-boot=tag:!efi-x86_64,tag:!boot-uefi,cluster_node/pxelinux.0,master,192.168.0.1\n"
        in conf
    )
    assert "port=0\n" in conf


def test_every_dhcp_server_picks_the_boot_file_by_architecture_and_node() -> None:
    """Option 93 values 7 and 9 select the shim in each server; a node's boot: bios|uefi is
    written into its own entry alone (the real exchanges: tests/daemons/test_dhcp.py)."""
    import json

    nodes = [
        {"name": "node01", "mac": "52:54:00:00:00:01", "ip": "192.168.0.11", "boot": "uefi"},
        {"name": "node02", "mac": "52:54:00:00:00:02", "ip": "192.168.0.12", "boot": "bios"},
        {"name": "node03", "mac": "52:54:00:00:00:03", "ip": "192.168.0.13"},
    ]
    tree = render(nodes=nodes)
    isc = text(tree, "/etc/dhcp/dhcpd.conf")
    assert "if option pxe-system-type = 00:07 or option pxe-system-type = 00:09 {" in isc
    assert 'option host-name "node01"; filename "cluster_node/shimx64.efi"; }' in isc
    assert 'option host-name "node02"; filename "cluster_node/pxelinux.0"; }' in isc
    assert 'option host-name "node03"; }' in isc
    kea = json.loads(text(tree, "/etc/kea/kea-dhcp4.conf").split("\n", 1)[1])["Dhcp4"]
    assert kea["client-classes"] == [
        {
            "name": "uefi-x64",
            "test": "substring(option[93].hex,0,2) == 0x0007"
            " or substring(option[93].hex,0,2) == 0x0009",
            "boot-file-name": "cluster_node/shimx64.efi",
        }
    ]
    files = {r["hostname"]: r.get("boot-file-name") for r in kea["subnet4"][0]["reservations"]}
    assert files == {
        "node01": "cluster_node/shimx64.efi",
        "node02": "cluster_node/pxelinux.0",
        "node03": None,
    }
    dnsmasq = text(tree, "/etc/dnsmasq.d/clustcontrol.conf")
    assert "dhcp-match=set:efi-x86_64,option:client-arch,7\n" in dnsmasq
    assert "dhcp-match=set:efi-x86_64,option:client-arch,9\n" in dnsmasq
    assert "dhcp-host=52:54:00:00:00:01,set:boot-uefi,192.168.0.11,node01.rostclust\n" in dnsmasq
    assert "dhcp-host=52:54:00:00:00:02,set:boot-bios,192.168.0.12,node02.rostclust\n" in dnsmasq
    assert "dhcp-host=52:54:00:00:00:03,192.168.0.13,node03.rostclust\n" in dnsmasq


@pytest.mark.parametrize("boot", ["", "UEFI", "efi", 1, None])
def test_boot_takes_auto_bios_or_uefi_alone(boot: object) -> None:
    from clustcontrol.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match=r"nodes\.n1\.boot"):
        make_inventory(nodes=[{"name": "n1", "mac": "52:54:00:00:00:01", "ip": "192.168.0.11",
                               "boot": boot}])  # fmt: skip


def test_pxelinux_files() -> None:
    tree = render(
        images={
            "default": {"root": "/srv/nfs4/clusternoderoot"},
            "gpu": {"root": "/srv/nfs4/gpu", "kernel_args": ["quiet"], "transport": "rsync"},
        },
        nodes=[
            *BASE["nodes"],
            {"name": "gpu01", "mac": "52:54:00:00:01:01", "ip": "192.168.0.21", "image": "gpu"},
        ],
        update_node={"node": "node01"},
    )
    common = text(tree, f"{BOOT}/pxelinux-common")
    assert "LABEL linuxnfsroot\n" in common and "LABEL linux\n" in common
    assert "boot=nfs nfsroot=192.168.0.1:/srv/nfs4/clusternoderoot,vers=3,tcp" in common
    assert "clustcontrol.image=gpu clustcontrol.transport=rsync quiet" in common
    assert "DEFAULT linux\n" in text(tree, f"{BOOT}/pxelinux.cfg/default")
    assert "DEFAULT linuxnfsroot\n" in text(tree, f"{BOOT}/pxelinux.cfg/C0A800FD")
    # gpu01 (192.168.0.21 = C0A80015) has its own image, hence its own file.
    own = text(tree, f"{BOOT}/pxelinux.cfg/C0A80015")
    assert "DEFAULT linux-gpu01" in own and "KERNEL gpu/vmlinuz" in own
    # Regular nodes of the default image need no file of their own.
    assert f"{BOOT}/pxelinux.cfg/C0A8000B" not in tree.outputs
    assert tree[f"{BOOT}/pxelinux.0"].data()[:4] != b""


def test_exports_rw_only_to_update_address() -> None:
    """Nodes read the generation roots (read-only, the cluster); the working tree goes to the
    update node's address alone, read-write, and only while an update node is set."""
    exports = text(render(update_node={"node": "node02"}), "/etc/exports.d/clustcontrol.exports")
    lines = [x for x in exports.splitlines() if x.startswith("/")]
    ro = (
        "/var/lib/clustcontrol/images/default/roots "
        "192.168.0.0/24(ro,sync,subtree_check,no_root_squash,crossmnt)"
    )
    assert lines == [
        ro,
        "/srv/nfs4/clusternoderoot 192.168.0.253(rw,sync,subtree_check,no_root_squash,crossmnt)",
        "/var/lib/clustcontrol/images/default/secrets \\",
    ]
    # No update node (init's default): no read-write export at all.
    plain = text(render(), "/etc/exports.d/clustcontrol.exports")
    assert [x for x in plain.splitlines() if x.startswith("/") and "/secrets" not in x] == [ro]
    assert "rw" not in plain and "192.168.0.253" not in plain
    # The secrets: one client a line, the image's nodes alone, secure (a privileged port).
    secrets = exports.split("/var/lib/clustcontrol/images/default/secrets \\\n", 1)[1]
    assert secrets == (
        "    192.168.0.11(ro,secure,sync,subtree_check,no_root_squash) \\\n"
        "    192.168.0.12(ro,secure,sync,subtree_check,no_root_squash)\n"
    )
    fstab = text(render(), "/etc/fstab")
    assert fstab == (
        "/etc/clustcontrol /var/lib/clustcontrol/images/default/roots/etc/clustcontrol"
        " none bind,ro 0 0\n"
        "/etc/clustcontrol /srv/nfs4/clusternoderoot/etc/clustcontrol none bind,ro 0 0\n"
    )


def test_control_directory_is_shell_sourceable(tmp_path: object) -> None:
    import subprocess

    tree = render()
    node = text(tree, "/etc/clustcontrol/nodes/node01")
    layout = text(tree, "/etc/clustcontrol/layouts/default")
    script = node + layout + text(tree, "/etc/clustcontrol/default")
    script += 'printf "%s|%s|%s|%s\\n" "$CC_HOSTNAME" "$CC_IP" "$CC_DISK_DEVICE" "$CC_PARTITIONS"\n'
    result = subprocess.run(["sh", "-eu"], input=script, capture_output=True, text=True, check=True)
    assert result.stdout == (
        "node01|192.168.0.11|/dev/sda|1:swap:swap::0 2:root:ext4:/:0 3:data:ext4:/scratch:1\n"
    )
    assert "52:54:00:00:00:01 node01\n" in text(tree, "/etc/clustcontrol/nodes.by-mac")
    assert text(tree, "/etc/clustcontrol/sfdisk-default").startswith("label: dos\n")


def test_rsyncd_modules() -> None:
    conf = text(render(), "/etc/rsyncd.conf")
    assert "[default]\n    comment = clustcontrol generations of image default\n" in conf
    assert "    path = /var/lib/clustcontrol/images/default/roots\n    read only = yes\n" in conf
    assert "clusternoderoot" not in conf  # never the working tree
    assert "    hosts allow = 192.168.0.0/24\n" in conf  # the cluster alone, not 127.0.0.1
    # The contract's secrets are refused by the daemon too, at any generation.
    assert "    exclude = /*/etc/shadow /*/etc/shadow- /*/etc/gshadow " in conf
    assert "/*/etc/munge/munge.key /*/etc/security/opasswd " in conf
    assert "/*/var/cache/debconf/passwords.dat /*/var/backups/shadow.bak " in conf
    assert "/*/var/lib/systemd/credential.secret /*/var/lib/systemd/random-seed " in conf
    assert " /*/etc/wireguard\n" in conf


def test_render_is_deterministic() -> None:
    a = {o.path: o.data() for o in render()}
    b = {o.path: o.data() for o in render()}
    assert a == b


def test_kea_check_copy_listens_everywhere_when_interface_is_absent() -> None:
    from clustcontrol.verify import kea_checkable

    tree = render(cluster={**BASE["cluster"], "dhcp_interface": "clusternet0"})
    raw = text(tree, "/etc/kea/kea-dhcp4.conf")
    checked, missing = kea_checkable(raw, {"lo", "eth0"})
    assert missing == ["clusternet0"] and '"*"' in checked
    assert kea_checkable(raw, {"lo", "clusternet0"}) == (raw, [])


def test_ganesha_exports() -> None:
    tree = render(
        cluster={**BASE["cluster"], "nfs_server": "ganesha"},
        images={"default": {"root": "/srv/a"}, "gpu": {"root": "/srv/b"}},
        update_node={"node": "node01"},
    )
    conf = text(tree, "/etc/ganesha/ganesha.conf")
    blocks = conf.split("\nEXPORT {")[1:]
    paths = [re.search(r'Path = "([^"]+)"', b).group(1) for b in blocks]  # type: ignore[union-attr]
    roots = "/var/lib/clustcontrol/images/{}/roots"
    assert paths == [
        roots.format("default"),
        roots.format("default") + "/etc/clustcontrol",
        roots.format("gpu"),
        roots.format("gpu") + "/etc/clustcontrol",
        "/srv/a",
        "/srv/a/etc/clustcontrol",
        "/var/lib/clustcontrol/images/default/secrets",  # gpu has no nodes: no secrets export
    ]
    # The generation roots to the cluster, read-only; the update image's working tree to the
    # update node's address alone (read-write, its control directory read-only).
    cluster = [("Clients = 192.168.0.0/24;" in b) for b in blocks]
    assert cluster == [True, True, True, True, False, False, False]
    assert ["Clients = 192.168.0.253;" in b for b in blocks] == [False] * 4 + [True, True, False]
    assert "Access_Type = RW;" in blocks[4] and "Access_Type = RW;" not in blocks[5]
    assert all("Attr_Expiration_Time = 0;" in b for b in blocks)
    assert "Use_Getattr_Directory_Invalidation = true;" in conf
    # No update node: the generation roots and the secrets alone, nothing read-write.
    plain = text(
        render(
            cluster={**BASE["cluster"], "nfs_server": "ganesha"},
            images={"default": {"root": "/srv/a"}, "gpu": {"root": "/srv/b"}},
        ),
        "/etc/ganesha/ganesha.conf",
    )
    assert plain.count("\nEXPORT {") == 5
    assert "/srv/a" not in plain and "Access_Type = RW;" not in plain


def test_secrets_exports_name_each_image_s_nodes_alone() -> None:
    """Each image's secrets go to the addresses of its own nodes (sorted), nowhere else; an
    image without nodes gets no secrets export at all (an exports line without a client is
    open to everyone); ganesha lists at most CLIENTS_PER_BLOCK addresses per CLIENT block."""
    from clustcontrol.render.nfs import CLIENTS_PER_BLOCK

    many = [
        {"name": f"n{i:03d}", "mac": f"52:54:00:00:01:{i:02x}", "ip": f"192.168.0.{100 + i}"}
        for i in range(CLIENTS_PER_BLOCK + 6)
    ]
    nodes = [
        {"name": "gpu01", "mac": "52:54:00:00:00:21", "ip": "192.168.0.21", "image": "gpu"},
        *many,
    ]
    images = {"default": {"root": "/srv/a"}, "gpu": {"root": "/srv/b"}, "spare": {"root": "/srv/c"}}
    cluster = {**BASE["cluster"], "nfs_server": "ganesha"}
    tree = render(cluster=cluster, images=images, nodes=nodes)
    exports = text(tree, "/etc/exports.d/clustcontrol.exports")
    logical = {  # exports(5): a trailing backslash continues a line
        line.split()[0]: line for line in exports.replace("\\\n", "").splitlines() if line
    }
    default, gpu = (
        logical[f"/var/lib/clustcontrol/images/{n}/secrets"] for n in ("default", "gpu")
    )
    assert re.findall(r"192\.168\.0\.\d+", gpu) == ["192.168.0.21"]
    assert re.findall(r"192\.168\.0\.\d+", default) == [str(n["ip"]) for n in many]
    assert "images/spare/secrets" not in exports
    conf = text(tree, "/etc/ganesha/ganesha.conf")
    blocks = conf.split("\nEXPORT {")[1:]
    secret_blocks = [b for b in blocks if '/secrets"' in b]
    assert len(secret_blocks) == 2 and "images/spare/secrets" not in conf
    clients = [re.findall(r"Clients = ([^;]+);", b) for b in secret_blocks]
    assert clients[1] == ["192.168.0.21"]
    assert [len(c.split(", ")) for c in clients[0]] == [CLIENTS_PER_BLOCK, 6]
    assert all("Access_Type = RO;" in b and "RW" not in b for b in secret_blocks)
    # Every export (roots, control directory, secrets) wants a privileged source port.
    assert all("PrivilegedPort = true;" in b for b in blocks)


@pytest.mark.parametrize(
    ("console", "serial"),
    [
        ("ttyS0,115200n8", "SERIAL 0 115200"),
        ("ttyS1,9600e7", "SERIAL 1 9600"),
        ("ttyS2", "SERIAL 2 115200"),
    ],
)
def test_pxelinux_serial_line_is_port_and_baud_rate(console: str, serial: str) -> None:
    common = text(
        render(cluster={**BASE["cluster"], "serial_console": console}), f"{BOOT}/pxelinux-common"
    )
    assert f"\n{serial}\nCONSOLE 0\n" in common
    assert f" console={console}\n" in common


def _rules(tree: RenderedTree) -> list[str]:
    """The rules of the firewall's input chain, as written."""
    chain = text(tree, RULESET).split("chain input {\n", 1)[1].split("\n\t}", 1)[0]
    return [line.strip() for line in chain.splitlines()[1:]]


def test_firewall_ruleset_drops_the_boot_ports_from_outside_the_cluster_only() -> None:
    rsync = {"default": {"root": "/srv/a", "transport": "rsync"}}
    tree = render(cluster={**BASE["cluster"], "rsync_port": 8873}, images=rsync)
    ruleset = text(tree, RULESET)
    # Idempotent to load: the table is created if absent, deleted, created anew.
    commands = [line for line in ruleset.splitlines() if line and not line[0].isspace()]
    assert [c for c in commands if not c.startswith("#")][:3] == [
        "table inet clustcontrol",
        "delete table inet clustcontrol",
        "table inet clustcontrol {",
    ]
    assert "policy accept;" in ruleset and " accept\n" not in ruleset  # never accepts a packet
    assert _rules(tree) == [
        'iif "lo" return',
        "ct state established,related return",
        "ip saddr 192.168.0.0/24 return",
        'ip saddr 0.0.0.0 udp dport 67 return comment "DHCP clients without an address yet"',
        'meta l4proto { tcp, udp } th dport 53 counter drop comment "DNS"',
        'udp dport 67 counter drop comment "DHCP"',
        'udp dport 69 counter drop comment "TFTP"',
        'meta l4proto { tcp, udp } th dport 111 counter drop comment "rpcbind"',
        'meta l4proto { tcp, udp } th dport 2049 counter drop comment "NFS"',
        'tcp dport 8873 counter drop comment "rsync daemon"',
        'meta l4proto { tcp, udp } th dport 20048 counter drop comment "NFS mountd"',
    ]


def test_firewall_names_the_cluster_interface_and_only_installed_ports() -> None:
    tree = render(cluster={**BASE["cluster"], "dhcp_interface": "eth1:0", "rsync_port": 53})
    rules = _rules(tree)
    # The device, not the alias label; the rsync daemon is not installed (no image uses it).
    assert rules[2:4] == [
        'iifname "eth1" ip saddr 192.168.0.0/24 return',
        'iifname "eth1" ip saddr 0.0.0.0 udp dport 67 return comment '
        '"DHCP clients without an address yet"',
    ]
    assert not any("rsync" in rule for rule in rules)
    shared = make_inventory(cluster={**BASE["cluster"], "rsync_port": 53, "transport": "rsync"})
    assert firewall_ports(shared, rsync=True)[0] == FirewallPort(
        53, ("tcp", "udp"), "DNS, rsync daemon"
    )


def test_mountd_is_pinned_for_both_nfs_servers() -> None:
    tree = render()
    assert text(tree, NFSD_CONF).splitlines()[-2:] == ["[mountd]", f"port = {MOUNTD_PORT}"]
    assert f"MNT_Port = {MOUNTD_PORT};" in text(tree, "/etc/ganesha/ganesha.conf")


LISTENING = {
    "/etc/default/tftpd-hpa": ('TFTP_ADDRESS="192.168.0.1:69"\n', 'TFTP_ADDRESS="0.0.0.0:69"\n'),
    "/etc/rsyncd.conf": ("\naddress = 192.168.0.1\n", None),
    "/etc/ganesha/ganesha.conf": ("NFS_CORE_PARAM {\n    Bind_addr = ::ffff:192.168.0.1;\n", None),
    "/etc/nfs.conf.d/clustcontrol.conf": ("[nfsd]\nhost = 192.168.0.1\n", None),
    "/etc/default/isc-dhcp-server": ('INTERFACESv4="clusternet0"\n', None),
    "/etc/kea/kea-dhcp4.conf": ('"interfaces": [ "clusternet0" ]', '"interfaces": [ "*" ]'),
    "/etc/dnsmasq.d/clustcontrol.conf": ("\ninterface=clusternet0\nbind-interfaces\n", None),
    "/etc/bind/named.conf.options": ("listen-on { 127.0.0.1; 192.168.0.1; };",) * 2,
}


@pytest.mark.parametrize(
    "master",
    [
        {"ip": "192.168.0.1", "interface": "clusternet0"},
        {"ip": "192.168.0.1", "interface": "clusternet0", "dhcp_interface": "clusternet0"},
        {"ip": "192.168.0.1", "dhcp_interface": "clusternet0"},  # the older name alone
    ],
    ids=["interface", "both names", "dhcp_interface"],
)
def test_daemons_listen_on_the_cluster_interface_only_when_it_is_set(
    master: dict[str, str],
) -> None:
    older = master.pop("dhcp_interface", None)
    section = {**BASE["cluster"], "master": master}
    if older:
        section["dhcp_interface"] = older
    bound, everywhere = render(cluster=section), render()
    for path, (when_set, when_unset) in LISTENING.items():
        assert when_set in text(bound, path), path
        if when_unset is None:
            assert path not in everywhere.outputs or when_set not in text(everywhere, path), path
        else:
            assert when_unset in text(everywhere, path), path
    assert "Bind_addr" not in text(everywhere, "/etc/ganesha/ganesha.conf")
    assert "\naddress = " not in text(everywhere, "/etc/rsyncd.conf")
    assert "[nfsd]" not in text(everywhere, "/etc/nfs.conf.d/clustcontrol.conf")  # mountd only


def test_the_two_names_of_the_interface_must_agree() -> None:
    from clustcontrol.errors import InvalidInputError

    section = {
        **BASE["cluster"],
        "master": {"ip": "192.168.0.1", "interface": "eth1"},
        "dhcp_interface": "eth2",
    }
    with pytest.raises(InvalidInputError) as raised:
        make_inventory(cluster=section)
    assert raised.value.problems == [
        "cluster.dhcp_interface: 'eth2' differs from cluster.master.interface 'eth1' "
        "(dhcp_interface is its older name: keep one)"
    ]


def test_every_mac_of_a_node_names_it_in_nodes_by_mac() -> None:
    nodes = [{**BASE["nodes"][0], "mac": ["52:54:00:00:00:01", "52:54:00:00:00:a1"]}]
    tree = render(nodes=nodes)
    by_mac = text(tree, "/etc/clustcontrol/nodes.by-mac")
    assert "52:54:00:00:00:01 node01\n52:54:00:00:00:a1 node01\n" in by_mac
    dhcpd = text(tree, "/etc/dhcp/dhcpd.conf")
    assert "host node01 { hardware ethernet 52:54:00:00:00:01;" in dhcpd
    assert "host node01-mac2 { hardware ethernet 52:54:00:00:00:a1;" in dhcpd
