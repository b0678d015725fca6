"""The CLI contract that scripts outside the repo rely on: verbs, exit codes, nothing written
on invalid input, comments kept in the inventory."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest

from clustcontrol.cli import cli as clustcontrol_cli
from clustcontrol.inventory.store import load_inventory
from tests.conftest import Cli


def test_init_writes_commented_inventory(initialized: Cli) -> None:
    text = initialized.config.read_text()
    assert "# clustcontrol inventory" in text
    assert "root: /srv/nfs4/clusternoderoot" in text
    assert initialized("validate").code == 0
    # A new inventory has the master firewall on (one without the key has it off).
    assert load_inventory(initialized.config).cluster.firewall is True


def test_init_refuses_to_overwrite(initialized: Cli) -> None:
    result = initialized(
        "init", "--domain", "x", "--network", "10.0.0.0/24", "--master-ip", "10.0.0.1"
    )
    assert result.code == 1 and "already exists" in result.err


def test_init_rejects_bad_values_and_writes_nothing(cli: Cli) -> None:
    result = cli(
        "init",
        "--domain",
        "rost;clust",
        "--network",
        "192.168.0.0/24",
        "--master-ip",
        "192.168.0.300",
    )
    assert result.code == 2
    assert "clustcontrol: error: domain: 'rost;clust' is not a domain name" in result.err
    assert "master_ip: '192.168.0.300' is not an IPv4 address" in result.err
    assert not cli.config.exists()


def test_node_add_list_set_remove(initialized: Cli) -> None:
    cli = initialized
    assert (
        cli("node", "add", "node01", "--mac", "52:54:00:AA:00:01", "--ip", "192.168.0.11").code == 0
    )
    assert (
        cli("node", "add", "node02", "--mac", "52-54-00-aa-00-02", "--ip", "192.168.0.12").code == 0
    )
    rows = json.loads(cli("node", "list", "--output", "json").out)
    assert [(r["name"], r["mac"], r["ip"]) for r in rows] == [
        ("node01", "52:54:00:aa:00:01", "192.168.0.11"),
        ("node02", "52:54:00:aa:00:02", "192.168.0.12"),
    ]
    assert cli("node", "set", "node02", "--ip", "192.168.0.22").code == 0
    assert json.loads(cli("node", "list", "--output", "json").out)[1]["ip"] == "192.168.0.22"
    assert cli("node", "remove", "node01").code == 0
    assert [r["name"] for r in json.loads(cli("node", "list", "--output", "json").out)] == [
        "node02"
    ]
    table = cli("node", "list").out
    assert "node02" in table and "52:54:00:aa:00:02" in table
    # Comments of the starter inventory survive the edits.
    assert "# The update node boots its image read-write" in cli.config.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["node", "add", "node09", "--mac", "52:54:00:00:00:09", "--ip", "192.168.0.12"],
            "duplicates the ip of node 'node02'",
        ),
        (
            ["node", "add", "node09", "--mac", "52:54:00:00:00:02", "--ip", "192.168.0.19"],
            "duplicates the mac of node 'node02'",
        ),
        (
            ["node", "add", "node03", "--mac", "52:54:00:00:00:03", "--ip", "10.0.0.3"],
            "is outside the cluster network",
        ),
        (
            ["node", "add", "node03", "--mac", "52:54:00:00:00:03", "--ip", "192.168.0.1"],
            "is the master's address",
        ),
        (
            [
                "node",
                "add",
                "node03",
                "--mac",
                "52:54:00:00:00:03",
                "--ip",
                "192.168.0.13",
                "--image",
                "gpu",
            ],
            "'gpu' is not a defined image",
        ),
        (
            ["node", "add", "node03;reboot", "--mac", "52:54:00:00:00:03", "--ip", "192.168.0.13"],
            "is not a host name",
        ),
        (
            ["node", "add", "node03", "--mac", "52:54:00:00:00:0g", "--ip", "192.168.0.13"],
            "is not a MAC address",
        ),
        (["node", "set", "node77", "--ip", "192.168.0.77"], "nodes.node77: no such node"),
        (["image", "add", "gpu", "--root", "relative/path"], "is not an absolute path"),
        (
            ["image", "add", "gpu", "--root", "/srv/gpu", "--kernel-arg", "quiet;reboot"],
            "is not a safe kernel argument",
        ),
        (["update-node", "set", "node77"], "nodes.node77: no such node"),
    ],
)
def test_invalid_edit_exits_2_and_writes_nothing(
    initialized: Cli, args: list[str], message: str
) -> None:
    cli = initialized
    assert (
        cli("node", "add", "node01", "--mac", "52:54:00:00:00:01", "--ip", "192.168.0.11").code == 0
    )
    assert (
        cli("node", "add", "node02", "--mac", "52:54:00:00:00:02", "--ip", "192.168.0.12").code == 0
    )
    before = cli.config.read_bytes()
    result = cli(*args)
    assert result.code == 2, (result.out, result.err)
    assert message in result.err
    assert all(line.startswith("clustcontrol: ") for line in result.err.strip().splitlines())
    assert cli.config.read_bytes() == before


def test_node_import_all_or_nothing(initialized: Cli, tmp_path: Path) -> None:
    cli = initialized
    assert cli("image", "add", "gpu", "--root", "/srv/nfs4/gpuroot").code == 0
    good = tmp_path / "good.csv"
    good.write_text(
        "name,mac,ip,image\nn1,52:54:00:00:01:01,192.168.0.31,\nn2,52:54:00:00:01:02,192.168.0.32,gpu\n"
    )
    result = cli("node", "import", good)
    assert result.code == 0 and "2 added" in result.out
    rows = {r["name"]: r for r in json.loads(cli("node", "list", "--output", "json").out)}
    assert rows["n1"]["image"] == "default" and rows["n2"]["image"] == "gpu"
    before = cli.config.read_bytes()
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "name,mac,ip,image\nn3,52:54:00:00:01:03,192.168.0.33,\nn4,52:54:00:00:01:01,192.168.0.34,\n"
    )
    result = cli("node", "import", bad)
    assert (
        result.code == 2
        and "nodes.n4.mac: '52:54:00:00:01:01' duplicates the mac of node 'n1'" in result.err
    )
    assert cli.config.read_bytes() == before  # n3 was valid but nothing was written
    header = tmp_path / "header.csv"
    header.write_text("host,mac,ip\nn5,52:54:00:00:01:05,192.168.0.35\n")
    assert cli("node", "import", header).code == 2


def test_update_node_set_and_clear(initialized: Cli, tmp_path: Path) -> None:
    cli = initialized
    cli("node", "add", "node05", "--mac", "52:54:00:00:00:05", "--ip", "192.168.0.15")
    result = cli("update-node", "set", "node05")
    assert result.code == 0 and "192.168.0.253" in result.out
    out = tmp_path / "staging"
    assert cli("render", "--out", out, "--root", tmp_path / "live").code == 0
    dhcpd = (out / "etc/dhcp/dhcpd.conf").read_text()
    assert "hardware ethernet 52:54:00:00:00:05;\n    fixed-address 192.168.0.253;" in dhcpd
    assert cli("update-node", "clear").code == 0
    assert cli("render", "--out", out, "--root", tmp_path / "live").code == 0
    assert "host updatenode" not in (out / "etc/dhcp/dhcpd.conf").read_text()


def test_node_add_boot_forces_the_boot_program(initialized: Cli, tmp_path: Path) -> None:
    """node add --boot takes what node set --boot takes: bios or uefi is written into the new
    entry, auto (the default) writes nothing, another word is a usage error."""
    cli = initialized
    add = ("node", "add", "node06", "--mac", "52:54:00:00:00:06", "--ip", "192.168.0.16")
    before = cli.config.read_bytes()
    result = cli(*add, "--boot", "efi")
    assert result.code == 2 and "--boot" in result.err
    assert cli.config.read_bytes() == before
    assert cli(*add, "--boot", "uefi").code == 0
    assert "ip: 192.168.0.16, boot: uefi}" in cli.config.read_text()
    assert load_inventory(cli.config).nodes[0].boot == "uefi"
    out = tmp_path / "staging"
    assert cli("render", "--out", out, "--root", tmp_path / "live").code == 0
    dhcpd = (out / "etc/dhcp/dhcpd.conf").read_text()
    assert 'option host-name "node06"; filename "cluster_node/shimx64.efi"; }' in dhcpd
    auto = ("node", "add", "node07", "--mac", "52:54:00:00:00:07", "--ip", "192.168.0.17")
    assert cli(*auto, "--boot", "auto").code == 0
    assert "ip: 192.168.0.17}" in cli.config.read_text()


def test_node_set_boot_forces_the_boot_program_and_auto_removes_it(
    initialized: Cli, tmp_path: Path
) -> None:
    """node set --boot uefi|bios writes boot: into the node's entry (dhcpd then names the file
    in its host declaration); --boot auto, the default, removes the field; another word is a
    usage error (exit 2) and writes nothing."""
    cli = initialized
    cli("node", "add", "node05", "--mac", "52:54:00:00:00:05", "--ip", "192.168.0.15")
    assert cli("node", "set", "node05", "--boot", "uefi").code == 0
    assert load_inventory(cli.config).nodes[0].boot == "uefi"
    assert "ip: 192.168.0.15, boot: uefi}" in cli.config.read_text()
    out = tmp_path / "staging"
    assert cli("render", "--out", out, "--root", tmp_path / "live").code == 0
    dhcpd = (out / "etc/dhcp/dhcpd.conf").read_text()
    assert 'option host-name "node05"; filename "cluster_node/shimx64.efi"; }' in dhcpd
    before = cli.config.read_bytes()
    result = cli("node", "set", "node05", "--boot", "efi")
    assert result.code == 2 and "--boot" in result.err
    assert cli.config.read_bytes() == before
    assert cli("node", "set", "node05", "--boot", "auto").code == 0
    assert load_inventory(cli.config).nodes[0].boot == "auto"
    assert "ip: 192.168.0.15}" in cli.config.read_text()


RW_EXPORT = "/srv/nfs4/clusternoderoot 192.168.0.253(rw,"
UPDATE_PXE = "var/lib/tftpboot/cluster_node/pxelinux.cfg/C0A800FD"


def test_update_node_clear_then_apply_removes_the_read_write_paths(
    initialized: Cli, tmp_path: Path
) -> None:
    """Issue 11, case 3: `init`'s inventory (no update node) exports nothing read-write; `set`
    + apply installs the read-write export, the update address's PXELINUX file and its names;
    `clear` + apply removes them again (apply's manifest removes what is no longer rendered)."""
    cli = initialized
    cli("node", "add", "node05", "--mac", "52:54:00:00:00:05", "--ip", "192.168.0.15")
    root = tmp_path / "root"
    exports = root / "etc/exports.d/clustcontrol.exports"
    zone = root / "etc/bind/clustcontrol/db.rostclust"

    assert cli("apply", "--root", root).code == 0
    assert RW_EXPORT not in exports.read_text() and "(rw," not in exports.read_text()
    assert not (root / UPDATE_PXE).exists() and "updatenode" not in zone.read_text()

    assert cli("update-node", "set", "node05").code == 0
    applied = cli("apply", "--root", root)
    assert applied.code == 0, applied.err
    assert exports.read_text().count("(rw,") == 1 and RW_EXPORT in exports.read_text()
    assert "DEFAULT linuxnfsroot\n" in (root / UPDATE_PXE).read_text()
    assert "updatenode\tIN\tA\t192.168.0.253\n" in zone.read_text()

    assert cli("update-node", "clear").code == 0
    dry = cli("apply", "--root", root, "--dry-run")
    assert f"-{RW_EXPORT}" in dry.out and f"--- a/{UPDATE_PXE}" in dry.out
    applied = cli("apply", "--root", root)
    assert applied.code == 0, applied.err
    assert "(rw," not in exports.read_text()
    assert not (root / UPDATE_PXE).exists()
    assert "updatenode" not in zone.read_text()
    assert (
        "LABEL linuxnfsroot"
        not in (root / "var/lib/tftpboot/cluster_node/pxelinux-common").read_text()
    )
    manifest = json.loads((root / "var/lib/clustcontrol/installed.json").read_text())
    assert f"/{UPDATE_PXE}" not in json.dumps(manifest)


def test_image_add_list(initialized: Cli) -> None:
    cli = initialized
    assert (
        cli(
            "image",
            "add",
            "gpu",
            "--root",
            "/srv/nfs4/gpuroot",
            "--persistent",
            "/var/lib/gpu",
            "--transport",
            "rsync",
        ).code
        == 0
    )
    rows = {r["name"]: r for r in json.loads(cli("image", "list", "--output", "json").out)}
    assert rows["gpu"]["transport"] == "rsync" and rows["gpu"]["persistent"] == "/var/lib/gpu"
    assert rows["default"]["default"] is True


def test_apply_dry_run_then_apply_then_nothing(initialized: Cli, tmp_path: Path) -> None:
    cli = initialized
    cli("node", "add", "node01", "--mac", "52:54:00:00:00:01", "--ip", "192.168.0.11")
    root = tmp_path / "root"
    dry = cli("apply", "--root", root, "--dry-run")
    assert dry.code == 0, dry.err
    assert "+++ b/etc/dhcp/dhcpd.conf" in dry.out and not root.exists()
    real = cli("apply", "--root", root)
    assert real.code == 0, real.err
    assert "check dhcpd /etc/dhcp/dhcpd.conf: ok" in real.out
    assert (root / "etc/dhcp/dhcpd.conf").is_file()
    again = cli("apply", "--root", root)
    assert again.code == 0 and "apply: 0 files changed" in again.out


def test_config_from_environment(initialized: Cli, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = dict(os.environ, CLUSTCONTROL_CONFIG=str(initialized.config))
    proc = subprocess.run(
        [sys.executable, "-m", "clustcontrol", "validate"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "valid" in proc.stdout


def test_broken_yaml_names_line(cli: Cli) -> None:
    cli.config.write_text("cluster:\n  domain: [unclosed\n")
    result = cli("validate")
    assert result.code == 2 and str(cli.config) in result.err


def test_a_missing_input_file_is_invalid_input_alike(cli: Cli, tmp_path: Path) -> None:
    """A missing inventory exited 1 and a missing CSV 2: a file named wrongly is invalid input
    (exit 2) either way; one that exists but cannot be read is a failure (exit 1)."""
    result = cli("validate")
    assert result.code == 2 and "does not exist" in result.err and "hint:" in result.err
    assert (
        cli(
            "init", "--domain", "c", "--network", "192.168.0.0/24", "--master-ip", "192.168.0.1"
        ).code
        == 0
    )
    result = cli("node", "import", tmp_path / "missing.csv")
    assert result.code == 2 and "missing.csv: no such file" in result.err, result.err


def verbs(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every verb of the CLI, as its words."""
    if isinstance(command, click.Group):
        return [v for name, sub in command.commands.items() for v in verbs(sub, (*path, name))]
    return [path]


def test_every_verb_s_help_has_an_example(cli: Cli) -> None:
    for verb in verbs(clustcontrol_cli):
        result = cli(*verb, "--help", config=False)
        assert result.code == 0 and ("Example:" in result.out or "Examples:" in result.out), verb


def test_demo_runs(tmp_path: Path, cli: Cli) -> None:
    result = cli("demo", "--dir", tmp_path / "demo", config=False)
    assert result.code == 0, result.err
    assert "second apply:     0 files changed" in result.out
    assert (tmp_path / "demo/root/var/lib/tftpboot/cluster_node/pxelinux.cfg/C0A800FD").is_file()


# Issue 11, case 1: Python's `$` also matches before a final newline, so a value ending in one
# passed every validator and broke out of its line (extra KERNEL/APPEND lines in every PXELINUX
# label; an exports line naming no client, i.e. exported to everyone).
@pytest.mark.parametrize(
    ("image", "problem"),
    [
        (
            {
                "root": "/srv/nfs4/clusternoderoot",
                "kernel_args": ["quiet\n", "KERNEL", "http://example.invalid/vmlinuz"],
            },
            "images.default.kernel_args[0]: 'quiet\\n' is not a safe kernel argument",
        ),
        ({"root": "/srv/x\n"}, "images.default.root: '/srv/x\\n' is not a safe absolute path"),
    ],
    ids=["kernel_args", "root"],
)
@pytest.mark.parametrize("verb", ["validate", "render", "apply", "apply-dry-run"])
def test_trailing_newline_is_rejected_and_nothing_written(
    cli: Cli, tmp_path: Path, image: dict[str, object], problem: str, verb: str
) -> None:
    from tests.conftest import inventory_data

    # JSON is YAML: the values are written with the escapes exactly as the issue gives them.
    cli.config.write_text(json.dumps(inventory_data(images={"default": image}), indent=2))
    before = cli.config.read_bytes()
    root, out = tmp_path / "root", tmp_path / "out"
    args: dict[str, list[str | Path]] = {
        "validate": ["validate"],
        "render": ["render", "--out", out, "--root", root],
        "apply": ["apply", "--root", root],
        "apply-dry-run": ["apply", "--root", root, "--dry-run"],
    }
    result = cli(*args[verb])
    assert result.code == 2, (result.out, result.err)
    # One line naming the field and the value (repr: the newline shows as \n), no traceback.
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"clustcontrol: error: {problem}"), result.err
    assert result.out == ""
    assert not root.exists() and not out.exists()
    assert cli.config.read_bytes() == before


def test_removing_the_default_image_names_the_nodes_it_would_move(initialized: Cli) -> None:
    """Nodes naming no image use the first image; removing it moved them to another with exit
    0 and no word. Now refused naming them, or with --force done and said."""
    cli = initialized
    assert cli("image", "add", "gpu", "--root", "/srv/nfs4/gpuroot").code == 0
    cli("node", "add", "node05", "--mac", "52:54:00:00:00:05", "--ip", "192.168.0.15")
    cli(
        "node",
        "add",
        "node06",
        "--mac",
        "52:54:00:00:00:06",
        "--ip",
        "192.168.0.16",
        "--image",
        "gpu",
    )
    before = cli.config.read_bytes()
    result = cli("image", "remove", "default")
    assert result.code == 2, result
    assert result.err.startswith(
        "clustcontrol: error: images.default: the default image of 1 node(s) that name none: "
        "node05\n"
    ), result.err
    assert cli.config.read_bytes() == before
    result = cli("image", "remove", "default", "--force")
    assert result.code == 0, result.err
    assert "moved to the new default image: 1 node(s): node05" in result.out
    rows = {r["name"]: r["image"] for r in json.loads(cli("node", "list", "--output", "json").out)}
    assert rows == {"node05": "gpu", "node06": "gpu"}
    assert cli("image", "remove", "gpu").code == 2  # the last image: nodes still need one


def test_a_node_with_two_boot_nics(initialized: Cli) -> None:
    """`--mac A,B` (any notation) stores a list; both MACs name the node in nodes.by-mac, and
    each is unique across the cluster."""
    cli = initialized
    result = cli(
        "node", "add", "twin", "--mac", "52-54-00-00-00-21,5254.0000.0022", "--ip", "192.168.0.21"
    )
    assert result.code == 0, result.err
    assert 'mac: ["52:54:00:00:00:21", "52:54:00:00:00:22"]' in cli.config.read_text()
    rows = {r["name"]: r for r in json.loads(cli("node", "list", "--output", "json").out)}
    assert rows["twin"]["mac"] == "52:54:00:00:00:21 52:54:00:00:00:22"
    result = cli("node", "add", "other", "--mac", "52:54:00:00:00:22", "--ip", "192.168.0.22")
    assert result.code == 2
    assert "nodes.other.mac: '52:54:00:00:00:22' duplicates the mac of node 'twin'" in result.err
    result = cli("node", "set", "twin", "--mac", "52:54:00:00:00:21,52:54:00:00:00:21")
    assert result.code == 2 and "nodes.twin.mac: '52:54:00:00:00:21' is listed twice" in result.err
    assert cli("node", "set", "twin", "--mac", "52:54:00:00:00:23").code == 0
    assert 'mac: "52:54:00:00:00:23"' in cli.config.read_text()


@pytest.mark.parametrize(
    ("edit", "verb"),
    [
        ("update_node: 7\n", ("update-node", "clear")),
        ("update_node: [a]\n", ("update-node", "set", "node01")),
        (
            "nodes: {a: 1}\n",
            ("node", "add", "n9", "--mac", "52:54:00:00:00:09", "--ip", "192.168.0.9"),
        ),
    ],
)
def test_a_section_of_the_wrong_kind_is_one_clear_error(
    initialized: Cli, edit: str, verb: tuple[str, ...]
) -> None:
    """The fuzz test's finding: update_node that is not a mapping made `update-node clear`
    crash with a TypeError."""
    cli = initialized
    key = edit.split(":")[0]
    lines = [
        ln
        for ln in cli.config.read_text().splitlines(keepends=True)
        if not ln.startswith(f"{key}:")
    ]
    cli.config.write_text("".join(lines) + edit)
    result = cli(*verb)
    assert result.code == 2, result
    assert "Traceback" not in result.err
    assert result.err.startswith("clustcontrol: error: "), result.err


def test_a_network_too_small_for_an_update_address_is_refused_cleanly(cli: Cli) -> None:
    """0.0.0.0/32 crashed default_update_ip with an AddressValueError."""
    result = cli("init", "--domain", "c", "--network", "0.0.0.0/32", "--master-ip", "0.0.0.0")
    assert result.code == 2, result
    assert "Traceback" not in result.err and "cluster.network" in result.err
