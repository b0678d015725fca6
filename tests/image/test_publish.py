"""image publish: kernel selection, copies into the TFTP tree, PXELINUX refresh through apply."""

from __future__ import annotations

import json

import pytest

from clustcontrol.apply import MANIFEST, Installer, apply_tree
from clustcontrol.errors import InvalidInputError
from clustcontrol.image import publish_image
from clustcontrol.image.commit import commit_image
from clustcontrol.image.common import ImageResult, image_tree
from clustcontrol.image.publish import select_boot_files
from clustcontrol.render import RenderContext, render_all
from tests.conftest import BASE, make_inventory
from tests.image.conftest import ImageEnv, snapshot

TFTP = "/var/lib/tftpboot/cluster_node"
VERSIONS = ("6.1.0-9-amd64", "6.1.0-10-amd64")


def boot_files(env: ImageEnv, *versions: str, initrd: bool = True) -> None:
    boot = env.root / "boot"
    boot.mkdir(exist_ok=True)
    for version in versions:
        (boot / f"vmlinuz-{version}").write_bytes(b"MZ\0kernel " + version.encode())
        if initrd:
            (boot / f"initrd.img-{version}").write_bytes(b"\0initrd " + version.encode())


def publish(env: ImageEnv, dry_run: bool = False) -> ImageResult:
    return publish_image(env.inv, "default", dry_run=dry_run, root_prefix=env.prefix)


def with_image(env: ImageEnv, **fields: object) -> None:
    image = env.inv.images["default"].model_copy(update=fields)
    env.inv = env.inv.model_copy(update={"images": {"default": image}})


def test_newest_is_the_highest_debian_version_with_an_initrd(env: ImageEnv) -> None:
    boot_files(env, *VERSIONS)
    boot_files(env, "6.1.0-11-amd64", initrd=False)  # newer, but without an initrd
    tree = image_tree(env.inv, "default", env.prefix)
    assert select_boot_files(tree) == ("vmlinuz-6.1.0-10-amd64", "initrd.img-6.1.0-10-amd64")


def test_publish_copies_kernel_and_initrd_and_writes_the_pxe_files(env: ImageEnv) -> None:
    boot_files(env, *VERSIONS)
    result = publish(env)
    assert env.tftp("default/vmlinuz").read_bytes() == b"MZ\0kernel 6.1.0-10-amd64"
    assert env.tftp("default/initrd.img").read_bytes() == b"\0initrd 6.1.0-10-amd64"
    assert oct(env.tftp("default/vmlinuz").stat().st_mode & 0o777) == oct(0o644)
    paths = {c.path for c in result.changes}
    assert {f"{TFTP}/default/vmlinuz", f"{TFTP}/default/initrd.img"} <= paths
    assert {
        f"{TFTP}/pxelinux.0",
        f"{TFTP}/pxelinux-common",
        f"{TFTP}/pxelinux.cfg/default",
    } <= paths
    assert all(c.service == "pxe" for c in result.changes)
    common = env.tftp("pxelinux-common").read_text()
    assert "KERNEL default/vmlinuz" in common
    assert "INITRD default/initrd.img" in common
    assert result.notes == (
        "image default: kernel vmlinuz-6.1.0-10-amd64, initrd initrd.img-6.1.0-10-amd64 "
        f"(from the working tree {env.inv.images['default'].root}: no generation committed yet)",
    )
    # PXE files are recorded in apply's manifest; the kernels are not (apply would remove them).
    manifest = json.loads((env.prefix / MANIFEST.lstrip("/")).read_text())["files"]
    assert f"{TFTP}/pxelinux-common" in manifest
    assert f"{TFTP}/default/vmlinuz" not in manifest


def test_second_publish_writes_nothing(env: ImageEnv) -> None:
    boot_files(env, *VERSIONS)
    publish(env)
    before = snapshot(env.prefix / "var")
    assert publish(env).changes == ()
    assert snapshot(env.prefix / "var") == before


def test_a_new_kernel_is_published_over_the_old(env: ImageEnv) -> None:
    boot_files(env, *VERSIONS)
    publish(env)
    boot_files(env, "6.1.0-12-amd64")
    result = publish(env)
    assert [(c.path, c.action) for c in result.changes] == [
        (f"{TFTP}/default/vmlinuz", "update"),
        (f"{TFTP}/default/initrd.img", "update"),
    ]
    assert result.changes[0].diff() == f"Binary file {TFTP}/default/vmlinuz differs\n"
    assert env.tftp("default/vmlinuz").read_bytes().endswith(b"6.1.0-12-amd64")


