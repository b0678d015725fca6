"""The test cluster's master: the real daemons, fed by `clustcontrol apply --root PREFIX`.

Configs come from the prefix (PREFIX/etc/dhcp/dhcpd.conf, PREFIX/etc/rsyncd.conf,
PREFIX/etc/ganesha/ganesha.conf, the TFTP tree under PREFIX/var/lib/tftpboot); the standard roots
live at their real absolute paths (the inventory names them), with the control directory
PREFIX/etc/clustcontrol bind-mounted read-only into each, as the generated fstab block says."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from clustcontrol.inventory.model import Inventory
from clustcontrol.render.nfs import control_mount_point
from tests.vm.netns import Namespace, sh


@dataclass
class Master:
    ns: Namespace
    inv: Inventory
    prefix: Path
    logs: Path

    @property
    def ip(self) -> str:
        return str(self.inv.cluster.master.ip)

    def live(self, path: str) -> Path:
        return self.prefix / path.lstrip("/")

    # --- the control directory inside each standard root (fstab's bind,ro line) ----------
    def _control_mount_points(self) -> list[Path]:
        """The control directory's mount points: each image's generation roots and working tree
        (the fstab block apply writes)."""
        control_dir = self.inv.cluster.control_dir
        return [
            Path(control_mount_point(root, control_dir))
            for name, image in self.inv.images.items()
            for root in (self.inv.generation_roots(name), image.root)
        ]

    def bind_control_dirs(self) -> None:
        source = self.live(self.inv.cluster.control_dir)
        for target in self._control_mount_points():
            target.mkdir(parents=True, exist_ok=True)
            if not _is_mountpoint(target):
                sh(["mount", "--bind", str(source), str(target)])
                sh(["mount", "-o", "remount,bind,ro", str(target)])

    def unbind_control_dirs(self) -> None:
        for target in self._control_mount_points():
            while _is_mountpoint(target):
                sh(["umount", "-l", str(target)], check=False)

    # --- daemons --------------------------------------------------------------------------
    def start_router_advertisements(self) -> None:
        self.ns.start(
            "ra",
            [
                "dnsmasq",
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--port=0",
                f"--interface={self.ns.bridge}",
                "--bind-interfaces",
                "--enable-ra",
                "--dhcp-range=fd99::,ra-only,64",
                f"--pid-file={self.logs / 'ra.pid'}",
            ],
            self.logs / "ra.log",
        )

    def start_dhcpd(self) -> None:
        leases = self.logs / "dhcpd.leases"
        leases.touch()
        pidfile = self.logs / "dhcpd.pid"
        pidfile.unlink(missing_ok=True)
        self.ns.start(
            "dhcpd",
            [
                "dhcpd",
                "-4",
                "-f",
                "-cf",
                str(self.live("/etc/dhcp/dhcpd.conf")),
                "-lf",
                str(leases),
                "-pf",
                str(pidfile),
                self.ns.bridge,
            ],
            self.logs / "dhcpd.log",
        )
        self.ns.wait_port(67, "udp")

    def start_tftpd(self) -> None:
        self.ns.start(
            "tftpd",
            [
                "in.tftpd",
                "--listen",
                "--address",
                f"{self.ip}:69",
                "--secure",
                "--foreground",
                "--verbose",
                "--user",
                "root",
                str(self.live(self.inv.cluster.tftp_root)),
            ],
            self.logs / "tftpd.log",
        )
        self.ns.wait_port(69, "udp")

    def start_rsyncd(self) -> None:
        port = self.inv.cluster.rsync_port
        self.ns.start(
            "rsyncd",
            [
                "rsync",
                "--daemon",
                "--no-detach",
                f"--config={self.live('/etc/rsyncd.conf')}",
                f"--address={self.ip}",
                f"--port={port}",
                f"--log-file={self.logs / 'rsyncd.xfer'}",
            ],
            self.logs / "rsyncd.log",
        )
        self.ns.wait_port(port)

    def start_nfs(self) -> None:
        """rpcbind + nfs-ganesha (the host kernel has no NFS server)."""
        for directory in ("/run/ganesha", "/var/lib/nfs/ganesha", "/run/rpcbind"):
            Path(directory).mkdir(parents=True, exist_ok=True)
        self.ns.start("rpcbind", ["rpcbind", "-f", "-w"], self.logs / "rpcbind.log")
        self.ns.wait_port(111)
        self.ns.start(
            "ganesha",
            [
                "ganesha.nfsd",
                "-F",
                "-f",
                str(self.live("/etc/ganesha/ganesha.conf")),
                "-L",
                str(self.logs / "ganesha.log"),
                "-p",
                str(self.logs / "ganesha.pid"),
                "-N",
                "NIV_EVENT",
            ],
            self.logs / "ganesha.out",
        )
        self.ns.wait_port(2049, timeout=60)

    def restart_nfs(self) -> None:
        """nfs-ganesha (and rpcbind, which it registers with) again, on the current config."""
        for name in ("ganesha", "rpcbind"):
            self.ns.stop(name)
        self.start_nfs()

    def stop_sync_servers(self) -> None:
        """The master's sync servers go away, PXE (DHCP, TFTP) stays: 'master unreachable'."""
        for name in ("rsyncd", "ganesha", "rpcbind"):
            self.ns.stop(name)

    def start_all(self) -> None:
        self.bind_control_dirs()
        self.start_router_advertisements()
        self.start_dhcpd()
        self.start_tftpd()
        self.start_rsyncd()
        self.start_nfs()

    def stop_all(self) -> None:
        for name in list(self.ns.daemons):
            self.ns.stop(name)
        self.unbind_control_dirs()


def _is_mountpoint(path: Path) -> bool:
    if shutil.which("mountpoint") is None:
        return path.is_mount()
    with contextlib.suppress(subprocess.TimeoutExpired):
        return subprocess.run(["mountpoint", "-q", str(path)], timeout=10).returncode == 0
    return False
