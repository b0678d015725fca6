"""Single functions of the library under busybox sh, without disks or mounts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.node.conftest import BUSYBOX, SFDISK_A, SFDISK_B, SOURCE_ENGINE, write_control


def sh(body: str, **env: str) -> tuple[int, str]:
    proc = subprocess.run(
        [BUSYBOX, "sh", "-c", f"set -u\n{SOURCE_ENGINE}cc_defaults\n{body}"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CC_LOG": "", **env},
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_parse_cmdline(tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_text(
        "root=/dev/sda2 ip=dhcp clustcontrol.server=192.168.0.1 clustcontrol.image=gpu "
        "clustcontrol.transport=rsync clustcontrol.sync=full clustcontrol.repartition=yes "
        "clustcontrol.retries=7 console=ttyS0,115200n8 BOOTIF=01-52-54-00-AB-cd-0F *\n"
    )
    rc, out = sh(
        f"cc_parse_cmdline '{cmdline}'\n"
        'echo "$CC_ARG_SERVER|$CC_ARG_IMAGE|$CC_ARG_TRANSPORT|$CC_ARG_SYNC|$CC_ARG_REPARTITION'
        '|$CC_ARG_RETRIES|$CC_ARG_BOOTIF|$CC_ARG_ROOT"'
    )
    assert rc == 0, out
    assert out.strip() == "192.168.0.1|gpu|rsync|full|yes|7|52:54:00:ab:cd:0f|/dev/sda2"


def test_parse_cmdline_defaults_and_bad_values(tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_text(
        "clustcontrol.sync=bogus clustcontrol.retries=x clustcontrol.transport=ftp\n"
    )
    rc, out = sh(
        f"cc_parse_cmdline '{cmdline}'\n"
        'echo "=$CC_ARG_SYNC|$CC_ARG_RETRIES|$CC_ARG_TRANSPORT|$CC_ARG_REPARTITION"'
    )
    assert rc == 0, out
    assert "=normal|||no\n" in out
    assert out.count("clustcontrol: WARNING:") == 3


@pytest.mark.parametrize(
    ("disk", "n", "dev"),
    [
        ("/dev/sda", "2", "/dev/sda2"),
        ("/dev/nvme0n1", "3", "/dev/nvme0n1p3"),
        ("/dev/loop7", "1", "/dev/loop7p1"),
        ("/dev/vdb", "1", "/dev/vdb1"),
    ],
)
def test_partition_device(disk: str, n: str, dev: str) -> None:
    assert sh(f"cc_partition_device {disk} {n}") == (0, dev + "\n")


def test_find_node(tmp_path: Path) -> None:
    ctl = tmp_path / "ctl"
    write_control(ctl)
    find = f"cc_find_node '{ctl}'"
    assert sh(f"{find} node02.testclust '' ''") == (0, "node02\n")
    assert sh(f"{find} '' 52:54:00:00:00:02 ''") == (0, "node02\n")
    assert sh(f"{find} unknown 52:54:00:00:00:01 ''") == (0, "node01\n")
    assert sh(f"{find} '' '' 192.168.0.12") == (0, "node02\n")
    assert sh(f"{find} nobody 52:54:00:00:00:99 10.0.0.1")[0] == 1


def test_load_params(tmp_path: Path) -> None:
    ctl = tmp_path / "ctl"
    write_control(ctl, transport="rsync", rsync_port=8873)
    rc, out = sh(
        f"cc_parse_cmdline /dev/null\ncc_load_params '{ctl}' node02\n"
        'echo "$CC_HOSTNAME|$CC_FQDN|$CC_IP|$CC_IMAGE|$CC_TRANSPORT|$CC_RSYNC_PORT|$CC_DISK'
        '|$CC_ROOT_DEVICE|$CC_RETRIES|$CC_PERSISTENT|$CC_PARTITIONS"',
        CC_DISK_OVERRIDE="/dev/vdb",
    )
    assert rc == 0, out
    assert out.strip() == (
        "node02|node02.testclust|192.168.0.12|default|rsync|8873|/dev/vdb|/dev/vdb2|1"
        "|/var/lib/keep /etc/local.conf|1:swap:swap::0 2:root:ext4:/:0 3:data:ext4:/scratch:1"
    )


def test_source_params_refuses_code(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_text("CC_X=1\nrm -rf /tmp/nothing\n")
    rc, out = sh(f"cc_source_params '{bad}'")
    assert rc == 1
    assert "not CC_KEY=value" in out


def test_layout_state_on_image_files(tmp_path: Path) -> None:
    """Blank / same / different, comparing via a scratch file (plain files, no loop device)."""
    script_a, script_b = tmp_path / "a", tmp_path / "b"
    script_a.write_text(SFDISK_A)
    script_b.write_text(SFDISK_B)
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(72 * 1024 * 1024)
    state = f"cc_layout_state '{disk}' '{{}}' '{tmp_path}'"
    assert sh(state.format(script_a)) == (0, "blank\n")
    subprocess.run(["sfdisk", "-q", str(disk)], input=SFDISK_A, text=True, check=True)
    assert sh(state.format(script_a)) == (0, "same\n")
    assert sh(state.format(script_b)) == (0, "different\n")
    assert not (tmp_path / "layout-scratch.img").exists()


def test_layout_state_gpt_ignores_random_uuids(tmp_path: Path) -> None:
    script = tmp_path / "gpt"
    script.write_text("label: gpt\n,8MiB,S\n,,L\n")
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(64 * 1024 * 1024)
    subprocess.run(["sfdisk", "-q", str(disk)], input=script.read_text(), text=True, check=True)
    assert sh(f"cc_layout_state '{disk}' '{script}' '{tmp_path}'") == (0, "same\n")


def test_backoff_grows_with_jitter_and_cap() -> None:
    rc, out = sh(
        "for i in 1 2 3 4 5 6; do cc_backoff_delay $i; done", CC_RETRY_BASE="2", CC_RETRY_MAX="20"
    )
    assert rc == 0, out
    delays = [int(x) for x in out.split()]
    for d, low in zip(delays, [2, 4, 8, 16, 20, 20], strict=True):
        assert low <= d <= low + low // 2


def test_retry_counts_attempts() -> None:
    _, out = sh(
        "n=0\nflaky() { n=$((n+1)); [ $n -ge 3 ]; }\n"
        'cc_retry 5 flaky flaky; echo "rc=$? n=$n"\n'
        'n=-10\ncc_retry 2 never flaky; echo "rc=$? n=$n"',
        CC_RETRY_BASE="0",
    )
    assert "rc=0 n=3" in out
    assert "rc=1 n=-7" in out
    assert "never: failed after 3 attempt(s)" in out


def test_write_interfaces_and_hosts(tmp_path: Path) -> None:
    (tmp_path / "etc/network").mkdir(parents=True)
    (tmp_path / "etc/network/interfaces").write_text(
        "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet static\n"
        "    address 192.168.0.253\n    netmask 255.255.255.0\n\niface eth1 inet dhcp\n"
        "    # comment kept\n"
    )
    (tmp_path / "etc/hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\tupdatenode\n")
    rc, out = sh(
        f"CC_BOOT_INTERFACE=eth0 CC_HOSTNAME=node01 CC_FQDN=node01.c CC_IP=10.0.0.11 "
        f"CC_MASTER_IP=10.0.0.1 CC_MASTER_NAME=master CC_DOMAIN=c\n"
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


def test_sync_age(tmp_path: Path) -> None:
    state = tmp_path / "var/lib/clustcontrol-node"
    state.mkdir(parents=True)
    (state / "last-sync").write_text("CC_SYNC_END='1000'\n")
    assert sh(f"cc_sync_age '{tmp_path}'", CC_NOW=str(1000 + 2 * 86400 + 3 * 3600)) == (
        0,
        "2 day(s) 3 hour(s) old\n",
    )
    assert sh(f"cc_has_complete_sync '{tmp_path}'")[0] == 0
    (state / "sync-in-progress").write_text("")
    assert sh(f"cc_has_complete_sync '{tmp_path}'")[0] == 1
