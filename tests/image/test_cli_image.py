"""`clustcontrol image prepare` and `image publish` through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clustcontrol.contract import NODE_FILES
from tests.conftest import Cli, inventory_data
from tests.image.conftest import IMAGE_ROOT, build_minimal_root, snapshot


def test_prepare_then_publish_via_cli(cli: Cli, tmp_path: Path) -> None:
    cli.config.write_text(json.dumps(inventory_data()))
    prefix = tmp_path / "prefix"
    root = prefix / IMAGE_ROOT
    build_minimal_root(root)

    dry = cli("image", "prepare", "default", "--root", prefix, "--dry-run")
    assert dry.code == 0, dry.err
    assert (
        "+++ b/srv/nfs4/clusternoderoot/etc/initramfs-tools/scripts/local-top/clustcontrol"
        in dry.out
    )
    assert not (root / "etc/initramfs-tools/scripts/local-top/clustcontrol").exists()

    real = cli("image", "prepare", "default", "--root", prefix)
    assert real.code == 0, real.err
    local_top = root / "etc/initramfs-tools/scripts/local-top/clustcontrol"
    assert local_top.stat().st_mode & 0o111
    assert "# clustcontrol: " in (root / "etc/fstab").read_text()
    again = cli("image", "prepare", "default", "--root", prefix)
    assert again.code == 0 and "image prepare default: 0 files changed" in again.out

    missing = cli("image", "publish", "default", "--root", prefix)
    assert missing.code == 2 and "images.default.kernel: 'newest'" in missing.err
    boot = root / "boot"
    boot.mkdir()
    for version in ("6.1.0-9-amd64", "6.1.0-10-amd64"):
        (boot / f"vmlinuz-{version}").write_bytes(b"kernel " + version.encode())
        (boot / f"initrd.img-{version}").write_bytes(b"initrd " + version.encode())
    published = cli("image", "publish", "default", "--root", prefix)
    assert published.code == 0, published.err
    tftp = prefix / "var/lib/tftpboot/cluster_node"
    assert (tftp / "default/vmlinuz").read_bytes() == b"kernel 6.1.0-10-amd64"
    assert (tftp / "default/initrd.img").read_bytes() == b"initrd 6.1.0-10-amd64"
    assert (tftp / "pxelinux.cfg/default").is_file()


def test_prepare_unknown_image_exits_2(cli: Cli, tmp_path: Path) -> None:
    cli.config.write_text(json.dumps(inventory_data()))
    result = cli("image", "prepare", "gpu", "--root", tmp_path)
    assert result.code == 2 and "gpu" in result.err


def test_show_lists_every_path_nodes_never_take(cli: Cli, prefix: Path) -> None:
    """One list, printable by the admin: the contract's exclusions (with the control directory
    the inventory sets), the image's persistent paths and its layout's data partitions."""
    data = inventory_data()
    data["images"]["default"]["persistent"] = ["/var/lib/keep"]  # type: ignore[index]
    cli.config.write_text(json.dumps(data))
    assert cli("image", "commit", "default", "--root", prefix).code == 0
    shown = cli("image", "show", "default", "--root", prefix, "--output", "json")
    assert shown.code == 0, shown.err
    facts = json.loads(shown.out)
    assert facts["generation"] == facts["generations"][-1] and facts["generation"].startswith("1-")
    paths = {row["path"]: row for row in facts["exclusions"]}
    assert paths["/etc/machine-id"]["left out of"] == "node sync"
    assert paths["/etc/clustcontrol"]["left out of"] == "node sync and generation"
    assert paths["/proc/* (the directory stays)"]["why"] == "pseudo or scratch file system"
    assert paths["/var/lib/keep"]["why"].startswith("persistent")
    assert any(p.endswith("/*") and "data partition" in r["why"] for p, r in paths.items())
    written = {row["path"]: row for row in facts["node_files"]}
    assert list(written) == [f"/{f.path}" for f in NODE_FILES]  # the contract's list
    assert written["/etc/hosts"]["synced"] == "yes, then edited"
    assert written["/etc/network/interfaces"]["synced"] == "yes, then edited"
    assert written["/etc/hostname"]["synced"] == "no (excluded)"
    table = cli("image", "show", "default", "--root", prefix)
    assert table.code == 0 and "/etc/ssh/ssh_host_*" in table.out
    assert "written by the node after every sync" in table.out
    assert "│ /etc/hosts " in table.out and "│ /etc/network/interfaces " in table.out


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("nosuch", "images.nosuch: 'nosuch' is not a defined image (default, gpu)"),
        ("No;such", "name: 'No;such' is not a valid name (lower-case letters, digits, '-', '_'; "
         "starting with a letter or digit)"),
    ],
)  # fmt: skip
def test_every_image_verb_words_an_unknown_image_alike(
    cli: Cli, prefix: Path, name: str, line: str
) -> None:
    """show, commit, prepare, publish and remove: the same one line, exit 2, nothing written."""
    data = inventory_data()
    data["images"]["gpu"] = {"root": "/srv/nfs4/gpu"}  # type: ignore[index]
    cli.config.write_text(json.dumps(data))
    before = snapshot(prefix)
    for verb in ("show", "commit", "prepare", "publish", "remove"):
        where: list[str | Path] = [] if verb == "remove" else ["--root", prefix]
        result = cli("image", verb, name, *where)
        assert (result.code, result.err) == (2, f"clustcontrol: error: {line}\n"), verb
    assert snapshot(prefix) == before


def published_setup(cli: Cli, tmp_path: Path) -> tuple[Path, Path]:
    """An inventory and a prepared-enough standard with two good kernels; (prefix, boot)."""
    cli.config.write_text(json.dumps(inventory_data()))
    prefix = tmp_path / "prefix"
    build_minimal_root(prefix / IMAGE_ROOT)
    boot = prefix / IMAGE_ROOT / "boot"
    boot.mkdir()
    for version in ("6.1.0-9-amd64", "6.1.0-10-amd64"):
        (boot / f"vmlinuz-{version}").write_bytes(b"kernel " + version.encode())
        (boot / f"initrd.img-{version}").write_bytes(b"initrd " + version.encode())
        (boot / f"initrd.img-{version}").chmod(0o644)
    return prefix, boot


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_boot_file_name_with_control_characters_is_never_chosen(
    cli: Cli, tmp_path: Path, dry_run: bool
) -> None:
    # The update node plants a kernel whose VERSION sorts highest and whose name holds an
    # escape sequence and a line break: it is neither chosen nor shown raw.
    prefix, boot = published_setup(cli, tmp_path)
    hostile = "9.9\033[31mRED\nAPPEND init=sh"
    (boot / f"vmlinuz-{hostile}").write_bytes(b"evil kernel")
    (boot / f"initrd.img-{hostile}").write_bytes(b"evil initrd")
    result = cli("image", "publish", "default", "--root", prefix, *["--dry-run"] * dry_run)
    assert result.code == 0, result.err
    assert "\033" not in result.out + result.err
    assert "note: image default: kernel vmlinuz-6.1.0-10-amd64, initrd initrd.img-6.1.0-10" in (
        result.out
    )
    if not dry_run:
        tftp = prefix / "var/lib/tftpboot/cluster_node"
        assert (tftp / "default/vmlinuz").read_bytes() == b"kernel 6.1.0-10-amd64"
        assert "APPEND init" not in (tftp / "pxelinux-common").read_text()


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_private_initrd_is_refused_and_nothing_is_published(
    cli: Cli, tmp_path: Path, dry_run: bool
) -> None:
    # initramfs-tools with UMASK=0077 makes the initrd 0600: it holds keys (cryptsetup
    # keyfiles, dropbear host keys). TFTP would hand it to anyone on the cluster network.
    prefix, boot = published_setup(cli, tmp_path)
    (boot / "initrd.img-6.1.0-10-amd64").chmod(0o600)
    result = cli("image", "publish", "default", "--root", prefix, *["--dry-run"] * dry_run)
    assert result.code == 2, result.err
    lines = result.err.splitlines()
    assert lines[0] == (
        f"clustcontrol: error: images.default.initrd: {boot}/initrd.img-6.1.0-10-amd64 is mode "
        "0600, not readable by others: TFTP would serve it to anyone on the cluster network"
    )
    assert lines[1].startswith("clustcontrol: hint: a private initrd (initramfs-tools UMASK=")
    assert not (prefix / "var/lib/tftpboot").exists()
    # Through a link (Debian's boot/initrd.img -> initrd.img-VERSION) the mode is the file's.
    (boot / "initrd.img-6.1.0-10-amd64").chmod(0o644)
    assert cli("image", "publish", "default", "--root", prefix).code == 0


def test_a_standard_fstab_with_controls_and_latin1_is_edited_exactly_and_shown_escaped(
    cli: Cli, tmp_path: Path
) -> None:
    # The update node writes the standard's fstab: escape sequences, a CR line end, a form feed
    # inside a line and a byte that is not UTF-8 (\xfc, Latin-1). The dry run shows them as
    # escapes; prepare comments out the root line and keeps every other byte.
    cli.config.write_text(json.dumps(inventory_data()))
    prefix = tmp_path / "prefix"
    root = prefix / IMAGE_ROOT
    build_minimal_root(root)
    title = b"# \033]0;owned\007\033[2J f\xfcr die Daten\r\n"
    root_line = b"UUID=0f3c-root  /  ext4  errors=remount-ro  0  1\n"
    data_line = b"/dev/sdb1 /data ext4 defaults\x0c0 2"  # no final newline
    (root / "etc/fstab").write_bytes(title + root_line + data_line)
    dry = cli("image", "prepare", "default", "--root", prefix, "--dry-run")
    assert dry.code == 0, dry.err
    assert not any(c in dry.out for c in "\033\007\r\x0c")
    assert "\n # \\x1b]0;owned\\x07\\x1b[2J f\\xfcr die Daten\\r\n" in dry.out
    assert "\n-UUID=0f3c-root  /  ext4  errors=remount-ro  0  1\n" in dry.out
    assert "\n+# clustcontrol: UUID=0f3c-root  /  ext4  errors=remount-ro  0  1\n" in dry.out
    assert "\n /dev/sdb1 /data ext4 defaults\\x0c0 2\n" in dry.out
    real = cli("image", "prepare", "default", "--root", prefix)
    assert real.code == 0, real.err
    assert (root / "etc/fstab").read_bytes() == title + b"# clustcontrol: " + root_line + data_line