def test_once_committed_the_current_generation_is_published(env: ImageEnv) -> None:
    """Nodes boot the kernel of the generation they sync: a kernel installed in the working
    tree after the last commit is published only once committed."""
    boot_files(env, *VERSIONS)
    generation = commit_image(env.inv, "default", env.prefix).generation
    boot_files(env, "6.1.0-12-amd64")
    result = publish(env)
    assert env.tftp("default/vmlinuz").read_bytes().endswith(b"6.1.0-10-amd64")
    assert result.notes[0].endswith(f"(from generation {generation})")
    newer = commit_image(env.inv, "default", env.prefix).generation
    assert publish(env).notes[0].endswith(f"(from generation {newer})")
    assert env.tftp("default/vmlinuz").read_bytes().endswith(b"6.1.0-12-amd64")


def test_dry_run_writes_nothing(env: ImageEnv) -> None:
    boot_files(env, *VERSIONS)
    before = snapshot(env.prefix)
    result = publish(env, dry_run=True)
    assert snapshot(env.prefix) == before
    assert result.dry_run
    assert {f"{TFTP}/default/vmlinuz", f"{TFTP}/pxelinux-common"} <= {
        c.path for c in result.changes
    }


def test_no_kernel_is_an_error_naming_the_field(env: ImageEnv) -> None:
    boot_files(env, *VERSIONS, initrd=False)
    with pytest.raises(InvalidInputError) as info:
        publish(env)
    assert info.value.problems[0].startswith(
        "images.default.kernel: 'newest' finds no vmlinuz-VERSION with an initrd.img-VERSION in"
    )
    assert not (env.prefix / "var").exists()


def test_named_kernel_must_exist(env: ImageEnv) -> None:
    boot_files(env, *VERSIONS)
    with_image(env, kernel="vmlinuz-5.10.0-1-amd64")
    with pytest.raises(
        InvalidInputError,
        match=r"images.default.kernel: 'vmlinuz-5.10.0-1-amd64' "
        r"is not a file in .*/boot",
    ):
        publish(env)


def test_named_kernel_takes_its_own_initrd(env: ImageEnv) -> None:
    boot_files(env, *VERSIONS)
    with_image(env, kernel="vmlinuz-6.1.0-9-amd64")
    publish(env)
    assert env.tftp("default/initrd.img").read_bytes() == b"\0initrd 6.1.0-9-amd64"


def test_named_initrd_with_newest_kernel(env: ImageEnv) -> None:
    boot_files(env, *VERSIONS)
    (env.root / "boot/initrd-custom.img").write_bytes(b"\0custom")
    with_image(env, initrd="initrd-custom.img")
    tree = image_tree(env.inv, "default", env.prefix)
    assert select_boot_files(tree) == ("vmlinuz-6.1.0-10-amd64", "initrd-custom.img")


@pytest.mark.parametrize("target", ["vmlinuz-6.1.0-9-amd64", "/boot/vmlinuz-6.1.0-9-amd64"])
def test_kernel_symlink_is_followed_inside_the_image(env: ImageEnv, target: str) -> None:
    boot_files(env, *VERSIONS)
    (env.root / "boot/vmlinuz").symlink_to(target)
    with_image(env, kernel="vmlinuz")
    tree = image_tree(env.inv, "default", env.prefix)
    assert select_boot_files(tree) == ("vmlinuz", "initrd.img-6.1.0-9-amd64")
    publish(env)
    assert env.tftp("default/vmlinuz").read_bytes() == b"MZ\0kernel 6.1.0-9-amd64"


def test_publish_keeps_other_services_and_refreshes_pxe_host_files(env: ImageEnv) -> None:
    boot_files(env, *VERSIONS)
    full = apply_tree(env.inv, render_all(RenderContext(env.inv)), env.prefix, check=False)
    manifest_path = env.prefix / MANIFEST.lstrip("/")
    installed = json.loads(manifest_path.read_text())["files"]
    assert any(not p.startswith(TFTP) for p in installed)  # DNS, DHCP, ... files too
    assert full.changes
    # A node gets its own kernel arguments: publish adds its host file, removes nothing.
    nodes = [dict(n) for n in BASE["nodes"]]
    nodes[0]["kernel_args"] = ["quiet"]
    env.inv = make_inventory(nodes=nodes)
    result = publish(env)
    assert all(c.action != "remove" for c in result.changes)
    assert f"{TFTP}/pxelinux.cfg/C0A8000B" in {c.path for c in result.changes}
    after = json.loads(manifest_path.read_text())["files"]
    # Its host file for each loader: PXELINUX's and GRUB's (UEFI), nothing else.
    own = {f"{TFTP}/pxelinux.cfg/C0A8000B", f"{TFTP}/grub/C0A8000B.cfg"}
    assert set(after) == set(installed) | own
    assert Installer(env.prefix).read(f"{TFTP}/pxelinux.cfg/C0A8000B") is not None
