"""`clustcontrol node rehearse` through the real command line: the real node engine on a disk
image file against generations committed with `clustcontrol image commit --root PREFIX`, and
nothing of it left on the host (mounts, loop devices, daemons, scratch directories), also when
the engine fails. The rehearsals need root (loop devices, mounts); the planning tests do not."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clustcontrol.errors import InvalidInputError
from clustcontrol.inventory.store import parse_inventory
from clustcontrol.rehearse import (
    MAX_SIZE,
    _locked_disk,
    fitting_size,
    kernel_cmdline,
    parse_size,
    plan_rehearsal,
    set_switches,
    standard_settings,
)
from clustcontrol.render import render_all
from clustcontrol.render.base import RenderContext
from tests.conftest import Cli, Result

IMAGE_ROOT = "srv/nfs4/clusternoderoot"
DISK = "72M"  # swap 4 MiB, root 40 MiB, persistent data the rest
SFDISK = "label: dos\nunit: sectors\n\n,4MiB,S\n,40MiB,L,*\n,,L\n"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (loop devices, mounts)")


def inventory() -> dict[str, Any]:
    """Two images: `default` (committed by the fixture) and `gpu` (never committed)."""
    layout = {
        "device": "/dev/sda",
        "sfdisk": SFDISK,
        "partitions": [
            {"number": 1, "use": "swap"},
            {"number": 2, "use": "root", "fs": "ext4"},
            {"number": 3, "use": "data", "fs": "ext4", "mount": "/scratch", "persistent": True},
        ],
    }
    return {
        "cluster": {
            "domain": "testclust",
            "network": "192.168.0.0/24",
            "master": {"name": "master", "ip": "192.168.0.1"},
            "sync_retries": 1,
        },
        "images": {
            "default": {"root": f"/{IMAGE_ROOT}", "persistent": ["/var/lib/keep"]},
            "gpu": {"root": "/srv/nfs4/gpu"},
        },
        "disk_layouts": {"default": layout},
        "nodes": [
            {"name": "node01", "mac": "52:54:00:00:00:01", "ip": "192.168.0.11"},
            {"name": "node02", "mac": "52:54:00:00:00:02", "ip": "192.168.0.12"},
            {"name": "node03", "mac": "52:54:00:00:00:03", "ip": "192.168.0.13", "image": "gpu"},
        ],
    }


@dataclass
class Cluster:
    cli: Cli
    prefix: Path

    @property
    def standard(self) -> Path:
        return self.prefix / IMAGE_ROOT

    def commit(self) -> str:
        result = self.cli("image", "commit", "default", "--root", self.prefix)
        assert result.code == 0, result.err
        return (
            (self.prefix / "var/lib/clustcontrol/images/default/roots/current").read_text().strip()
        )

    def rehearse(self, node: str, disk: Path, *args: str) -> Result:
        return self.cli("node", "rehearse", node, "--disk", disk, "--root", self.prefix, *args)

    def rehearse_json(self, node: str, disk: Path, *args: str) -> dict[str, Any]:
        result = self.rehearse(node, disk, "--output", "json", *args)
        assert result.code in (0, 1), result.err
        data: dict[str, Any] = json.loads(result.out)
        assert result.code == (0 if data["result"] == "synced" else 1), data
        return data


def build_standard(root: Path) -> None:
    for d in ("bin", "etc", "usr/share/doc", "var/lib/keep", "proc", "scratch"):
        (root / d).mkdir(parents=True)
    (root / "bin/tool").write_text("#!/bin/sh\necho tool 1\n")
    (root / "bin/tool").chmod(0o755)
    os.link(root / "bin/tool", root / "bin/tool-hardlink")
    (root / "bin/tool-symlink").symlink_to("tool")
    (root / "etc/hostname").write_text("updatenode\n")
    (root / "etc/fstab").write_text("# the standard's fstab\n")
    (root / "var/lib/keep/state").write_text("seed\n")
    (root / "usr/share/doc/big").write_bytes(os.urandom(256 * 1024))


@pytest.fixture
def cluster(cli: Cli, tmp_path: Path) -> Cluster:
    cli.config.write_text(json.dumps(inventory()))
    c = Cluster(cli, tmp_path / "prefix")
    build_standard(c.standard)
    return c


def leftovers(disk: Path) -> list[str]:
    """What a rehearsal must not leave on the host: loop devices of the disk, mounts of them,
    of its scratch directories or below the test's directory."""
    loops = subprocess.run(
        ["losetup", "-n", "-O", "NAME", "-j", str(disk)], capture_output=True, text=True
    ).stdout.split()
    marks = ("clustcontrol-rehearse", str(disk.parent), *loops)
    with Path("/proc/mounts").open() as f:
        mounts = [line.strip() for line in f if any(mark in line for mark in marks)]
    return loops + mounts


