"""The e2e test standard root: Debian bookworm minbase + kernel, prepared with
`clustcontrol image prepare --rebuild-initramfs`, slimmed, with a tiny /sbin/init that prints a
marker and powers off. Cached under cache/ keyed on every input (the debootstrap root, the node
scripts, the prepare code, this file), so a second run reuses it; each test copies it."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from clustcontrol.image import prepare_image
from clustcontrol.inventory.store import parse_inventory
from tests.image.debroot import apt_mirror, cache_dir, cached_root

REPO = Path(__file__).resolve().parents[2]
STAMP = ".clustcontrol-e2e-standard-complete"
MARKER = "CLUSTCONTROL-E2E-BOOTED"

# The standard's init: runs as PID 1 on the node's synced local root (or on the NFS root of the
# update node), prints what the test asserts on, and powers the VM off.
TEST_INIT = f"""#!/bin/sh
# clustcontrol e2e test init: report, then power off. Not a real init.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sysfs /sys 2>/dev/null
root=$(awk '$2 == "/" {{ dev = $1; type = $3 }} END {{ print dev " " type }}' /proc/mounts)
generation=$(cat /etc/clustcontrol-generation 2>/dev/null || echo none)
case "$root" in
*" nfs"*)
    # The update node (the standard itself, read-write over NFS): change the standard.
    echo "written on the update node at $(date +%s)" >/etc/e2e-from-update-node
    sync
    ;;
esac
echo "{MARKER} host=$(cat /etc/hostname 2>/dev/null) generation=$generation root=$root"
for f in /var/lib/clustcontrol-node/last-sync /etc/e2e-from-update-node; do
    [ -f "$f" ] && sed "s|^|e2e: $f: |" "$f"
done
echo "e2e: machine-id $(cat /etc/machine-id 2>/dev/null)"
# What must arrive exactly: a file capability and an ACL (scenarios 1 and 7), a sparse file
# larger than the root partition, and persistent data under a removed directory (scenario 8).
echo "e2e: cap $(getcap /usr/local/bin/e2e-cap 2>&1)"
echo "e2e: acl $(getfacl --omit-header --numeric --absolute-names /srv/e2e-acl 2>&1 | tr '\n' ' ')"
[ -e /opt/e2e-sparse ] && echo "e2e: sparse $(stat -c '%s %b %B' /opt/e2e-sparse)"
[ -e /opt/e2e-app/data/state ] && echo "e2e: persistent $(cat /opt/e2e-app/data/state)"
# Secrets (issue 11): /etc/shadow arrived with its mode, owner and content; an unprivileged user
# reads a served file from the master's rsync module but not the shadow file.
echo "e2e: shadow $(stat -c '%a %u:%g' /etc/shadow 2>&1) $(sha256sum /etc/shadow 2>&1 | cut -c1-64)"
image=$(cat /etc/e2e-image 2>/dev/null)
if [ -n "$image" ] && [ "$generation" != none ] && mount -t tmpfs tmpfs /tmp 2>/dev/null; then
    for f in etc/e2e-image etc/shadow; do
        rc=0
        setpriv --reuid=65534 --regid=65534 --clear-groups \
            rsync -q "rsync://192.168.0.1/$image/$generation/$f" /tmp/e2e-got 2>/dev/null || rc=$?
        echo "e2e: nobody rsync $f $rc $(head -c 64 /tmp/e2e-got 2>/dev/null | tr -dc 'a-z0-9')"
        rm -f /tmp/e2e-got
    done
fi
sync
busybox poweroff -f
"""

# Large and irrelevant to the test: docs, locales, drivers no VM here needs. Removed after the
# initramfs is built, so the node's sync moves a few hundred MB under emulation.
SLIM = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/locale",
    "usr/share/info",
    "var/cache/apt",
    "var/lib/apt/lists",
)
SLIM_MODULE_DIRS = (
    "kernel/drivers/gpu",
    "kernel/drivers/media",
    "kernel/drivers/infiniband",
    "kernel/drivers/net/wireless",
    "kernel/drivers/staging",
    "kernel/drivers/iio",
    "kernel/sound",
    "kernel/drivers/net/ethernet/mellanox",
    "kernel/drivers/bluetooth",
    "kernel/drivers/usb",
    "kernel/drivers/hid",
    "kernel/drivers/input",
    "kernel/drivers/scsi",
    "kernel/drivers/hwmon",
    "kernel/drivers/isdn",
    "kernel/drivers/md",
    "kernel/net/wireless",
    "kernel/net/mac80211",
    "kernel/fs/btrfs",
    "kernel/fs/xfs",
    "kernel/fs/ocfs2",
)


def _inputs_key(base: Path) -> str:
    digest = hashlib.sha256(base.name.encode())
    for path in (
        sorted((REPO / "src/clustcontrol/node").rglob("*"))
        + sorted((REPO / "src/clustcontrol/image").glob("*.py"))
        + [Path(__file__)]
    ):
        if path.is_file():
            digest.update(str(path.relative_to(REPO)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _inventory_for(root: Path) -> object:
    return parse_inventory(
        {
            "cluster": {
                "domain": "rostclust",
                "network": "192.168.0.0/24",
                "master": {"name": "master", "ip": "192.168.0.1"},
            },
            "images": {"default": {"root": str(root), "boot_interface": "ens3"}},
        }
    )


def prepared_standard() -> Path:
    """The cached, prepared standard root; built when absent (about 2-3 minutes)."""
    mirror = apt_mirror()
    if mirror is None:
        raise RuntimeError("no bookworm mirror in this machine's apt sources")
    base = cached_root(mirror)
    target = cache_dir() / f"e2e-standard-{_inputs_key(base)}"
    if (target / STAMP).is_file():
        return target
    building = target.with_name(target.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(building)], check=True)
    init = building / "sbin/init"
    init.unlink(missing_ok=True)
    init.write_text(TEST_INIT)
    init.chmod(0o755)
    (building / "etc/hostname").write_text("standard\n")
    inv = _inventory_for(building)
    prepare_image(inv, "default", dry_run=False, rebuild_initramfs=True)  # type: ignore[arg-type]
    for rel in SLIM:
        shutil.rmtree(building / rel, ignore_errors=True)
    for modules in (building / "usr/lib/modules").iterdir():
        for rel in SLIM_MODULE_DIRS:
            shutil.rmtree(modules / rel, ignore_errors=True)
    (building / STAMP).write_text("prepared\n")
    for old in cache_dir().glob("e2e-standard-*"):
        if old != building:
            shutil.rmtree(old, ignore_errors=True)
    building.rename(target)
    return target


def copy_standard(source: Path, target: Path) -> None:
    subprocess.run(["cp", "-a", "--reflink=auto", str(source), str(target)], check=True)
    (target / STAMP).unlink(missing_ok=True)
