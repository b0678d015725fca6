"""image prepare on a minimal root tree: every change, modes, dry run, idempotency, safety."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from clustcontrol.errors import ClustcontrolError, InvalidInputError
from clustcontrol.image import prepare_image
from clustcontrol.image.common import ImageResult, image_tree
from clustcontrol.image.prepare import (
    BOOTABLE_DISK_FILE,
    NODE_FILES,
    UPDATE_GRUB_STUB,
    update_initramfs_argv,
)
from clustcontrol.image.prepare import (
    node_files as all_node_files,
)
from tests.image.conftest import FSTAB, GENERATOR_RULE, IMAGE_ROOT, ImageEnv, snapshot

ROOT = "/" + IMAGE_ROOT
NODE_TARGETS = {f"{ROOT}/{f.target}": f for f in all_node_files()}
EDITED = {
    f"{ROOT}/etc/initramfs-tools/initramfs.conf",
    f"{ROOT}/etc/fstab",
    f"{ROOT}/etc/udev/rules.d/75-persistent-net-generator.rules",
    f"{ROOT}/etc/network/interfaces",
    f"{ROOT}/usr/sbin/update-grub",
    f"{ROOT}/etc/systemd/system/ssh.service.d/clustcontrol-host-keys.conf",
}


def run_prepare(env: ImageEnv, **kw: bool) -> ImageResult:
    kw.setdefault("dry_run", False)
    return prepare_image(env.inv, "default", root_prefix=env.prefix, **kw)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


def test_prepare_changes_exactly_the_expected_files(env: ImageEnv) -> None:
    result = run_prepare(env)
    assert {c.path for c in result.changes} == set(NODE_TARGETS) | EDITED
    assert all(c.action == "create" for c in result.changes if c.path in NODE_TARGETS)
    assert not result.dry_run


def test_node_files_are_installed_from_the_package_with_their_modes(
    env: ImageEnv, node_files: Path
) -> None:
    run_prepare(env)
    for file in all_node_files():
        installed = env.root / file.target
        assert installed.read_bytes() == (node_files / file.source).read_bytes(), file.target
        assert mode(installed) == file.mode, file.target
    assert mode(env.root / "etc/initramfs-tools/conf.d/clustcontrol") == 0o644
    assert mode(env.root / "etc/initramfs-tools/hooks/clustcontrol") == 0o755
    assert mode(env.root / "usr/share/clustcontrol/engine/engine.sh") == 0o644


def test_a_wrong_mode_on_an_installed_file_is_repaired(env: ImageEnv) -> None:
    run_prepare(env)
    hook = env.root / "etc/initramfs-tools/hooks/clustcontrol"
    hook.chmod(0o644)
    result = run_prepare(env)
    assert [c.path for c in result.changes] == [f"{ROOT}/etc/initramfs-tools/hooks/clustcontrol"]
    assert any("mode set to 755" in note for note in result.notes)
    assert mode(hook) == 0o755


def test_initramfs_conf_sets_boot_and_modules_and_keeps_the_rest(env: ImageEnv) -> None:
    conf = env.root / "etc/initramfs-tools/initramfs.conf"
    before = conf.read_text().splitlines()
    run_prepare(env)
    after = conf.read_text().splitlines()
    assert "MODULES=most" in after
    assert after.count("BOOT=local") == 1
    assert [line for line in after if line != "BOOT=local"] == before  # MODULES was already most
    assert after[-1] == "BOOT=local"


def test_initramfs_conf_values_are_set_in_place(env: ImageEnv) -> None:
    conf = env.root / "etc/initramfs-tools/initramfs.conf"
    conf.write_text("# MODULES=dep is an example\nMODULES=dep\nBOOT=nfs\nBUSYBOX=y\n")
    run_prepare(env)
    assert conf.read_text() == "# MODULES=dep is an example\nMODULES=most\nBOOT=local\nBUSYBOX=y\n"


def test_fstab_root_line_is_commented_out_and_the_rest_kept(env: ImageEnv) -> None:
    run_prepare(env)
    lines = (env.root / "etc/fstab").read_text().splitlines()
    original = FSTAB.splitlines()
    assert lines == [original[0], "# clustcontrol: " + original[1], original[2]]


def test_udev_generator_rule_is_copied_and_disabled_once(env: ImageEnv) -> None:
    run_prepare(env)
    rule = (env.root / "etc/udev/rules.d/75-persistent-net-generator.rules").read_text()
    assert rule.splitlines()[1] == 'GOTO="persistent_net_generator_end"'
    assert rule.endswith(GENERATOR_RULE)
    assert rule.count('GOTO="persistent_net_generator_end"\n') == 1 + GENERATOR_RULE.count(
        'GOTO="persistent_net_generator_end"\n'
    )
    lib_rule = env.root / "lib/udev/rules.d/75-persistent-net-generator.rules"
    assert lib_rule.read_text() == GENERATOR_RULE


def test_modern_root_without_generator_rule_gets_none_and_a_note(env: ImageEnv) -> None:
    (env.root / "lib/udev/rules.d/75-persistent-net-generator.rules").unlink()
    result = run_prepare(env)
    assert not (env.root / "etc/udev/rules.d").exists()
    assert "no persistent-net generator rule in this root (modern udev)" in result.notes


def test_boot_interface_becomes_manual(env: ImageEnv) -> None:
    run_prepare(env)
    assert (
        env.root / "etc/network/interfaces"
    ).read_text() == "auto eth0\niface eth0 inet manual\n"


def test_static_boot_interface_loses_its_options_other_stanzas_stay(env: ImageEnv) -> None:
    interfaces = env.root / "etc/network/interfaces"
    interfaces.write_text(
        "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet static\n"
        "    address 192.168.0.11/24\n    # a comment stays\n    gateway 192.168.0.1\n\n"
        "iface eth1 inet static\n    address 10.0.0.1/8\n"
    )
    result = run_prepare(env)
    assert interfaces.read_text() == (
        "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet manual\n"
        "    # a comment stays\n\niface eth1 inet static\n    address 10.0.0.1/8\n"
    )
    assert "iface eth0: dropped option 'gateway 192.168.0.1'" in result.notes


def test_missing_boot_interface_stanza_is_appended(env: ImageEnv) -> None:
    env.inv = env.inv.model_copy(
        update={
            "images": {
                "default": env.inv.images["default"].model_copy(update={"boot_interface": "enp1s0"})
            }
        }
    )
    run_prepare(env)
    assert (env.root / "etc/network/interfaces").read_text() == (
        "auto eth0\niface eth0 inet dhcp\n\niface enp1s0 inet manual\n"
    )


def test_missing_interfaces_file_is_created(env: ImageEnv) -> None:
    (env.root / "etc/network/interfaces").unlink()
    run_prepare(env)
    text = (env.root / "etc/network/interfaces").read_text()
    assert "iface lo inet loopback\n" in text
    assert text.endswith("iface eth0 inet manual\n")


def test_update_grub_stub_is_written_executable(env: ImageEnv) -> None:
    run_prepare(env)
    stub = env.root / "usr/sbin/update-grub"
    assert stub.read_bytes() == UPDATE_GRUB_STUB
    assert stub.read_text().startswith("#!/bin/sh\n")
    assert stub.read_text().endswith("exit 0\n")
    assert mode(stub) == 0o755
    assert subprocess.run([str(stub)], check=False).returncode == 0


def test_sshd_generates_node_host_keys_before_its_config_test(env: ImageEnv) -> None:
    run_prepare(env)
    dropin = env.root / "etc/systemd/system/ssh.service.d/clustcontrol-host-keys.conf"
    lines = [line for line in dropin.read_text().splitlines() if line.startswith("ExecStartPre")]
    # The unit's own `sshd -t` would fail without keys: the list is reset, keys come first.
    assert lines == [
        "ExecStartPre=",
        "ExecStartPre=/usr/bin/ssh-keygen -A",
        "ExecStartPre=/usr/sbin/sshd -t",
    ]


def test_real_update_grub_is_never_clobbered(env: ImageEnv) -> None:
    real = env.root / "usr/sbin/update-grub"
    real.parent.mkdir(parents=True)
    real.write_text('#!/bin/sh\nset -e\nexec grub-mkconfig -o /boot/grub/grub.cfg "$@"\n')
    real.chmod(0o755)
    before = real.stat()
    result = run_prepare(env)
    assert f"{ROOT}/usr/sbin/update-grub" not in {c.path for c in result.changes}
    assert real.read_text().endswith('grub-mkconfig -o /boot/grub/grub.cfg "$@"\n')
    assert real.stat().st_mtime_ns == before.st_mtime_ns
    assert any("real update-grub" in note and "left alone" in note for note in result.notes)


def test_dry_run_writes_nothing_and_shows_the_diffs(env: ImageEnv) -> None:
    before = snapshot(env.prefix)
    dry = run_prepare(env, dry_run=True)
    assert snapshot(env.prefix) == before
    assert dry.dry_run
    diffs = {c.path: c.diff() for c in dry.changes}
    assert "+BOOT=local\n" in diffs[f"{ROOT}/etc/initramfs-tools/initramfs.conf"]
    fstab = diffs[f"{ROOT}/etc/fstab"]
    assert "-UUID=0f3c-root  /      ext4" in fstab
    assert "+# clustcontrol: UUID=0f3c-root  /      ext4" in fstab
    assert (
        "-iface eth0 inet dhcp\n+iface eth0 inet manual\n"
        in diffs[f"{ROOT}/etc/network/interfaces"]
    )
    assert diffs[f"{ROOT}/usr/sbin/update-grub"].startswith(f"--- /dev/null\n+++ b{ROOT}/usr")
    real = run_prepare(env)
    assert [(c.path, c.new, c.mode) for c in dry.changes] == [
        (c.path, c.new, c.mode) for c in real.changes
    ]


def test_second_run_changes_nothing(env: ImageEnv) -> None:
    first = run_prepare(env, bootable_disk=True)
    assert first.changes
    before = snapshot(env.prefix)
    second = run_prepare(env, bootable_disk=True)
    assert second.changes == ()
    assert snapshot(env.prefix) == before  # contents, modes and mtimes


def test_bootable_disk_installs_script_and_rc_local_block(env: ImageEnv, node_files: Path) -> None:
    run_prepare(env, bootable_disk=True)
    script = env.root / BOOTABLE_DISK_FILE.target
    assert script.read_bytes() == (node_files / BOOTABLE_DISK_FILE.source).read_bytes()
    assert mode(script) == 0o755
    rc_local = env.root / "etc/rc.local"
    text = rc_local.read_text()
    assert mode(rc_local) == 0o755
    assert text.startswith("#!/bin/sh -e\n")
    assert text.endswith("# END clustcontrol managed block\nexit 0\n")
    assert f"/{BOOTABLE_DISK_FILE.target} ||" in text
    assert subprocess.run(["sh", "-n", str(rc_local)], check=False).returncode == 0


def test_bootable_disk_notes_a_missing_extlinux(env: ImageEnv) -> None:
    result = run_prepare(env, bootable_disk=True)
    assert any(n.startswith("extlinux is not installed in image 'default'") for n in result.notes)
    (env.root / "usr/bin").mkdir(parents=True)
    (env.root / "usr/bin/extlinux").write_text("")
    assert not any("extlinux" in n for n in run_prepare(env, bootable_disk=True).notes)


def test_bootable_disk_block_goes_before_exit_in_an_existing_rc_local(env: ImageEnv) -> None:
    rc_local = env.root / "etc/rc.local"
    rc_local.write_text("#!/bin/sh -e\necho site-local\nexit 0\n")
    rc_local.chmod(0o644)
    result = run_prepare(env, bootable_disk=True)
    lines = rc_local.read_text().splitlines()
    assert lines[:2] == ["#!/bin/sh -e", "echo site-local"]
    assert lines[2].startswith("# BEGIN clustcontrol managed block")
    assert lines[-2:] == ["# END clustcontrol managed block", "exit 0"]
    assert mode(rc_local) == 0o755  # rc-local.service runs it only when executable
    assert f"{ROOT}/etc/rc.local" in {c.path for c in result.changes}


def test_without_bootable_disk_nothing_of_it_is_installed(env: ImageEnv) -> None:
    run_prepare(env)
    assert not (env.root / BOOTABLE_DISK_FILE.target).exists()
    assert not (env.root / "etc/rc.local").exists()


def test_missing_node_file_in_the_package_is_an_error(env: ImageEnv, node_files: Path) -> None:
    (node_files / NODE_FILES[1].source).unlink()
    before = snapshot(env.prefix)
    with pytest.raises(ClustcontrolError, match="lacks its node file node/initramfs-tools/hooks"):
        run_prepare(env)
    assert snapshot(env.prefix) == before


def test_root_without_initramfs_tools_is_an_error(env: ImageEnv) -> None:
    (env.root / "etc/initramfs-tools/initramfs.conf").unlink()
    with pytest.raises(ClustcontrolError, match="initramfs-tools is not installed"):
        run_prepare(env)


def test_rebuild_without_update_initramfs_fails_before_writing(env: ImageEnv) -> None:
    before = snapshot(env.prefix)
    with pytest.raises(ClustcontrolError, match="has no update-initramfs") as info:
        run_prepare(env, rebuild_initramfs=True)
    assert info.value.hint == f"chroot {env.root} apt-get install initramfs-tools"
    assert snapshot(env.prefix) == before


def test_update_initramfs_creates_when_no_initrd_exists(env: ImageEnv) -> None:
    tree = image_tree(env.inv, "default", env.prefix)
    assert update_initramfs_argv(tree)[2:] == ["update-initramfs", "-c", "-k", "all"]
    (env.root / "boot").mkdir()
    (env.root / "boot/initrd.img-6.1.0-10-amd64").write_bytes(b"x")
    assert update_initramfs_argv(tree) == [
        "chroot",
        str(env.root),
        "update-initramfs",
        "-u",
        "-k",
        "all",
    ]


def test_unknown_image_and_missing_root_are_reported(env: ImageEnv) -> None:
    with pytest.raises(InvalidInputError, match=r"images\.gpu: 'gpu' is not a defined image"):
        prepare_image(env.inv, "gpu", dry_run=True, root_prefix=env.prefix)
    with pytest.raises(ClustcontrolError, match=r"images\.default\.root: .* is not a directory"):
        prepare_image(env.inv, "default", dry_run=True, root_prefix=env.prefix / "elsewhere")


def with_image(env: ImageEnv, **changes: object) -> None:
    image = env.inv.images["default"].model_copy(update=changes)
    env.inv = env.inv.model_copy(update={"images": {"default": image}})


@pytest.mark.parametrize(
    ("changes", "warned"),
    [
        ({}, True),
        ({"kernel_args": ["net.ifnames=0"]}, False),
        ({"boot_interface": "ens3"}, False),
    ],
)
def test_a_standard_that_configures_another_interface_is_warned_about(
    env: ImageEnv, changes: dict[str, object], warned: bool
) -> None:
    """The image configures ens3 (predictable names) while boot_interface is eth0: prepare
    added eth0 manual, left ens3 on DHCP and said nothing (an update node then loses its NFS
    root when ifupdown runs DHCP again)."""
    (env.root / "etc/network/interfaces").write_text(
        "auto lo\niface lo inet loopback\n\nallow-hotplug ens3\niface ens3 inet dhcp\n"
    )
    with_image(env, **changes)
    result = run_prepare(env)
    warnings = [n for n in result.notes if n.startswith("WARNING: ")]
    if warned:
        (warning,) = warnings
        assert "configures ens3 (inet dhcp) but not the boot interface eth0" in warning
        assert "images.default.boot_interface: ens3" in warning
        assert "net.ifnames=0" in warning
    else:
        assert warnings == []