def scratch_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("clustcontrol-rehearse-*")}


def new_scratch_dirs(before: set[str]) -> set[str]:
    """The scratch directories made since `before` (scratch_dirs()) that are still there. (A
    rehearsal may remove older ones, left by killed rehearsals: those are not compared. Other
    rehearsals running on the machine meanwhile, such as other test runs, show up here too.)"""
    return scratch_dirs() - before


def daemons() -> list[str]:
    """Command lines of running rsync daemons started by a rehearsal (their config lies in the
    scratch directory)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            words = cmdline.read_bytes().split(b"\0")
            if b"--daemon" in words and any(b"clustcontrol-rehearse-" in w for w in words):
                found.append(b" ".join(words).decode(errors="replace"))
    return found


@contextlib.contextmanager
def node_root(disk: Path) -> Iterator[Path]:
    """The disk's root partition (2), mounted read-only for a look."""
    loop = subprocess.run(
        ["losetup", "-f", "--show", "-P", str(disk)], check=True, capture_output=True, text=True
    ).stdout.strip()
    mnt = disk.parent / "inspect"
    mnt.mkdir(exist_ok=True)
    try:
        subprocess.run(["partx", "-u", loop], check=False, capture_output=True)
        subprocess.run(["mount", "-o", "ro", f"{loop}p2", str(mnt)], check=True)
        try:
            yield mnt
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
    finally:
        subprocess.run(["losetup", "-d", loop], check=True)
        deadline = time.monotonic() + 10
        while leftovers(disk) and time.monotonic() < deadline:
            time.sleep(0.05)


@needs_root
def test_first_boot_then_skip_then_delta(cluster: Cluster, tmp_path: Path) -> None:
    first_generation = cluster.commit()
    disk = tmp_path / "node01.img"
    before = scratch_dirs()

    first = cluster.rehearse_json("node01", disk, "--size", DISK)
    assert (first["layout"], first["layout_action"]) == ("blank", "partitioned")
    assert (first["method"], first["result"], first["status"]) == ("tar", "synced", 0)
    assert first["generation"] == first["current_generation"] == first_generation
    assert first["bytes_moved"] > 256 * 1024 and first["files"] is None
    assert first["cmdline"] == (
        "root=/dev/sda2 ip=dhcp clustcontrol.server=192.168.0.1 clustcontrol.image=default "
        "clustcontrol.transport=nfs "
        "clustcontrol.imageroot=/var/lib/clustcontrol/images/default/roots "
        "BOOTIF=01-52-54-00-00-00-01"
    )
    assert disk.stat().st_size == 72 << 20
    assert leftovers(disk) == [] and not new_scratch_dirs(before)
    with node_root(disk) as root:  # the engine wrote the node's disk
        assert (root / "bin/tool").read_text() == "#!/bin/sh\necho tool 1\n"
        assert (root / "etc/hostname").read_text() == "node01\n"
        assert (root / "var/lib/keep/state").read_text() == "seed\n"

    second = cluster.rehearse("node01", disk)  # the table, for people
    assert second.code == 0, second.err
    assert "same -> kept" in second.out and "│ skip " in second.out
    assert f"{first_generation} (master: {first_generation})" in second.out
    assert "kernel command line: root=/dev/sda2 " in second.out
    assert leftovers(disk) == []

    (cluster.standard / "bin/tool").write_text("#!/bin/sh\necho tool 2\n")
    second_generation = cluster.commit()
    assert second_generation != first_generation
    third = cluster.rehearse_json("node01", disk)
    assert (third["layout"], third["layout_action"]) == ("same", "kept")
    assert (third["method"], third["result"]) == ("batch", "synced")  # the master's batch, replayed
    assert third["files"] >= 1 and 0 < third["bytes_moved"] < 64 * 1024
    assert third["generation"] == third["current_generation"] == second_generation
    assert leftovers(disk) == [] and not new_scratch_dirs(before)
    with node_root(disk) as root:
        assert (root / "bin/tool").read_text() == "#!/bin/sh\necho tool 2\n"


