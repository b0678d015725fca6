"""Extended attributes reach nodes exactly: file capabilities, POSIX ACLs and trusted.* and
security.* attributes, over NFS (v3 shows none: the generation's archive of them restores them)
and over the rsync daemon (-AX), and a change of attributes alone makes a generation."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.node.conftest import Node, RsyncDaemon, write_control
from tests.node.test_engine import assert_ok, record

TOOLS = ("setcap", "getcap", "setfacl", "getfacl")
pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None for t in TOOLS), reason="needs libcap2-bin and acl"
)


def getcap(path: Path) -> str:
    out = subprocess.run(["getcap", str(path)], capture_output=True, text=True, check=True).stdout
    return out.split(" ", 1)[1].strip() if " " in out else ""


def acl(path: Path) -> list[str]:
    out = subprocess.run(
        ["getfacl", "--omit-header", "--numeric", "--absolute-names", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in out.splitlines() if line]


def attributes(root: Path) -> dict[str, object]:
    """What must arrive: capabilities, ACLs and a trusted attribute, by path."""
    return {
        "cap": getcap(root / "usr/bin/pinger"),
        "cap2": getcap(root / "usr/bin/other"),
        "acl": acl(root / "srv/shared/report"),
        "default-acl": acl(root / "srv/shared"),
        "trusted": os.getxattr(root / "usr/share/doc/big", "trusted.cc.origin"),
    }


def decorate(std: Path) -> None:
    (std / "usr/bin").mkdir(parents=True, exist_ok=True)
    for name in ("pinger", "other"):
        (std / "usr/bin" / name).write_bytes(b"\x7fELF pretend " + name.encode())
        (std / "usr/bin" / name).chmod(0o755)
    subprocess.run(["setcap", "cap_net_raw+ep", str(std / "usr/bin/pinger")], check=True)
    (std / "srv/shared").mkdir(parents=True)
    (std / "srv/shared/report").write_text("for uid 1234\n")
    subprocess.run(["setfacl", "-m", "u:1234:r", str(std / "srv/shared/report")], check=True)
    subprocess.run(["setfacl", "-d", "-m", "g:2345:rx", str(std / "srv/shared")], check=True)
    os.setxattr(std / "usr/share/doc/big", "trusted.cc.origin", b"\x00binary\xff")


@pytest.mark.parametrize("transport", ["nfs", "rsync"])
def test_attributes_arrive_and_a_change_of_attributes_alone_is_a_generation(
    node: Node, rsync_daemon: RsyncDaemon, transport: str
) -> None:
    decorate(node.std)
    if transport == "rsync":
        write_control(node.control, transport="rsync", rsync_port=rsync_daemon.port)
        node.cmdline = node.cmdline.replace("transport=nfs", "transport=rsync")
    else:
        node.env["CC_TEST_NFS3_VIEW"] = str(node.tmp / "nfs3-view")
    r = node.run()
    assert_ok(r)
    if transport == "nfs":
        assert "(normal, tar)" in r.out, r.out
        # The four that have some, and their three directories (times restored).
        assert "extended attributes restored: 7 path(s)" in r.out, r.out
        # The stand-in for the NFSv3 export really shows no attributes.
        assert getcap(node.tmp / "nfs3-view" / node.generation / "usr/bin/pinger") == ""
    want = attributes(node.tree())
    assert want["cap"] == "cap_net_raw=ep" and want["cap2"] == ""
    with node.mounted(2) as root:
        assert attributes(root) == want
        for parent in ("usr/bin", "srv", "usr/share/doc"):  # extracting moved no mtime
            assert (root / parent).stat().st_mtime_ns == (node.tree() / parent).stat().st_mtime_ns

    # Only attributes change: a new generation, and its delta carries them.
    first = node.generation
    subprocess.run(
        ["setcap", "cap_net_bind_service+ep", str(node.std / "usr/bin/other")], check=True
    )
    subprocess.run(["setfacl", "-m", "u:1234:rw", str(node.std / "srv/shared/report")], check=True)
    time.sleep(0.01)
    r = node.run()
    assert node.generation != first
    assert_ok(r)
    assert "(normal, delta)" in r.out, r.out
    want = attributes(node.tree())
    assert want["cap2"] == "cap_net_bind_service=ep"
    with node.mounted(2) as root:
        assert attributes(root) == want
        assert record(root)["CC_SYNC_GENERATION"] == node.generation

    # A whole-tree comparison keeps them too (rsync -AX over NFS strips, the archive restores).
    node.cmdline += " clustcontrol.verify=1"
    assert_ok(node.run())
    with node.mounted(2) as root:
        assert attributes(root) == want


# GNU tar, but its first extraction of the attributes' archive dies as if killed (out of
# memory, or the oracle's kill of the copy tool): SIGKILL, exit status 137.
KILLED_ONCE_TAR = """#!/bin/sh
for arg; do
    case "$arg" in
    *clustcontrol-xattrs.tar)
        case " $* " in *" --extract "*)
            if [ ! -e "$0.killed" ]; then : >"$0.killed"; kill -KILL $$; fi ;;
        esac ;;
    esac
done
exec /usr/bin/tar "$@"
"""


def test_a_killed_extraction_of_the_attributes_is_retried(node: Node) -> None:
    """The oracle's finding: a tar killed while it restored the attributes over NFS failed the
    boot ("restoring extended attributes failed (tar status 137)"); it is retried like the
    copy, and the attributes arrive."""
    decorate(node.std)
    node.env["CC_TEST_NFS3_VIEW"] = str(node.tmp / "nfs3-view")
    tar = node.tmp / "killed-once-tar"
    tar.write_text(KILLED_ONCE_TAR)
    tar.chmod(0o755)
    r = node.run(CC_TAR=str(tar))
    assert_ok(r)
    assert Path(f"{tar}.killed").exists(), "the extraction was never killed"
    assert "extended attributes from " in r.out and "attempt 1 of" in r.out, r.out
    assert "extended attributes restored: 7 path(s)" in r.out, r.out
    with node.mounted(2) as root:
        assert attributes(root) == attributes(node.tree())
