"""scale: the master's verbs on inventories of growing size (a /14, nodes added with `node
import`), each a fresh `clustcontrol` process timed whole (Python start included): node add,
node set, node remove, render --out, a first apply and a no-op apply under a prefix (both
--no-check: the daemons' checkers are theirs, not ours), with each one's peak RSS.

The ratio is `node add` at the largest size against the same-process baseline of the render
metric (json.loads of the same nodes plus one str.format a node); the curve and the issue's
absolute goals (issue 12) are reported beside it."""

from __future__ import annotations

import ipaddress
import itertools
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import Bench, fs_type, interleave, rm_rf, summary

#: The verbs measured, in the order one repetition runs them.
OPERATIONS = ("add", "set", "remove", "render", "apply", "noop")
#: The goals of issue 12, in seconds by operation and size (nodes); RSS in MB.
GOALS_S = {
    ("add", 10_000): 0.3,
    ("set", 10_000): 0.3,
    ("remove", 10_000): 0.3,
    ("add", 50_000): 1.0,
    ("set", 50_000): 1.0,
    ("remove", 50_000): 1.0,
    ("render", 50_000): 5.0,
    ("apply", 50_000): 5.0,
    ("noop", 50_000): 1.0,
}
GOAL_RSS_MB = 500
#: Sizes and repetitions per preset: (nodes, reps).
SIZES = {
    "quick": ((1_000, 2), (10_000, 1)),
    "full": ((1_000, 3), (10_000, 3), (50_000, 3), (100_000, 1)),
    "tiny": ((300, 1),),
}
NETWORK = ipaddress.IPv4Network("10.0.0.0/14")
HOST_TEMPLATE = (
    "host {name} {{\n    hardware ethernet {mac};\n    fixed-address {ip};\n"
    '    option host-name "{name}";\n}}\n'
)


def _node(i: int) -> dict[str, str]:
    mac = f"52:54:{i >> 24 & 255:02x}:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"
    return {"name": f"n{i:06d}", "mac": mac, "ip": str(NETWORK.network_address + 10 + i)}


def _cli(config: Path, *args: str | Path) -> tuple[float, float]:
    """One `clustcontrol --config config ARGS` process: (wall seconds, peak RSS in MB; 0
    without /usr/bin/time). Raises RuntimeError if it fails."""
    argv = [sys.executable, "-m", "clustcontrol", "--config", str(config), *map(str, args)]
    timing = Path("/usr/bin/time").exists()
    if timing:
        argv = ["/usr/bin/time", "-f", "%M", *argv]
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    rss = int(proc.stderr.strip().splitlines()[-1]) / 1024 if timing else 0.0
    return wall, rss


def make_inventory(d: Path, count: int) -> tuple[Path, Path]:
    """An inventory of `count` nodes in d (clustcontrol init, then node import of a CSV), and
    the same nodes as JSON for the baseline. Returns (inventory, JSON file)."""
    config, csv, nodes_json = d / "cluster.yaml", d / "nodes.csv", d / "nodes.json"
    nodes = [_node(i) for i in range(count)]
    csv.write_text("name,mac,ip\n" + "".join(f"{n['name']},{n['mac']},{n['ip']}\n" for n in nodes))
    nodes_json.write_text(json.dumps(nodes))
    first_ip = str(NETWORK.network_address + 1)
    _cli(config, "init", "--domain", "bigclust", "--network", str(NETWORK), "--master-ip", first_ip)
    _cli(config, "node", "import", csv)
    return config, nodes_json


def baseline_seconds(nodes_json: Path) -> float:
    """json.loads of the nodes and one str.format a node, in this process: seconds."""
    start = time.perf_counter()
    data = json.loads(nodes_json.read_text())
    text = "".join(HOST_TEMPLATE.format(**node) for node in data)
    assert len(text) > len(data)
    return time.perf_counter() - start