@needs_root
def test_rsync_transport(cluster: Cluster, tmp_path: Path) -> None:
    generation = cluster.commit()
    disk = tmp_path / "node02.img"
    data = cluster.rehearse_json("node02", disk, "--size", DISK, "--transport", "rsync")
    assert (data["layout"], data["method"], data["result"]) == ("blank", "tree", "synced")
    assert data["generation"] == generation and data["files"] >= 4
    assert "clustcontrol.server=127.0.0.1" in data["cmdline"]
    assert "clustcontrol.transport=rsync" in data["cmdline"]
    assert "clustcontrol.rsyncport=" in data["cmdline"]
    assert "transport rsync, not the image's nfs" in data["notes"]
    assert leftovers(disk) == [] and daemons() == []
    with node_root(disk) as root:
        assert (root / "etc/hostname").read_text() == "node02\n"


@needs_root
@pytest.mark.parametrize("transport", ["nfs", "rsync"])
def test_secrets_reach_the_rehearsed_node(cluster: Cluster, tmp_path: Path, transport: str) -> None:
    """The rehearsal serves the image's secrets as the master's secrets export would: the node
    installs /etc/shadow from the generation's archive, whatever the transport."""
    shadow = cluster.standard / "etc/shadow"
    shadow.write_text("root:$6$REHEARSED:19000:0:99999:7:::\n")
    os.chown(shadow, 0, 42)
    shadow.chmod(0o640)
    cluster.commit()
    disk = tmp_path / "node01.img"
    data = cluster.rehearse_json("node01", disk, "--size", DISK, "--transport", transport)
    assert data["result"] == "synced", data
    assert leftovers(disk) == []
    with node_root(disk) as root:
        st = (root / "etc/shadow").stat()
        assert (root / "etc/shadow").read_text() == shadow.read_text()
        assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o640, 0, 42)


@needs_root
def test_standard_conf_d_settings_and_a_stale_control_directory(
    cluster: Cluster, tmp_path: Path
) -> None:
    confd = cluster.standard / "etc/initramfs-tools/conf.d"
    confd.mkdir(parents=True)
    (confd / "clustcontrol-local").write_text("CC_FIRST_COPY=rsync\nCC_RETRY_BASE=30\n")
    cluster.commit()
    installed = cluster.prefix / "etc/clustcontrol"  # unusable: the node would not sync
    installed.mkdir(parents=True)
    (installed / "default").write_text("not a parameter\n")
    data = cluster.rehearse_json("node01", tmp_path / "d.img", "--size", DISK)
    assert (data["layout"], data["method"], data["result"]) == ("blank", "tree", "synced")
    assert "settings from the standard's conf.d: CC_FIRST_COPY=rsync" in data["notes"]
    assert any(f"installed in {installed} differs" in note for note in data["notes"])


@needs_root
def test_engine_failure_leaves_nothing_behind(cluster: Cluster, tmp_path: Path) -> None:
    """A standard larger than the node's root: the copy fails half-way (mounts live), the node
    cannot boot (exit 1), and the host keeps nothing of the rehearsal."""
    with (cluster.standard / "usr/share/doc/huge").open("wb") as f:
        for _ in range(48):
            f.write(os.urandom(1 << 20))
    cluster.commit()
    disk = tmp_path / "node01.img"
    before = scratch_dirs()
    result = cluster.rehearse("node01", disk, "--size", DISK)
    assert result.code == 1, result.out + result.err
    assert "│ result     │ failed" in result.out
    assert "ERROR" in result.err
    assert leftovers(disk) == [] and daemons() == [] and not new_scratch_dirs(before)
    data = cluster.rehearse_json("node01", disk, "--transport", "rsync")
    assert data["result"] == "failed" and data["layout"] == "same"
    assert leftovers(disk) == [] and daemons() == [] and not new_scratch_dirs(before)


