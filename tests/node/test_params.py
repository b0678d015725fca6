"""params.sh under busybox sh: the kernel command line, identity, the control directory."""

from __future__ import annotations

from pathlib import Path

from tests.node.conftest import module_sh, write_control


def sh(body: str, **env: str) -> tuple[int, str]:
    return module_sh(["params"], body, **env)


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
        '|$CC_ARG_RETRIES|$CC_ARG_BOOTIF|$CC_ARG_ROOT|$CC_ARG_CONTROL"'
    )
    assert rc == 0, out
    assert out.strip() == (
        "192.168.0.1|gpu|rsync|full|yes|7|52:54:00:ab:cd:0f|/dev/sda2|/etc/clustcontrol"
    )


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
    show = (
        'echo "$CC_HOSTNAME|$CC_FQDN|$CC_IP|$CC_IMAGE|$CC_TRANSPORT|$CC_RSYNC_PORT|$CC_DISK'
        '|$CC_ROOT_DEVICE|$CC_ROOT_FS|$CC_RETRIES|$CC_PERSISTENT|$CC_PARTITIONS"'
    )
    rc, out = sh(
        f"cc_parse_cmdline /dev/null\ncc_load_params '{ctl}' node02\n{show}",
        CC_DISK_OVERRIDE="/dev/vdb",
    )
    assert rc == 0, out
    assert out.strip() == (
        "node02|node02.testclust|192.168.0.12|default|rsync|8873|/dev/vdb|/dev/vdb2|ext4|1"
        "|/var/lib/keep /etc/local.conf|1:swap:swap::0 2:root:ext4:/:0 3:data:ext4:/scratch:1"
    )
    # No override: the layout's disk, the root partition named by the contract's rule.
    rc, out = sh(f"cc_parse_cmdline /dev/null\ncc_load_params '{ctl}' ''\n{show}")
    assert rc == 0, out
    assert out.strip().startswith("|||default|rsync|8873|/dev/sda|/dev/sda2|ext4|1|")


def test_a_layout_without_root_is_refused(tmp_path: Path) -> None:
    ctl = tmp_path / "ctl"
    write_control(ctl)
    layout = ctl / "layouts/default"
    layout.write_text(layout.read_text().replace("2:root:ext4:/:0", "2:data:ext4:/x:0"))
    rc, out = sh(f"cc_parse_cmdline /dev/null\ncc_load_params '{ctl}' node01")
    assert rc == 1
    assert "layout default has no root partition" in out


def test_early_params_from_the_baked_control_directory(tmp_path: Path) -> None:
    """Before the control directory arrives: switches win, then the copy in the initramfs, then
    the contract's defaults."""
    ctl = tmp_path / "ctl"
    write_control(ctl, transport="rsync", rsync_port=8873)
    show = 'echo "$CC_SERVER|$CC_IMAGE|$CC_TRANSPORT|$CC_RSYNC_PORT|$CC_RETRIES|$CC_CONTROL_DIR"'
    assert sh(
        f"cc_parse_cmdline /dev/null\ncc_early_params\n{show}", CC_BAKED_CONTROL=str(ctl)
    ) == (
        0,
        "192.168.0.1|default|rsync|8873|1|/etc/clustcontrol\n",
    )
    assert sh(
        f"cc_parse_cmdline /dev/null\ncc_early_params\n{show}", CC_BAKED_CONTROL="/nonexistent"
    ) == (0, "|default|nfs|873|5|/etc/clustcontrol\n")
    cmdline = tmp_path / "cmdline"
    cmdline.write_text(
        "clustcontrol.server=10.0.0.1 clustcontrol.transport=nfs clustcontrol.retries=0 "
        "clustcontrol.control=/srv/ctl\n"
    )
    assert sh(
        f"cc_parse_cmdline '{cmdline}'\ncc_early_params\n{show}", CC_BAKED_CONTROL=str(ctl)
    ) == (0, "10.0.0.1|default|nfs|8873|0|/srv/ctl\n")


def test_source_params_refuses_code(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_text("CC_X=1\nrm -rf /tmp/nothing\n")
    rc, out = sh(f"cc_source_params '{bad}'")
    assert rc == 1
    assert "not CC_KEY=value" in out


def test_identity_from_ipconfig_and_bootif(tmp_path: Path) -> None:
    (tmp_path / "net-eth0.conf").write_text(
        "DEVICE='lo'\nIPV4ADDR='192.168.0.11'\nHOSTNAME='node01'\n"
    )
    rc, out = sh(
        "CC_ARG_BOOTIF=''\ncc_identity\n"
        'echo "$CC_NODE_HOSTNAME|$CC_NODE_IP|$CC_NODE_MAC"\n'
        "CC_NODE_MAC='' CC_ARG_BOOTIF=52:54:00:00:00:09\ncc_identity\n"
        'echo "$CC_NODE_MAC"',
        CC_NET_CONF_DIR=str(tmp_path),
    )
    assert rc == 0, out
    assert out == "node01|192.168.0.11|00:00:00:00:00:00\n52:54:00:00:00:09\n"


def test_path_switches_accept_what_the_master_accepts(tmp_path: Path) -> None:
    """The node's path check uses the master's characters (contract.PATH_CHARACTERS)."""
    cmdline = tmp_path / "cmdline"
    cmdline.write_text(
        "clustcontrol.control=/etc/clustcontrol@v2 clustcontrol.imageroot=/srv/nfs4/root+x_1.2\n"
    )
    rc, out = sh(f"cc_parse_cmdline '{cmdline}'\necho \"$CC_ARG_CONTROL|$CC_ARG_IMAGEROOT\"")
    assert (rc, out) == (0, "/etc/clustcontrol@v2|/srv/nfs4/root+x_1.2\n")
    cmdline.write_text("clustcontrol.control= clustcontrol.imageroot=\n")
    rc, out = sh(f"cc_parse_cmdline '{cmdline}'\necho \"$CC_ARG_CONTROL|$CC_ARG_IMAGEROOT\"")
    assert (rc, out) == (0, "/etc/clustcontrol|\n")  # empty: the default, no warning


def test_a_bad_bootif_is_ignored(tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    for bad in ("01-.*", "01-52-54-00-00-00", "52:54:00:00:00:01", "01-52-54-00-00-00-0g"):
        cmdline.write_text(f"BOOTIF={bad}\n")
        rc, out = sh(f"cc_parse_cmdline '{cmdline}'\necho \"=$CC_ARG_BOOTIF\"")
        assert rc == 0 and out.startswith("=\n") and f"bad BOOTIF={bad}; ignored" in out, out