def measure_size(
    b: Bench, count: int, reps: int
) -> tuple[dict[str, Any], list[float], list[float]]:
    """Every operation at `count` nodes, reps times, interleaved with the baseline. Returns the
    row (median seconds and max RSS by operation), ours (node add seconds) and the baseline's."""
    d = b.scratch(f"scale-{count}")
    start = time.perf_counter()
    master, nodes_json = make_inventory(d, count)
    made = time.perf_counter() - start
    seconds: dict[str, list[float]] = {op: [] for op in OPERATIONS}
    rss: dict[str, list[float]] = {op: [] for op in OPERATIONS}
    rep = 0

    def ours() -> float:
        nonlocal rep
        work = d / "run"
        rm_rf(work)
        work.mkdir()
        config = work / "cluster.yaml"
        config.write_bytes(master.read_bytes())
        ip = str(NETWORK.broadcast_address - 10 - rep)
        runs = {
            "add": ("node", "add", "zz", "--mac", f"52:54:aa:bb:cc:{rep:02x}", "--ip", ip),
            "set": (
                "node",
                "set",
                f"n{count // 2:06d}",
                "--ip",
                str(NETWORK.broadcast_address - 5),
            ),
            "remove": ("node", "remove", f"n{count // 3:06d}"),
            "render": ("render", "--out", work / "out"),
            "apply": ("apply", "--root", work / "root", "--no-check"),
            "noop": ("apply", "--root", work / "root", "--no-check"),
        }
        for op in OPERATIONS:
            wall, mb = _cli(config, *runs[op])
            seconds[op].append(wall)
            rss[op].append(mb)
        rep += 1
        return seconds["add"][-1]

    o, bl = interleave(reps, ours, lambda: baseline_seconds(nodes_json))
    b.cleanup(d)
    row: dict[str, Any] = {"nodes": count, "reps": reps, "inventory_made_s": round(made, 2)}
    row.update({f"{op}_s": round(statistics.median(seconds[op]), 3) for op in OPERATIONS})
    row["baseline_s"] = round(statistics.median(bl), 4)
    row["peak_rss_mb"] = round(max(max(v) for v in rss.values()), 1)
    row["peak_rss_mb_by_op"] = {op: round(max(v), 1) for op, v in rss.items()}
    return row, o, bl


def goals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's goals that these rows measure: {"OP@NODES": [seconds, goal, met]}, and
    "rss" [the peak MB, 500, met]."""
    found: dict[str, Any] = {}
    for row in rows:
        for (op, nodes), goal in GOALS_S.items():
            if row["nodes"] == nodes:
                found[f"{op}@{nodes}"] = [row[f"{op}_s"], goal, row[f"{op}_s"] <= goal]
    peak = max(r["peak_rss_mb"] for r in rows)
    found["rss"] = [peak, GOAL_RSS_MB, peak <= GOAL_RSS_MB]
    return found


def growth(rows: list[dict[str, Any]]) -> dict[str, list[float]]:
    """By operation, the cost a node of each size step after the first relative to the step
    before it (seconds above the smallest size's, per node): about 1.0 when the cost grows
    linearly, more when it grows faster."""
    out: dict[str, list[float]] = {}
    if len(rows) < 3:
        return out
    first = rows[0]
    for op in OPERATIONS:
        per_node = [
            (r[f"{op}_s"] - first[f"{op}_s"]) / (r["nodes"] - first["nodes"]) for r in rows[1:]
        ]
        out[op] = [round(b / a, 2) if a > 0 else 0.0 for a, b in itertools.pairwise(per_node)]
    return out


def metric_scale(b: Bench) -> dict[str, Any]:
    """The curve (SIZES of this run's preset) of every operation; ours is node add at the
    largest size, the baseline json.loads + str.format of its nodes. Returns the result
    (harness.summary; seconds, MB). Raises RuntimeError if a command fails."""
    rows = []
    o: list[float] = []
    bl: list[float] = []
    for count, reps in SIZES[b.cfg.name]:
        row, o, bl = measure_size(b, count, reps)
        rows.append(row)
        b.console.print(f"  [dim]scale {count}: {row}[/]")
    return summary(
        "scale",
        b,
        o,
        bl,
        params={
            "sizes": [r["nodes"] for r in rows],
            "network": str(NETWORK),
            "workdir_fs": fs_type(b.work),
            "measured": "a fresh clustcontrol process per operation, wall seconds (median)",
            "apply": "--no-check, under a prefix in the work directory",
        },
        rows=rows,
        goals=goals(rows),
        growth=growth(rows),
    )