@needs_root
@pytest.mark.parametrize(
    ("node", "disk", "message"),
    [
        ("node03", "new.img", "images.gpu: no committed generation in "),
        ("node09", "new.img", "nodes.node09: no such node"),
        ("node01", "/dev/null", "--disk: '/dev/null' is not a regular file"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    cluster: Cluster, tmp_path: Path, node: str, disk: str, message: str
) -> None:
    cluster.commit()
    path = tmp_path / disk
    result = cluster.rehearse(node, path)
    assert result.code == 2
    assert result.err.splitlines() == [result.err.strip()]
    assert result.err.startswith(f"clustcontrol: error: {message}")
    assert not (tmp_path / "new.img").exists()


@needs_root
def test_size_of_an_existing_disk_must_match(cluster: Cluster, tmp_path: Path) -> None:
    cluster.commit()
    disk = tmp_path / "old.img"
    with disk.open("wb") as f:
        f.truncate(72 << 20)
    result = cluster.rehearse("node01", disk, "--size", "1G")
    assert result.code == 2
    assert result.err == (
        f"clustcontrol: error: --size: {1 << 30} bytes, but '{disk}' exists with {72 << 20} "
        "bytes (remove it to rehearse on a new disk)\n"
    )
    assert disk.stat().st_size == 72 << 20 and disk.stat().st_blocks == 0


# --- planning, no root needed ------------------------------------------------------------------

NOT_A_SIZE = (
    "is not a size: digits (bytes), optionally with K, M, G or T (binary) and iB after them, "
    "e.g. 512M, 4GiB"
)
# What SFDISK needs: 1 MiB of alignment, 4 MiB swap, 40 MiB root, at least 1 MiB for the rest
# (sfdisk refuses 45 MiB).
SFDISK_MINIMUM = 46


def rehearse_in(
    cluster: Cluster, cwd: Path, *args: str, file_size_limit: int | None = None
) -> Result:
    """`node rehearse` run in the directory `cwd` (relative --disk values are taken from there),
    with RLIMIT_FSIZE set to `file_size_limit` bytes when given (a file system that holds no
    larger file: ftruncate fails with EFBIG)."""

    def limit() -> None:
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    argv = [sys.executable, "-m", "clustcontrol", "--config", str(cluster.cli.config)]
    argv += ["node", "rehearse", "--root", str(cluster.prefix), *args]
    proc = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, preexec_fn=limit, timeout=300
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.parametrize(
    ("args", "limit", "line"),
    [
        (["--size", "99999999999999999999999G"], None,
         "--size: '99999999999999999999999G' is more than 1024 TiB"),
        (["--size", "1025T"], None, "--size: '1025T' is more than 1024 TiB"),
        (["--size", "2G"], 1 << 30,
         "--size: '2G' is more than a file in '{cwd}' can hold here (File too large)"),
        (["--size", "1M"], None,
         "--size: '1M' (1 MiB) is too small for disk_layouts.default (node node01): it needs at "
         f"least {SFDISK_MINIMUM} MiB"),
        (["--size", f"{SFDISK_MINIMUM - 1}M"], None,
         f"--size: '{SFDISK_MINIMUM - 1}M' ({SFDISK_MINIMUM - 1} MiB) is too small for "
         f"disk_layouts.default (node node01): it needs at least {SFDISK_MINIMUM} MiB"),
        (["--size", "1G\n"], None, f"--size: '1G\\n' {NOT_A_SIZE}"),
        (["--size", " 1G"], None, f"--size: ' 1G' {NOT_A_SIZE}"),
        (["--size", "1G "], None, f"--size: '1G ' {NOT_A_SIZE}"),
        (["--size", "1g"], None, f"--size: '1g' {NOT_A_SIZE}"),
        (["--size", "1GB"], None, f"--size: '1GB' {NOT_A_SIZE}"),
        (["--size", "1K"], None, "--size: '1K' is less than 1 MiB"),
        (["--disk", ""], None, "--disk: '' does not name a file"),
        (["--disk", "."], None, "--disk: '.' does not name a file"),
        (["--disk", "sub/"], None, "--disk: 'sub/' does not name a file"),
        (["--disk", "sub/.."], None, "--disk: 'sub/..' does not name a file"),
        (["--disk", "nodir/new.img"], None,
         "--disk: 'nodir/new.img': no such directory or a dangling link"),
        (["--disk", "sub"], None,
         "--disk: 'sub' is not a regular file (a rehearsal writes to an image)"),
    ],
)  # fmt: skip
def test_bad_disk_or_size_exits_2_with_one_line_and_writes_nothing(
    cluster: Cluster, tmp_path: Path, args: list[str], limit: int | None, line: str
) -> None:
    """One line naming the option and its value as given, exit 2, no disk file made (before
    the size checks, an overflowing size gave a traceback and a too large one 'File too
    large', exit 1, and both left an empty file; a size the layout does not fit ran the engine
    into a misleading failure; "" named the current directory)."""
    cluster.commit()
    cwd = tmp_path / "here"
    (cwd / "sub").mkdir(parents=True)
    argv = [*args, "node01"]
    if "--disk" not in args:
        argv += ["--disk", "new.img"]
    result = rehearse_in(cluster, cwd, *argv, file_size_limit=limit)
    assert (result.code, result.err) == (2, f"clustcontrol: error: {line.format(cwd=cwd)}\n")
    assert sorted(p.name for p in cwd.rglob("*")) == ["sub"]


def test_a_size_larger_than_the_file_system_takes(cluster: Cluster, tmp_path: Path) -> None:
    """The reviewer's case, on the real file system: 17 TiB where it holds no such file
    (ext4 with 4 KiB blocks: 16 TiB less a block)."""
    with tempfile.TemporaryFile(dir=tmp_path) as f:
        try:
            os.ftruncate(f.fileno(), 17 << 40)
        except OSError:
            pass
        else:
            pytest.skip("this file system takes a 17 TiB file")
    cluster.commit()
    result = rehearse_in(cluster, tmp_path, "node01", "--disk", "big.img", "--size", "17T")
    assert (result.code, result.err) == (
        2,
        f"clustcontrol: error: --size: '17T' is more than a file in '{tmp_path}' can hold here "
        "(File too large)\n",
    )
    assert not (tmp_path / "big.img").exists()


def test_parse_size() -> None:
    assert parse_size("4G") == parse_size("4GiB") == 4 << 30
    assert parse_size("512M") == parse_size("524288K") == 512 << 20
    assert parse_size("1048576") == parse_size("0001M") == 1 << 20
    assert parse_size("1024T") == MAX_SIZE
    for bad in ("4X", "-1G", "", "1K", "512m", "1g", "1GB", "1B", "1 G", " 1G", "1G\n", "+1G",
                "1e9", "4\u0663G", "1025T", "9" * 5000):  # fmt: skip
        with pytest.raises(ValueError):
            parse_size(bad)


@given(st.text(alphabet="0123456789KMGTiB \n\t-+.", max_size=12))
def test_parse_size_takes_digits_and_a_binary_unit_only(text: str) -> None:
    """Oracle: digits, then nothing or one of K, M, G, T optionally followed by iB, from 1 MiB
    to 1024 TiB; everything else is refused."""
    expected = None
    for unit, shift in (("", 0), ("K", 10), ("M", 20), ("G", 30), ("T", 40)):
        for suffix in {unit, f"{unit}iB" if unit else unit}:
            number = text[: len(text) - len(suffix)]
            if text.endswith(suffix) and number.isascii() and number.isdigit():
                expected = int(number) << shift
    if expected is not None and 1 << 20 <= expected <= 1 << 50:
        assert parse_size(text) == expected
    else:
        with pytest.raises(ValueError):
            parse_size(text)


def test_a_new_disk_fits_the_layout(tmp_path: Path) -> None:
    readme_layout = "label: dos\n,2GiB,S\n,16GiB,L,*\n,,L\n"
    too_large = "label: gpt\n,2000GiB,L\n,4GiB,L\n"
    assert fitting_size(SFDISK, "sfdisk", tmp_path) == 4 << 30
    assert fitting_size(readme_layout, "sfdisk", tmp_path) == 32 << 30
    assert fitting_size(too_large, "sfdisk", tmp_path) is None
    assert list(tmp_path.iterdir()) == []


def test_a_layout_no_default_size_fits_is_refused(tmp_path: Path) -> None:
    data = inventory()
    data["disk_layouts"]["default"]["sfdisk"] = "label: gpt\n,2000GiB,L\n,4GiB,L\n"
    inv = parse_inventory(data)
    with pytest.raises(InvalidInputError) as info:
        plan_rehearsal(inv, "node01", tmp_path / "d.img", root_prefix=tmp_path)
    assert info.value.problems[0] == (
        "disk_layouts.default (node node01): the layout fits no disk of up to 1 TiB (sfdisk): "
        "give a larger --size"
    )
    with pytest.raises(InvalidInputError) as info:
        plan_rehearsal(inv, "node01", tmp_path / "d.img", root_prefix=tmp_path, size="100G")
    assert info.value.problems[0] == (
        "--size: '100G' (100 GiB) is too small for disk_layouts.default (node node01): it needs "
        "more than 1 TiB"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("size", [1 << 70, 2 << 30])
def test_a_disk_file_that_cannot_be_made_that_large_is_removed(tmp_path: Path, size: int) -> None:
    """Past the checks (a file system that fills meanwhile, a size too large for the C call):
    the file _locked_disk created is removed again, the error raised."""
    disk = tmp_path / "d.img"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 30, hard))
    try:
        with pytest.raises((OSError, OverflowError)), _locked_disk(disk, size):
            pass
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert list(tmp_path.iterdir()) == []


def test_kernel_cmdline_is_the_label_pxelinux_gives_the_node() -> None:
    data = inventory()
    data["nodes"][1]["kernel_args"] = ["clustcontrol.verify=1"]
    inv = parse_inventory(data)
    tree = render_all(RenderContext(inventory=inv))
    nodes = {n.name: n for n in inv.nodes}
    regular = kernel_cmdline(inv, tree, nodes["node01"])  # pxelinux.cfg/default: label linux
    own = kernel_cmdline(inv, tree, nodes["node02"])  # pxelinux.cfg/C0A8000C: linux-node02
    gpu = kernel_cmdline(inv, tree, nodes["node03"])
    assert regular.endswith("clustcontrol.imageroot=/var/lib/clustcontrol/images/default/roots "
                            "BOOTIF=01-52-54-00-00-00-01")  # fmt: skip
    assert own.endswith(" clustcontrol.verify=1 BOOTIF=01-52-54-00-00-00-02")
    assert "clustcontrol.image=gpu " in gpu
    assert set_switches(regular, {"clustcontrol.transport": "rsync", "x.y": "1"}) == (
        regular.replace("transport=nfs", "transport=rsync") + " x.y=1"
    )


def test_update_node_is_not_rehearsed(tmp_path: Path) -> None:
    data = inventory()
    data["update_node"] = {"node": "node02"}
    with pytest.raises(InvalidInputError) as info:
        plan_rehearsal(parse_inventory(data), "node02", tmp_path / "d.img", root_prefix=tmp_path)
    assert info.value.problems == [
        "nodes.node02: the update node boots image default read-write over NFS, without a sync: "
        "nothing to rehearse (clustcontrol update-node clear first)"
    ]
    assert not (tmp_path / "d.img").exists()


def test_standard_settings(tmp_path: Path) -> None:
    confd = tmp_path / "etc/initramfs-tools/conf.d"
    confd.mkdir(parents=True)
    (confd / "clustcontrol").write_text(
        ": \"${CC_ENGINE_DIR:=/usr/share/clustcontrol/engine}\"\n#CC_FIRST_COPY='tar'\n"
        "CC_DELTA_SYNC='yes'\nCC_STATE_DIR=\"/var/lib/node state\"\n"
    )
    (confd / "clustcontrol-local").write_text(
        "CC_DELTA_SYNC=no\nCC_RSYNC_EXTRA=$(reboot)\nCC_RUN_DIR=/x\nCC_WARN_PAUSE=60\n"
    )
    settings, notes = standard_settings(tmp_path)
    assert settings == {"CC_DELTA_SYNC": "no", "CC_STATE_DIR": "/var/lib/node state"}
    assert notes == [
        "/etc/initramfs-tools/conf.d/clustcontrol-local:2: CC_RSYNC_EXTRA is not a literal "
        "value: not used"
    ]


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_a_rehearsal_stopped_half_way_leaves_nothing_running(
    cluster: Cluster, tmp_path: Path, how: signal.Signals
) -> None:
    """Stopped while the engine copies (TERM, Ctrl-C, KILL): the engine in the namespace dies
    with it, nothing stays mounted, no daemon runs; TERM and Ctrl-C also detach the disk and
    remove the scratch directory, and exit 130."""
    if os.geteuid() != 0:
        pytest.skip("needs root (loop devices, mounts)")
    with (cluster.standard / "usr/share/doc/slow").open("wb") as f:
        f.write(os.urandom(24 << 20))
    cluster.commit()
    disk = tmp_path / "node01.img"
    before = scratch_dirs()
    argv = [sys.executable, "-m", "clustcontrol", "--config", str(cluster.cli.config)]
    argv += ["node", "rehearse", "node01", "--disk", str(disk), "--size", DISK]
    argv += ["--root", str(cluster.prefix)]
    # A slow copy: rsync limited to 2 MB/s from the standard's own settings.
    conf = cluster.standard / "etc/initramfs-tools/conf.d"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "clustcontrol-local").write_text("CC_FIRST_COPY=rsync\nCC_RSYNC_EXTRA=--bwlimit=2m\n")
    cluster.commit()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not _copying():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(how)
    out, err = proc.communicate(timeout=60)
    deadline = time.monotonic() + 15
    while _copying() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _copying()  # the engine is gone
    assert daemons() == []
    with Path("/proc/mounts").open() as f:
        assert not [line for line in f if "clustcontrol-rehearse" in line]
    if how != signal.SIGKILL:
        assert proc.returncode == 130, out + err
        assert "interrupted" in err
        assert leftovers(disk) == [] and not new_scratch_dirs(before)
    else:  # nothing runs in the killed process: the next rehearsal says what is left
        loops = subprocess.run(
            ["losetup", "-n", "-O", "NAME", "-j", str(disk)], capture_output=True, text=True
        ).stdout.split()
        for loop in loops:
            subprocess.run(["losetup", "-d", loop], check=False)
        # Its scratch directory (its lock file names it by PID) stays until the next rehearsal.
        left = [p for p in new_scratch_dirs(before) if _lock_owner(p) == proc.pid]
        assert len(left) == 1, new_scratch_dirs(before)
        stale = Path(tempfile.gettempdir(), left[0])
        (conf / "clustcontrol-local").unlink()  # a quick copy this time
        cluster.commit()
        data = cluster.rehearse_json("node02", tmp_path / "next.img", "--size", DISK)
        assert data["result"] == "synced"
        assert not stale.exists()
        assert f"removed {stale}, left by a rehearsal that was killed" in data["notes"]
        assert not new_scratch_dirs(before)


def _lock_owner(name: str) -> int | None:
    """The PID in the lock file of the scratch directory `name` (scratchdir.py), if any."""
    try:
        return int(Path(tempfile.gettempdir(), name, "lock").read_text())
    except (OSError, ValueError):
        return None


def _copying() -> bool:
    """Whether a rehearsal's engine is copying: its rsync, writing into a rehearsal's scratch
    directory (other tests on the machine run rsync too)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            line = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if line.startswith("rsync -aHAXx") and "clustcontrol-rehearse-" in line:
                return True
    return False
