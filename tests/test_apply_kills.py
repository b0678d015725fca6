"""Kill `clustcontrol apply --root` at random points (issue 11, case 8): afterwards every file is
the old or the new content and whole, every file of ours is in the manifest, and the next apply
removes the strays and leaves exactly the files of its inventory.

The master starts with the DHCP servers' own files (issue 12): the old apply keeps dhcpd.conf's
original and the new one puts it back and keeps kea-dhcp4.conf's, so the kills land in the
store of originals too; whichever apply follows, the tree (that store included) is exactly what
the uninterrupted applies give.

Seeded and bounded: TRIALS kills of a real subprocess, stopping early after BUDGET seconds."""

from __future__ import annotations

import json
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from clustcontrol.apply import LOCK, MANIFEST, ORIGINALS, Installer, apply_tree
from clustcontrol.fsutil import is_temp_name
from clustcontrol.inventory.store import load_inventory
from clustcontrol.originals import key
from clustcontrol.render import RenderContext, render_all

SEED = 11
TRIALS = 28
BUDGET = 20.0  # seconds for the kill loop
NODES = 200
SERIAL = re.compile(rb"^\s*\d+\s*; serial.*$", re.MULTILINE)
# The distribution's own files, there before any apply (relative to the root).
DISTRIBUTION = {
    "etc/kea/kea-dhcp4.conf": b'// from kea-dhcp4-server\n{ "Dhcp4": { } }\n',
    "etc/dhcp/dhcpd.conf": b"# from isc-dhcp-server\n",
}

Files = dict[str, bytes]


def inventory(new: bool) -> dict[str, Any]:
    """The old inventory (NODES nodes, ISC DHCP) or the new one: five nodes gone, one more on
    its own image (a per-node PXELINUX file, a new directory), Kea instead of ISC."""
    nodes: list[dict[str, str]] = [
        {"name": f"n{i:03d}", "mac": f"52:54:00:00:01:{i:02x}", "ip": f"192.168.0.{10 + i}"}
        for i in range(NODES)
    ]
    images: dict[str, Any] = {"default": {"root": "/srv/nfs4/clusternoderoot"}}
    cluster: dict[str, Any] = {
        "domain": "rostclust",
        "network": "192.168.0.0/24",
        "master": {"name": "master", "ip": "192.168.0.1"},
    }
    if new:
        del nodes[:5]
        nodes.append({"name": "late", "mac": "52:54:00:00:02:01", "ip": "192.168.0.250"})
        nodes[-1]["image"] = "gpu"
        images["gpu"] = {"root": "/srv/nfs4/gpuroot", "transport": "rsync"}
        cluster["dhcp_server"] = "kea"
    return {"cluster": cluster, "images": images, "nodes": nodes}


def kept(rel: str) -> str:
    """Where apply keeps the original of rel (relative to the root, as rel)."""
    return f"{ORIGINALS.lstrip('/')}/{key('/' + rel)}"


def files(root: Path) -> Files:
    """Every regular file under root but the lock, by path relative to root."""
    lock = LOCK.lstrip("/")
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink() and str(p.relative_to(root)) != lock
    }


def apply_config(config: Path, root: Path) -> list[str]:
    inv = load_inventory(config)
    tree = render_all(RenderContext(inv, previous=Installer(root).read))
    return apply_tree(inv, tree, root, check=False).cleaned


def without_serial(tree: Files) -> Files:
    return {path: SERIAL.sub(b"SERIAL", data) for path, data in tree.items()}


