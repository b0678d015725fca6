"""Child process of the `render` metric (a fresh interpreter per measurement, so one-time costs
such as template compilation count, and peak RSS belongs to this work alone).

    render_worker.py ours INVENTORY.yaml        load_inventory + render_all
    render_worker.py baseline INVENTORY.json    json.loads + one str.format per node
    render_worker.py apply INVENTORY.yaml ROOT  apply, then apply again with nothing changed

Prints one JSON object: {"seconds": ..., ...}.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

HOST_TEMPLATE = (
    "host {name} {{\n    hardware ethernet {mac};\n    fixed-address {ip};\n"
    '    option host-name "{name}";\n}}\n'
)


def ours(inventory: Path) -> dict[str, object]:
    from clustcontrol.inventory.store import load_inventory
    from clustcontrol.render import RenderContext, render_all

    start = time.perf_counter()
    inv = load_inventory(inventory)
    loaded = time.perf_counter()
    tree = render_all(RenderContext(inv))
    size = sum(len(o.data()) for o in tree)  # copied files (pxelinux.0, ...) are read here
    end = time.perf_counter()
    return {
        "seconds": end - start,
        "load_s": loaded - start,
        "render_s": end - loaded,
        "nodes": len(inv.nodes),
        "outputs": len(tree.outputs),
        "bytes": size,
    }


def baseline(inventory: Path) -> dict[str, object]:
    start = time.perf_counter()
    data = json.loads(inventory.read_text())
    text = "".join(HOST_TEMPLATE.format(**node) for node in data["nodes"])
    end = time.perf_counter()
    return {"seconds": end - start, "nodes": len(data["nodes"]), "bytes": len(text)}


def apply_noop(inventory: Path, root: Path) -> dict[str, object]:
    """First apply installs everything; the second, with nothing changed, must write nothing."""
    from clustcontrol.apply import LOCK, Installer, apply_tree
    from clustcontrol.inventory.store import load_inventory
    from clustcontrol.render import RenderContext, render_all

    inv = load_inventory(inventory)
    first = apply_tree(inv, render_all(RenderContext(inv)), root, check=False)

    def snapshot() -> dict[str, int]:
        out = {}
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                p = os.path.join(dirpath, name)
                out[os.path.relpath(p, root)] = os.lstat(p).st_mtime_ns
        return out

    before = snapshot()
    time.sleep(0.02)  # an mtime written now would differ from every earlier one
    start = time.perf_counter()
    tree = render_all(RenderContext(inv, previous=Installer(root).read))
    second = apply_tree(inv, tree, root)
    seconds = time.perf_counter() - start
    after = snapshot()
    lock = LOCK.lstrip("/")
    changed = sorted(p for p in after if before.get(p) != after[p] and p != lock)
    return {
        "seconds": seconds,
        "first_changes": len(first.changes),
        "second_changes": len(second.changes),
        "files": len(after),
        "mtime_changed": changed,
        "lock_rewritten": before.get(lock) != after.get(lock),
    }


def main(argv: list[str]) -> int:
    what, inventory = argv[0], Path(argv[1])
    if what == "ours":
        result = ours(inventory)
    elif what == "baseline":
        result = baseline(inventory)
    elif what == "apply":
        result = apply_noop(inventory, Path(argv[2]))
    else:
        print(f"unknown mode {what}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
