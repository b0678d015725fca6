"""`clustcontrol image prepare` and `image publish` through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Cli, inventory_data
from tests.image.conftest import IMAGE_ROOT, build_minimal_root


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
    table = cli("image", "show", "default", "--root", prefix)
    assert table.code == 0 and "/etc/ssh/ssh_host_*" in table.out
    missing = cli("image", "show", "nosuch", "--root", prefix)
    assert missing.code == 2 and "'nosuch' is not a defined image" in missing.err
