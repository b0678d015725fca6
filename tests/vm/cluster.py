"""The e2e test cluster: an inventory, `clustcontrol apply --root PREFIX` for the master's
configs, `clustcontrol image publish` for the TFTP tree, the master's daemons in a namespace,
and node VMs on tap devices. Used by tests/vm/test_e2e.py and scripts/demo-boot."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from clustcontrol.image.generation import GenerationStore
from clustcontrol.inventory.model import Inventory
from clustcontrol.inventory.store import load_inventory
from tests.vm.master import Master
from tests.vm.netns import Namespace
from tests.vm.qemu import BootResult, NodeVM
from tests.vm.standard import copy_standard, prepared_standard

NETWORK = "192.168.0.0/24"
MASTER_IP = "192.168.0.1"

# A small disk: 256 MiB swap, 1.5 GiB root, the rest a persistent data partition.
LAYOUT = {
    "device": "/dev/vda",
    "sfdisk": "label: dos\n,256MiB,S\n,1536MiB,L,*\n,,L\n",
    "partitions": [
        {"number": 1, "use": "swap"},
        {"number": 2, "use": "root", "fs": "ext4"},
        {"number": 3, "use": "data", "fs": "ext4", "mount": "/scratch", "persistent": True},
    ],
}


def mounted_at(path: Path) -> bool:
    """Something is mounted at path (/proc/self/mountinfo, proc(5); its mount points escape
    blanks as octal). os.path.ismount misses a bind mount of a directory of the same file
    system (same st_dev), so tear_down never unmounted them and the next set-up stacked more."""
    wanted = os.path.realpath(path)
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as info:
        for line in info:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if point == wanted:
                return True
    return False


@dataclass(frozen=True)
class NodeSpec:
    name: str
    mac: str
    ip: str
    image: str = "default"


@dataclass
class E2ECluster:
    work: Path
    ns: Namespace
    images: dict[str, str]  # image name -> transport
    nodes: list[NodeSpec]
    update_node: str | None = None
    vms: dict[str, NodeVM] = field(default_factory=dict)
    timings: list[dict[str, object]] = field(default_factory=list)

    @property
    def prefix(self) -> Path:
        return self.work / "prefix"

    @property
    def config(self) -> Path:
        return self.work / "cluster.yaml"

    @property
    def logs(self) -> Path:
        return self.work / "logs"

    def image_root(self, name: str) -> Path:
        return self.work / "standards" / name

    @property
    def state_dir(self) -> Path:
        """cluster.state_dir: the generation stores (what nodes sync from)."""
        return self.work / "state"

    def store(self, name: str) -> GenerationStore:
        return GenerationStore.for_image(Path("/"), name, str(self.state_dir))

    # --- set-up ------------------------------------------------------------------------
    def inventory_data(self) -> dict[str, object]:
        return {
            "cluster": {
                "domain": "rostclust",
                "network": NETWORK,
                "master": {"name": "master", "ip": MASTER_IP},
                "serial_console": "ttyS0,115200",
                "nfs_server": "ganesha",
                # The exports share the work directory's file system: apply warns instead of
                # refusing (tests/daemons/test_forged_handles.py covers file systems of their
                # own).
                "ganesha_shared_file_systems": True,
                "state_dir": str(self.state_dir),
                "sync_retries": 2,
            },
            "images": {
                name: {
                    "root": str(self.image_root(name)),
                    "transport": transport,
                    "persistent": ["/var/lib/persist", "/opt/e2e-app/data"],
                    "boot_interface": "ens3",
                    # Few attempts when the master is unreachable (scenario 5): the copy of
                    # the control directory baked into the initramfs says 5.
                    "kernel_args": ["panic=-1", "clustcontrol.retries=2"],
                }
                for name, transport in self.images.items()
            },
            "disk_layouts": {"default": LAYOUT},
            "nodes": [
                {"name": n.name, "mac": n.mac, "ip": n.ip, "image": n.image} for n in self.nodes
            ],
            "update_node": {"node": self.update_node},
        }

    def clustcontrol(self, *args: str) -> str:
        argv = [sys.executable, "-m", "clustcontrol", "--config", str(self.config), *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"clustcontrol {' '.join(args)} failed: {proc.stderr}{proc.stdout}")
        return proc.stdout

    def inventory(self) -> Inventory:
        return load_inventory(self.config)

    def write_inventory(self) -> None:
        # JSON is YAML: the inventory file is written as JSON for exactness.
        self.config.write_text(json.dumps(self.inventory_data(), indent=2) + "\n")

    def set_up(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        standard = prepared_standard()
        for name in self.images:
            root = self.image_root(name)
            if not root.exists():
                root.parent.mkdir(parents=True, exist_ok=True)
                copy_standard(standard, root)
                (root / "etc/e2e-image").write_text(f"{name}\n")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # `image commit --root PREFIX` finds the working trees and the generation stores under
        # the prefix with links followed inside it (rootdir.RootDir), where an absolute link
        # back to the real path would loop: they appear there as bind mounts of the real
        # directories instead (tear_down unmounts them); the daemons serve the real paths.
        for real in (*map(self.image_root, self.images), self.state_dir):
            alias = self.prefix / str(real).lstrip("/")
            if not mounted_at(alias):
                alias.mkdir(parents=True, exist_ok=True)
                subprocess.run(["mount", "--bind", str(real), str(alias)], check=True)
        self.write_inventory()
        self.reconfigure()
        for name in self.images:
            self.commit(name)
        self.ns.create(MASTER_IP, 24)
        for index, node in enumerate(self.nodes):
            tap = f"cctap{index}"
            self.ns.add_tap(tap)
            vm = NodeVM(self.ns, node.name, node.mac, tap, self.work / f"{node.name}.raw")
            vm.create_disk("2500M")
            self.vms[node.name] = vm
        self.master().start_all()

    def reconfigure(self) -> None:
        """Inventory -> configs (apply) and kernel/initrd -> TFTP (publish), like an admin."""
        self.write_inventory()
        ganesha_conf = self.prefix / "etc/ganesha/ganesha.conf"
        exports_before = ganesha_conf.read_bytes() if ganesha_conf.exists() else None
        self.clustcontrol("apply", "--root", str(self.prefix))
        self.clustcontrol(
            "render", "--out", str(self.work / "rendered"), "--root", str(self.prefix)
        )
        # rsyncd.conf is installed by apply only when an image uses rsync; the test always runs it.
        rendered = self.work / "rendered/etc/rsyncd.conf"
        (self.prefix / "etc/rsyncd.conf").write_bytes(rendered.read_bytes())
        for name in self.images:
            self.clustcontrol("image", "publish", name, "--root", str(self.prefix))
        if "dhcpd" in self.ns.daemons:
            # What `apply --reload` does on a real master: dhcpd restarts on its new config
            # (TFTP and rsyncd read theirs per request).
            self.master().start_dhcpd()
        if "ganesha" in self.ns.daemons and ganesha_conf.read_bytes() != exports_before:
            # What `apply --reload` does: nfs-ganesha restarts on its new exports (the update
            # node's read-write export exists only while an update node is set).
            self.master().restart_nfs()

    def commit(self, image: str) -> str:
        """`clustcontrol image commit`: the standard's new generation, as nodes will see it."""
        self.clustcontrol("image", "commit", image, "--root", str(self.prefix))
        return self.generation(image)

    def generation(self, image: str) -> str:
        """The image's current generation (what nodes sync to)."""
        current = self.store(image).current()
        assert current is not None, f"image {image}: nothing committed"
        return current

    def status(self) -> subprocess.CompletedProcess[str]:
        argv = [
            sys.executable,
            "-m",
            "clustcontrol",
            "--config",
            str(self.config),
            "status",
            "--root",
            str(self.prefix),
        ]
        return subprocess.run(argv, capture_output=True, text=True, timeout=600)

    def master(self) -> Master:
        return Master(self.ns, self.inventory(), self.prefix, self.logs)

    def tear_down(self) -> None:
        self.master().stop_all()
        self.ns.destroy()
        for real in (*map(self.image_root, self.images), self.state_dir):
            alias = self.prefix / str(real).lstrip("/")
            for _ in range(8):  # each one an earlier run's set-up stacked too
                if not mounted_at(alias):
                    break
                subprocess.run(["umount", "-l", str(alias)], check=False)

    # --- scenarios --------------------------------------------------------------------
    def boot(
        self,
        node: str,
        scenario: str,
        kill_on: str | None = None,
        echo: Callable[[str], None] | None = None,
    ) -> BootResult:
        log = self.logs / f"{scenario}-{node}.serial.log"
        result = self.vms[node].boot(log, timeout=900, kill_on=kill_on, echo=echo)
        moved = (
            ["0"] if "no transfer" in result.log else re.findall(r"(\d+) bytes moved", result.log)
        )
        self.timings.append(
            {
                "scenario": scenario,
                "node": node,
                "wall_s": round(result.seconds, 1),
                "bytes_moved": int(moved[-1]) if moved else None,
                "killed": result.killed,
            }
        )
        return result


def unique_namespace() -> Namespace:
    return Namespace(f"cc-e2e-{os.getpid()}")
