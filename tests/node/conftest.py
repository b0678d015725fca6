"""Fixtures for the node-side sync engine: a test standard root, its control directory rendered
by the real renderer, a loop-device disk, an rsync daemon, and a runner that executes the shell
functions under busybox sh the way the initramfs does (busybox applets first in PATH, the real
rsync/sfdisk/mke2fs/blkid/e2fsck/mkswap/partx after them)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from clustcontrol.contract import (
    CONTROL_DIR,
    SECRET_PATTERNS,
    STATE_DIR,
    generation_roots,
    secrets_store,
)
from clustcontrol.image.commit import commit_tree
from clustcontrol.image.generation import GenerationStore
from clustcontrol.inventory.store import parse_inventory
from clustcontrol.rehearse import APPLETS as REHEARSAL_APPLETS
from clustcontrol.rehearse import applets_dir, engine_command, engine_environment
from clustcontrol.render import render_all
from clustcontrol.render.base import RenderContext
from clustcontrol.render.control import render_control
from tests.mountns import private_mount_namespace

NODE_DIR = Path(__file__).resolve().parents[2] / "src" / "clustcontrol" / "node"
ENGINE = NODE_DIR / "engine"
BUSYBOX = "/bin/busybox"
IMAGE_ROOT = "/srv/nfs4/teststandard"
# The image's generation roots as the control files name them (what the node mounts over NFS).
SERVED_PATH = generation_roots(STATE_DIR, "default")
SECRETS_PATH = secrets_store(STATE_DIR, "default")  # its secrets export
DISK_MIB = 72
PERSISTENT = ("/var/lib/keep", "/etc/local.conf")  # the test inventory's image's

# Small layouts for a 72 MiB test disk: swap, root, persistent data partition.
SFDISK_A = "label: dos\nunit: sectors\n\n,4MiB,S\n,40MiB,L,*\n,,L\n"
SFDISK_B = "label: dos\nunit: sectors\n\n,4MiB,S\n,44MiB,L,*\n,,L\n"

# Applets the Debian initramfs takes from busybox (one list, the rehearsal's); everything else
# comes from the host.
APPLETS = list(REHEARSAL_APPLETS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def inventory_dict(
    sfdisk: str = SFDISK_A,
    transport: str = "nfs",
    rsync_port: int = 873,
    control_dir: str = "/etc/clustcontrol",
) -> dict[str, object]:
    return {
        "cluster": {
            "control_dir": control_dir,
            "domain": "testclust",
            "network": "192.168.0.0/24",
            "master": {"name": "master", "ip": "192.168.0.1"},
            "transport": transport,
            "rsync_port": rsync_port,
            "sync_retries": 1,
        },
        "images": {
            "default": {
                "root": IMAGE_ROOT,
                "persistent": list(PERSISTENT),
                "boot_interface": "eth0",
            }
        },
        "disk_layouts": {
            "default": {
                "device": "/dev/sda",
                "sfdisk": sfdisk,
                "partitions": [
                    {"number": 1, "use": "swap"},
                    {"number": 2, "use": "root"},
                    {"number": 3, "use": "data", "mount": "/scratch", "persistent": True},
                ],
            }
        },
        "nodes": [
            {"name": "node01", "mac": "52:54:00:00:00:01", "ip": "192.168.0.11"},
            {"name": "node02", "mac": "52:54:00:00:00:02", "ip": "192.168.0.12"},
        ],
    }


def module_sh(modules: list[str], body: str, **env: str) -> tuple[int, str]:
    """BODY under busybox sh with only contract.sh, log.sh and MODULES sourced (from the source
    tree), after cc_defaults: a module's unit test sees what it needs and nothing else.

    Returns (exit status, stdout + stderr)."""
    sources = "".join(f". '{ENGINE}/{m}.sh'\n" for m in ("contract", "log", *modules))
    proc = subprocess.run(
        [BUSYBOX, "sh", "-c", f"set -u\n{sources}cc_defaults\n{body}"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CC_LOG": "", "CC_WARN_PAUSE": "0", **env},
    )
    return proc.returncode, proc.stdout + proc.stderr


def write_control(dest: Path, **kw: object) -> None:
    """Render the control directory with the real renderer into DEST (replacing it)."""
    inv = parse_inventory(inventory_dict(**kw))  # type: ignore[arg-type]
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for out in render_control(RenderContext(inventory=inv)):
        rel = Path(out.path).relative_to(inv.cluster.control_dir)
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(out.data())


def pxe_append(**kw: object) -> list[str]:
    """The APPEND lines of the sync labels PXELINUX gets (pxelinux-common), rendered by the real
    renderer from inventory_dict(**kw): the kernel command lines of the nodes."""
    inv = parse_inventory(inventory_dict(**kw))  # type: ignore[arg-type]
    tree = render_all(RenderContext(inventory=inv))
    common = next(o for path, o in tree.outputs.items() if path.endswith("/pxelinux-common"))
    return [
        line.split("APPEND ", 1)[1]
        for line in common.data().decode().splitlines()
        if line.strip().startswith("APPEND") and "clustcontrol.server=" in line
    ]


def build_standard(std: Path) -> None:
    """A small standard root: files, a hard link, a symlink, persistent paths, and files that
    must not reach a node (machine-id, SSH host keys of the update node)."""
    for d in (
        "bin",
        "etc/network",
        "etc/ssh",
        "usr/share/doc",
        "var/lib/keep",
        "proc",
        "dev",
        "tmp",
        "scratch",
    ):
        (std / d).mkdir(parents=True, exist_ok=True)
    (std / "bin/tool").write_text("#!/bin/sh\necho tool\n")
    (std / "bin/tool").chmod(0o755)
    os.link(std / "bin/tool", std / "bin/tool-hardlink")
    (std / "bin/tool-symlink").symlink_to("tool")
    (std / "etc/hostname").write_text("updatenode\n")
    (std / "etc/hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\tupdatenode\n")
    (std / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (std / "etc/ssh/ssh_host_ed25519_key").write_text("SECRET OF THE UPDATE NODE\n")
    (std / "etc/fstab").write_text("# the update node's fstab\n")
    (std / "etc/network/interfaces").write_text(
        "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet static\n"
        "    address 192.168.0.253\n    netmask 255.255.255.0\n\niface eth1 inet dhcp\n"
    )
    (std / "etc/local.conf").write_text("standard version\n")
    (std / "var/lib/keep/state").write_text("standard seed\n")
    (std / "usr/share/doc/big").write_bytes(os.urandom(512 * 1024))
    (std / "proc/should-not-copy").write_text("x\n")


@dataclass
class Result:
    rc: int
    out: str

    def __str__(self) -> str:
        return f"rc={self.rc}\n{self.out}"


def commit(
    std: Path, store: Path, *, keep: int = 3, secrets: tuple[str, ...] = SECRET_PATTERNS
) -> str:
    """`image commit` of the working tree std into the generation store at `store` (the real
    master code): the new generation's id, or the current one when nothing changed. `secrets`:
    the image's secret patterns (relative), the contract's by default."""
    image = inventory_dict()["images"]["default"]  # type: ignore[index]
    result = commit_tree(
        "default",
        std,
        GenerationStore(store),
        control_dir=CONTROL_DIR,
        keep=keep,
        node_excluded=(*image["persistent"], "/scratch"),  # the layout's data partition
        secrets=secrets,
    )
    return result.generation


@dataclass
class Node:
    """One simulated node: a loop-device disk, a run dir, the working tree of the standard
    (`std`) and the generation store it is committed into (`store`; `served` is what the
    master serves: the NFS export and the rsync module)."""

    tmp: Path
    std: Path
    disk: str
    bbdir: Path
    env: dict[str, str] = field(default_factory=dict)
    cmdline: str = ""
    generation: str = ""
    secrets: tuple[str, ...] = SECRET_PATTERNS  # the image's secret patterns

    @property
    def store(self) -> Path:
        return self.tmp / "state/images/default"

    @property
    def served(self) -> Path:
        return self.store / "roots"

    @property
    def control(self) -> Path:
        """The control directory as the master serves it (bind-mounted into `served`)."""
        return self.served / "etc/clustcontrol"

    def commit(self, *, keep: int = 3) -> str:
        """`image commit`: the working tree becomes a new generation when it changed."""
        self.generation = commit(self.std, self.store, keep=keep, secrets=self.secrets)
        return self.generation

    def tree(self, generation: str | None = None) -> Path:
        """A generation's tree (default: the last committed)."""
        return self.served / (generation or self.generation)

    @property
    def run_dir(self) -> Path:
        return self.tmp / "run"

    @property
    def target(self) -> Path:
        return self.run_dir / "target"

    def part(self, n: int) -> str:
        return f"{self.disk}p{n}"

    def script(self, body: str) -> str:
        return (
            # The NFS mount replaced by a read-only bind mount of the served generations; with
            # CC_TEST_NFS3_VIEW, of a copy without extended attributes and ACLs, as NFSv3 shows
            # the files.
            # The image's secrets export (CC_TEST_SECRETS_ROOT) is a read-only bind mount of
            # the store's secrets directory, unless CC_TEST_NO_SECRETS says the master refuses.
            "cc_test_nfs() {\n"
            '  if [ "$1" = "${CC_TEST_SERVER}:${CC_TEST_SECRETS_ROOT}" ]; then\n'
            '    [ -z "${CC_TEST_NO_SECRETS:-}" ] || { echo "access denied" >&2; return 1; }\n'
            '    mount -o bind "${CC_TEST_SECRETS}" "$2" && mount -o remount,ro,bind "$2"\n'
            "    return\n"
            "  fi\n"
            '  [ "$1" = "${CC_TEST_SERVER}:${CC_TEST_IMAGE_ROOT}" ] ||\n'
            '    { echo "bad spec $1" >&2; return 1; }\n'
            '  local from="${CC_TEST_SERVED}"\n'
            '  if [ -n "${CC_TEST_NFS3_VIEW:-}" ]; then\n'
            # --modify-window=-1: rsync compares whole seconds otherwise, and a directory whose
            # mtime moved within its second would keep the earlier one in the view. --sparse:
            # NFSv3 shows a file's allocation (st_blocks), holes included.
            '    rsync -aH --sparse --checksum --modify-window=-1 --delete "${from}/" \\\n'
            '      "${CC_TEST_NFS3_VIEW}/" || return 1\n'
            '    from="${CC_TEST_NFS3_VIEW}"\n'
            "  fi\n"
            '  mount -o bind "${from}" "$2" && mount -o remount,ro,bind "$2"\n'
            "}\n"
            f"{body}\n"
        )

    def environ(self, **extra: str) -> dict[str, str]:
        cmdline = self.tmp / "cmdline"
        cmdline.write_text(self.cmdline + "\n")
        settings = {
            "CC_CMDLINE_FILE": str(cmdline),
            "CC_BAKED_CONTROL": str(self.control),
            "CC_DISK_OVERRIDE": self.disk,
            "CC_NFS_MOUNT": "cc_test_nfs",
            "CC_TEST_SERVED": str(self.served),
            "CC_TEST_SERVER": "127.0.0.1",
            "CC_TEST_IMAGE_ROOT": SERVED_PATH,
            "CC_TEST_SECRETS": str(self.store / "secrets"),
            "CC_TEST_SECRETS_ROOT": SECRETS_PATH,
            "CC_RETRY_BASE": "0",
            "CC_WARN_PAUSE": "0",
            "CC_DISK_WAIT": "1",
            "CC_NODE_HOSTNAME": "node01",
            "CC_NODE_MAC": "52:54:00:00:00:01",
            "CC_NET_CONF_DIR": str(self.tmp / "no-net-conf"),
            **self.env,
            **extra,
        }
        return engine_environment(self.bbdir, self.run_dir, settings)

    def sh(self, body: str, **extra: str) -> Result:
        proc = subprocess.run(
            engine_command(BUSYBOX, self.script(body)),
            env=self.environ(**extra),
            capture_output=True,
            text=True,
            errors="backslashreplace",  # file names in messages need not be UTF-8
            timeout=120,
        )
        return Result(proc.returncode, proc.stdout + proc.stderr)

    def popen(self, body: str, **extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            engine_command(BUSYBOX, self.script(body)),
            env=self.environ(**extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="backslashreplace",
            start_new_session=True,
        )

    def run(self, *, commit: bool = True, **extra: str) -> Result:
        """The whole engine: cc_run; its return code is the process exit code. First the
        working tree is committed (a no-op when it did not change), unless `commit` is off."""
        if commit:
            self.commit()
        return self.sh("cc_run", **extra)

    @contextlib.contextmanager
    def mounted(self, n: int = 2) -> Iterator[Path]:
        mnt = self.tmp / f"inspect{n}"
        mnt.mkdir(exist_ok=True)
        subprocess.run(["mount", self.part(n), str(mnt)], check=True)
        try:
            yield mnt
        finally:
            subprocess.run(["umount", str(mnt)], check=True)

    def cleanup_mounts(self) -> None:
        """Unmount everything below tmp (deepest first)."""
        with open("/proc/mounts") as f:
            points = [line.split()[1] for line in f]
        for p in sorted((p for p in points if p.startswith(str(self.tmp))), key=len, reverse=True):
            subprocess.run(["umount", "-l", p], check=False)


@pytest.fixture(scope="session", autouse=True)
def private_mounts() -> Iterator[None]:
    """Run in a mount namespace of our own, nothing propagated out of it. A daemon started in
    a new mount namespace elsewhere on the machine (the e2e tests' master) copies every mount
    of the moment; a node root mounted then would stay mounted there, its device busy for the
    next boot's e2fsck. Back in the original namespace afterwards."""
    if os.geteuid() != 0:
        yield
        return
    with private_mount_namespace():
        yield


@pytest.fixture(scope="session")
def bbdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return applets_dir(tmp_path_factory.mktemp("busybox-bin"), BUSYBOX)


@pytest.fixture
def standard(tmp_path: Path) -> Path:
    std = tmp_path / "standard"
    build_standard(std)
    return std


@pytest.fixture
def node(tmp_path: Path, standard: Path, bbdir: Path) -> Iterator[Node]:
    if os.geteuid() != 0:
        pytest.skip("needs root (loop devices, mounts)")
    image = tmp_path / "disk.img"
    with open(image, "wb") as f:
        f.truncate(DISK_MIB * 1024 * 1024)
    disk = subprocess.run(
        ["losetup", "-f", "--show", "-P", str(image)], check=True, capture_output=True, text=True
    ).stdout.strip()
    n = Node(tmp_path, standard, disk, bbdir)
    write_control(n.control)
    n.cmdline = (
        "root=/dev/sda2 ip=dhcp clustcontrol.server=127.0.0.1 clustcontrol.image=default "
        "clustcontrol.transport=nfs BOOTIF=01-52-54-00-00-00-01"
    )
    try:
        yield n
    finally:
        n.cleanup_mounts()
        subprocess.run(["losetup", "-d", disk], check=False)


@dataclass
class RsyncDaemon:
    port: int
    proc: subprocess.Popen[bytes]


@contextlib.contextmanager
def rsync_daemon_serving(served: Path, conf_dir: Path) -> Iterator[RsyncDaemon]:
    """A real rsync daemon on 127.0.0.1 whose module `default` is `served` (created when
    missing); its configuration, pid and log files in conf_dir."""
    served.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = conf_dir / "rsyncd.conf"
    conf.write_text(
        "uid = root\ngid = root\nuse chroot = yes\nnumeric ids = yes\nreverse lookup = no\n"
        f"pid file = {conf_dir}/rsyncd.pid\nlock file = {conf_dir}/rsyncd.lock\n"
        "refuse options = delete-excluded\n\n"
        f"[default]\n    path = {served}\n    read only = yes\n    list = yes\n"
        "    hosts allow = 127.0.0.1\n"
    )
    proc = subprocess.Popen(
        [
            "rsync",
            "--daemon",
            "--no-detach",
            f"--config={conf}",
            f"--port={port}",
            "--address=127.0.0.1",
            f"--log-file={conf_dir}/rsyncd.log",
        ],
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("rsync daemon did not start")
        time.sleep(0.05)
    try:
        yield RsyncDaemon(port, proc)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


@pytest.fixture
def rsync_daemon(tmp_path: Path, standard: Path) -> Iterator[RsyncDaemon]:
    with rsync_daemon_serving(tmp_path / "state/images/default/roots", tmp_path) as daemon:
        yield daemon  # serves Node.served