def start_apply(config: Path, root: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "clustcontrol", "--config", str(config)]
    argv += ["apply", "--root", str(root), "--no-check"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for_change(path: Path, before: bytes, proc: subprocess.Popen[bytes]) -> bool:
    """Poll path (every 0.2 ms) until its content differs from before; False if proc exits."""
    while proc.poll() is None:
        try:
            if path.read_bytes() != before:
                return True
        except FileNotFoundError:
            pass
        time.sleep(0.0002)
    return False


def timing(config: Path, base: Path, scratch: Path) -> tuple[float, float]:
    """(seconds from start to exit, seconds from the manifest's first change to its last) of one
    uninterrupted apply: the whole run and the part in which it writes."""
    shutil.copytree(base, scratch, symlinks=True)
    manifest = scratch / MANIFEST.lstrip("/")
    start = time.monotonic()
    proc = start_apply(config, scratch)
    assert wait_for_change(manifest, manifest.read_bytes(), proc)
    first = time.monotonic()
    wait_for_change(manifest, manifest.read_bytes(), proc)  # old and new, then new alone
    last = time.monotonic()  # (or the exit, when the second change came too fast to see)
    assert proc.wait() == 0
    total = time.monotonic() - start
    shutil.rmtree(scratch)
    return total, last - first


@pytest.mark.slow
def test_killed_apply_leaves_old_or_new_files_and_the_next_apply_cleans_up(
    tmp_path: Path,
) -> None:
    configs = {}
    for name in ("old", "new"):
        configs[name] = tmp_path / f"{name}.yaml"
        configs[name].write_text(json.dumps(inventory(name == "new")))  # JSON is YAML
    base = tmp_path / "base"
    for rel, data in DISTRIBUTION.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_bytes(data)
    apply_config(configs["old"], base)
    after_new = tmp_path / "after-new"
    shutil.copytree(base, after_new, symlinks=True)
    apply_config(configs["new"], after_new)
    old, new = files(base), files(after_new)
    assert kept("etc/dhcp/dhcpd.conf") in old and kept("etc/kea/kea-dhcp4.conf") in new
    listed = [json.loads(tree[MANIFEST.lstrip("/")])["files"] for tree in (old, new)]
    ours = {p.lstrip("/") for entries in listed for p in entries}
    both = json.dumps({"files": sorted({*listed[0], *listed[1]})}, indent=0).encode() + b"\n"
    manifests = (old[MANIFEST.lstrip("/")], new[MANIFEST.lstrip("/")], both)
    expected = {"old": without_serial(old), "new": without_serial(new)}
    runs = [timing(configs["new"], base, tmp_path / "scratch") for _ in range(2)]
    total, writing = min(runs)  # the first run may be slower (cold caches)

    rng = random.Random(SEED)
    kills = strays = cleaned = 0
    outcomes = {"old": 0, "partial": 0, "new": 0}
    deadline = time.monotonic() + BUDGET
    for trial in range(TRIALS):
        if time.monotonic() > deadline:
            break
        root = tmp_path / f"trial{trial}"
        shutil.copytree(base, root, symlinks=True)
        manifest_path = root / MANIFEST.lstrip("/")
        before = manifest_path.read_bytes()
        proc = start_apply(configs["new"], root)
        if trial % 4 == 0:  # anywhere in the run
            time.sleep(rng.uniform(0, total))
        elif wait_for_change(manifest_path, before, proc):  # anywhere once it writes
            time.sleep(rng.uniform(0, writing * 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1

        found = files(root)
        temps = sorted(p for p in found if is_temp_name(Path(p).name))
        strays += len(temps)
        outcomes["old" if found == old else "new" if found == new else "partial"] += 1
        recorded = found.pop(MANIFEST.lstrip("/"))  # old, new, or both lists joined: whole
        assert recorded in manifests, f"trial {trial}: manifest {recorded!r}"
        for path in sorted(set(found) - set(temps)):
            assert found[path] in (old.get(path), new.get(path)), f"trial {trial}: {path} mixed"
        tracked = {p.lstrip("/") for p in json.loads(recorded)["files"]}
        mine = {p for p in found if p in ours and found[p] != DISTRIBUTION.get(p)}
        assert mine <= tracked, f"trial {trial}: not in the manifest"
        for rel, data in DISTRIBUTION.items():  # the live file, or kept while it is ours
            assert found.get(rel) == data or found.get(kept(rel)) == data, f"trial {trial}: {rel}"

        follow = "old" if trial % 2 else "new"  # old: the new node's files must go again
        cleaned += len(apply_config(configs[follow], root))
        final = files(root)
        assert not [p for p in final if is_temp_name(Path(p).name)]
        assert without_serial(final) == expected[follow], f"trial {trial} then {follow}"
        shutil.rmtree(root)

    print(
        f"\nkills: {kills} {outcomes}, strays left: {strays}, "
        f"removed by the next apply: {cleaned}, run {total:.2f} s, writing {writing:.3f} s"
    )
    assert kills >= 8
    assert cleaned == strays
