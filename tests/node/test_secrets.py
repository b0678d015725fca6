"""Secrets on the node: the real engine gets /etc/shadow, /etc/gshadow, munge.key and the image's
own secrets at boot, exactly, over both transports, from the image's secrets export alone;
nothing it can read from the served roots or the rsync module holds them."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from tests.image.test_secrets import served_bytes
from tests.node.conftest import Node, RsyncDaemon, write_control

pytestmark = pytest.mark.slow

STATE = "var/lib/clustcontrol-node"
SECRET_FILES = ("etc/shadow", "etc/shadow-", "etc/gshadow", "etc/munge/munge.key")


def add_secrets(std: Path, version: int = 1) -> None:
    """The default secrets with their owners, modes, a hard link, an attribute and an ACL."""
    (std / "etc/munge").mkdir(parents=True, exist_ok=True)
    for rel in ("etc/shadow", "etc/shadow-"):
        (std / rel).unlink(missing_ok=True)
    (std / "etc/shadow").write_text(f"root:$6$SHADOW-{version}:19000:0:99999:7:::\n")
    os.chown(std / "etc/shadow", 0, 42)
    (std / "etc/shadow").chmod(0o640)
    os.link(std / "etc/shadow", std / "etc/shadow-")
    (std / "etc/gshadow").write_text(f"root:*::GSHADOW-{version}\n")
    os.chown(std / "etc/gshadow", 0, 42)
    (std / "etc/gshadow").chmod(0o640)
    subprocess.run(["setfacl", "-m", "u:1234:r", str(std / "etc/gshadow")], check=True)
    key = std / "etc/munge/munge.key"
    key.write_bytes(f"MUNGE-{version}".encode() * 100)
    os.chown(key, 999, 998)
    key.chmod(0o400)
    os.setxattr(key, "trusted.origin", b"the standard")


def facts(path: Path) -> tuple[object, ...]:
    """What a secret must keep on the way: type, mode, owner, mtime, content, every xattr."""
    st = path.lstat()
    names = sorted(os.listxattr(path, follow_symlinks=False))
    attrs = tuple((n, os.getxattr(path, n, follow_symlinks=False)) for n in names)
    return (
        stat.S_IFMT(st.st_mode),
        stat.S_IMODE(st.st_mode),
        st.st_uid,
        st.st_gid,
        st.st_mtime_ns,
        path.read_bytes(),
        attrs,
    )


def use_rsync(node: Node, daemon: RsyncDaemon) -> None:
    write_control(node.control, transport="rsync", rsync_port=daemon.port)
    node.cmdline = node.cmdline.replace("transport=nfs", "transport=rsync")


def check_arrived(node: Node) -> None:
    with node.mounted(2) as root:
        for rel in SECRET_FILES:
            assert facts(root / rel) == facts(node.std / rel), rel
        assert (root / "etc/shadow").stat().st_ino == (root / "etc/shadow-").stat().st_ino
        # The directories on the way keep the generation's metadata, mtime included (not etc:
        # the node writes its own files there after the sync).
        assert facts_dir(root / "etc/munge") == facts_dir(node.tree() / "etc/munge")
        assert not (root / STATE / "secrets.new").exists()
        # The standard's host key is a secret no node takes: it keeps its own.
        assert not (root / "etc/ssh/ssh_host_ed25519_key").exists()


def facts_dir(path: Path) -> tuple[int, int, int, int]:
    st = path.lstat()
    return (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns)


@pytest.mark.parametrize("transport", ["nfs", "rsync"])
def test_secrets_arrive_at_boot_and_a_change_of_shadow_alone_reaches_the_node(
    node: Node, rsync_daemon: RsyncDaemon, transport: str
) -> None:
    if transport == "rsync":
        use_rsync(node, rsync_daemon)
    add_secrets(node.std)
    r = node.run()
    assert r.rc == 0, r
    assert re.search(r"secrets installed: 4 path\(s\)", r.out), r.out
    check_arrived(node)
    first = node.generation
    served = served_bytes(node.served)
    for content in (b"SHADOW-1", b"GSHADOW-1", b"MUNGE-1", b"SECRET OF THE UPDATE NODE"):
        assert content not in served
    if transport == "rsync":
        url = f"rsync://127.0.0.1:{rsync_daemon.port}/default/{first}/etc/shadow"
        got = subprocess.run(["rsync", url, str(node.tmp / "got")], capture_output=True)
        assert got.returncode != 0 and not (node.tmp / "got").exists()

    # Only the secret changes: a new generation, which the node takes as a delta.
    add_secrets(node.std, version=2)
    r = node.run()
    assert r.rc == 0, r
    assert node.generation != first
    assert "(normal, delta)" in r.out and "secrets installed" in r.out, r.out
    check_arrived(node)
    assert b"SHADOW-2" not in served_bytes(node.served)

    # Tampered on the node: the next whole-tree comparison puts the generation's back.
    with node.mounted(2) as root:
        (root / "etc/shadow").write_text("root::0:0:::::\n")
    r = node.run(CC_SYNC_MODE="full")
    assert r.rc == 0, r
    check_arrived(node)


def test_no_secrets_no_sync_the_earlier_copy_boots(node: Node) -> None:
    """The master refuses the secrets export (an address or port it does not accept): nothing
    is written, the node boots its last complete copy; a blank disk cannot boot."""
    add_secrets(node.std)
    node.env["CC_TEST_NO_SECRETS"] = "1"
    r = node.run()
    assert r.rc == 1, r
    assert "mounting the secrets of image default" in r.out, r.out
    del node.env["CC_TEST_NO_SECRETS"]
    r = node.run()
    assert r.rc == 0, r
    generation = node.generation
    (node.std / "etc/motd").write_text("a new generation\n")
    node.env["CC_TEST_NO_SECRETS"] = "1"
    r = node.run()
    assert r.rc == 2, r  # CC_RC_OLD: the earlier copy
    assert "the secrets of generation" in r.out and "BOOTING THE EARLIER COPY" in r.out, r.out
    with node.mounted(2) as root:
        assert (root / "etc/clustcontrol-generation").read_text().strip() == generation
        assert not (root / STATE / "sync-in-progress").exists()
        assert not (root / "etc/motd").exists()


def test_a_persistent_secret_is_seeded_once_then_the_nodes(node: Node) -> None:
    """A secret in a persistent path is the node's own once it holds it, like any other."""
    add_secrets(node.std)
    (node.std / "etc/local.conf").write_text("LOCAL-SECRET\n")  # persistent in the test image
    (node.std / "etc/local.conf").chmod(0o600)
    node.secrets = (*node.secrets, "etc/local.conf")
    r = node.run()
    assert r.rc == 0, r
    assert not (node.tree() / "etc/local.conf").exists()
    with node.mounted(2) as root:
        assert facts(root / "etc/local.conf") == facts(node.std / "etc/local.conf")
        (root / "etc/local.conf").write_text("the node's own\n")
    (node.std / "etc/local.conf").write_text("LOCAL-SECRET 2\n")
    r = node.run()
    assert r.rc == 0, r
    with node.mounted(2) as root:
        assert (root / "etc/local.conf").read_text() == "the node's own\n"
        assert facts(root / "etc/shadow") == facts(node.std / "etc/shadow")


def test_a_secret_link_and_the_key_it_leads_to_arrive_and_neither_is_served(node: Node) -> None:
    """munge.key -> keys/2024.key in the standard: the node gets both, the link and the key,
    from the secrets export; the served tree holds neither (before, it served the key)."""
    add_secrets(node.std)
    munge = node.std / "etc/munge"
    (munge / "keys").mkdir()
    (munge / "munge.key").rename(munge / "keys/2024.key")
    (munge / "munge.key").symlink_to("keys/2024.key")
    r = node.run()
    assert r.rc == 0, r
    assert b"MUNGE-1" not in served_bytes(node.served)
    assert not (node.tree() / "etc/munge/keys/2024.key").exists()
    with node.mounted(2) as root:
        assert os.readlink(root / "etc/munge/munge.key") == "keys/2024.key"
        assert facts(root / "etc/munge/keys/2024.key") == facts(munge / "keys/2024.key")
