"""nodefiles.sh under busybox sh: the node's own files in a scratch root."""

from __future__ import annotations

import os
from pathlib import Path

from tests.node.conftest import module_sh

NODE = (
    "CC_BOOT_INTERFACE=eth0 CC_HOSTNAME=node01 CC_FQDN=node01.c CC_IP=10.0.0.11 "
    "CC_MASTER_IP=10.0.0.1 CC_MASTER_NAME=master CC_DOMAIN=c\n"
)


def sh(body: str, **env: str) -> tuple[int, str]:
    return module_sh(["disk", "nodefiles"], NODE + body, **env)


def test_write_interfaces_and_hosts(tmp_path: Path) -> None:
    (tmp_path / "etc/network").mkdir(parents=True)
    (tmp_path / "etc/network/interfaces").write_text(
        "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet static\n"
        "    address 192.168.0.253\n    netmask 255.255.255.0\n\niface eth1 inet dhcp\n"
        "    # comment kept\n"
    )
    (tmp_path / "etc/hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\tupdatenode\n")
    rc, out = sh(
        f"cc_write_interfaces '{tmp_path}' && cc_write_hosts '{tmp_path}'"
        f" && cc_write_hosts '{tmp_path}'"
    )
    assert rc == 0, out
    assert (tmp_path / "etc/network/interfaces").read_text() == (
        "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet manual\n"
        "\niface eth1 inet dhcp\n    # comment kept\n"
    )
    assert (tmp_path / "etc/hosts").read_text() == (
        "127.0.0.1\tlocalhost\n10.0.0.11\tnode01.c node01\t# clustcontrol-node\n"
        "10.0.0.1\tmaster.c master\t# clustcontrol-node\n"
    )


def test_machine_id_is_made_once_and_kept(tmp_path: Path) -> None:
    uuid = tmp_path / "uuid"
    uuid.write_text("0F0E0D0C-0B0A-0908-0706-050403020100\n")
    (tmp_path / "etc").mkdir()
    body = f"cc_write_machine_id '{tmp_path}' && cat '{tmp_path}/etc/machine-id'"
    rc, out = sh(body, CC_UUID_SOURCE=str(uuid))
    assert rc == 0, out
    assert out.endswith("0f0e0d0c0b0a09080706050403020100\n") and "new machine-id" in out
    # The standard's copy would be excluded; a lost one comes back from the state directory.
    (tmp_path / "etc/machine-id").unlink()
    uuid.write_text("ffffffff-ffff-ffff-ffff-ffffffffffff\n")
    rc, out = sh(body, CC_UUID_SOURCE=str(uuid))
    assert (rc, out) == (0, "0f0e0d0c0b0a09080706050403020100\n")


def test_dbus_machine_id_is_a_link_to_the_nodes(tmp_path: Path) -> None:
    """The standard's /var/lib/dbus/machine-id (a copy of the update node's id) is never the
    node's: it becomes a link to /etc/machine-id, as Debian's dbus makes it."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "var/lib/dbus").mkdir(parents=True)
    (tmp_path / "var/lib/dbus/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    uuid = tmp_path / "uuid"
    uuid.write_text("0f0e0d0c-0b0a-0908-0706-050403020100\n")
    for _ in range(2):
        rc, out = sh(f"cc_write_machine_id '{tmp_path}'", CC_UUID_SOURCE=str(uuid))
        assert rc == 0, out
        assert os.readlink(tmp_path / "var/lib/dbus/machine-id") == "/etc/machine-id"


def test_fstab_by_label_when_the_devices_are_absent(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    rc, out = sh(
        "CC_PARTITIONS='1:swap:swap::0 2:root:ext4:/:0 3:data:ext4:/scratch:1'\n"
        f"cc_write_fstab '{tmp_path}' /dev/nonexistent && cat '{tmp_path}/etc/fstab'"
    )
    assert rc == 0, out
    assert "LABEL=ccswap1\tnone\tswap\tsw\t0\t0\n" in out
    assert "LABEL=ccroot\t/\text4\terrors=remount-ro\t0\t1\n" in out
    assert "LABEL=ccdata3\t/scratch\text4\tdefaults,nofail\t0\t2\n" in out
    assert (tmp_path / "scratch").is_dir()


def test_an_unknown_node_keeps_the_hostname(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/hostname").write_text("updatenode\n")
    rc, out = sh(f"CC_HOSTNAME=''\ncc_write_hostname '{tmp_path}'")
    assert rc == 0 and "unknown node" in out
    assert (tmp_path / "etc/hostname").read_text() == "updatenode\n"


def test_fstab_keeps_the_standards_lines(tmp_path: Path) -> None:
    """The admin's NFS /home and tmpfs lines stay; the standard's root and swap lines, its line
    for a data partition's mount point and an earlier clustcontrol block do not."""
    (tmp_path / "etc").mkdir()
    std = tmp_path / "std-fstab"
    std.write_text(
        "# the standard's fstab\n"
        "#UUID=1234 / ext4 errors=remount-ro 0 1\n"
        "UUID=1234 / ext4 errors=remount-ro 0 1\n"
        "UUID=5678 none swap sw 0 0\n"
        "master:/home /home nfs defaults,_netdev 0 0\n"
        "  tmpfs   /var/tmp tmpfs size=1g 0 0   # comment after a line\n"
        "/dev/sdb1 /scratch ext4 defaults 0 2\n"
        "# BEGIN clustcontrol: this node's local disk\nUUID=9 / ext4 x 0 1\n# END clustcontrol\n"
    )
    rc, out = sh(
        "CC_PARTITIONS='1:swap:swap::0 2:root:ext4:/:0 3:data:ext4:/scratch:1'\n"
        f"cc_write_fstab '{tmp_path}' /dev/nonexistent '{std}' && cat '{tmp_path}/etc/fstab'"
    )
    assert rc == 0, out
    kept, block = out.split("# BEGIN clustcontrol: this node's local disk\n")
    assert kept.splitlines()[2:] == [
        "# the standard's fstab",
        "#UUID=1234 / ext4 errors=remount-ro 0 1",
        "master:/home /home nfs defaults,_netdev 0 0",
        "  tmpfs   /var/tmp tmpfs size=1g 0 0   # comment after a line",
    ]
    assert block.count("\n") == 5 and block.endswith("# END clustcontrol\n")
    assert "LABEL=ccroot\t/\t" in block and "UUID=9" not in out
