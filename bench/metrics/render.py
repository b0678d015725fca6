"""render: load_inventory + render_all of a large inventory, in a fresh process per run, vs
json.loads + one str.format per node; peak RSS; apply with nothing changed writes nothing."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

from tests.test_scale import write_large_inventory

from bench.harness import BENCH, Bench, interleave, summary, timed

WORKER = BENCH / "render_worker.py"


def run_worker(args: list[str], report: Path) -> tuple[dict[str, Any], float, int]:
    """One render_worker child (args: its command line) under /usr/bin/time -v, which reports
    into the file report (removed afterwards): the child's JSON, wall seconds, peak RSS (kB; 0
    without /usr/bin/time). Raises RuntimeError if the child fails."""
    argv = [sys.executable, str(WORKER), *args]
    if Path("/usr/bin/time").exists():
        argv = ["/usr/bin/time", "-v", "-o", str(report), *argv]
    wall, proc = timed(argv)
    rss = 0
    if report.exists():
        for line in report.read_text().splitlines():
            if "Maximum resident set size" in line:
                rss = int(line.rsplit(":", 1)[1])
        report.unlink()
    return json.loads(proc.stdout), wall, rss


def metric_render(b: Bench) -> dict[str, Any]:
    """load_inventory + render_all of a large inventory (fresh process per run) vs json.loads +
    one str.format per node; peak RSS; apply with nothing changed writes nothing. Returns the
    result (harness.summary; times in seconds, sizes in bytes, RSS in MB). Raises RuntimeError
    if a child fails."""
    d = b.scratch("render")
    yaml_inv, json_inv = d / "cluster.yaml", d / "cluster.json"
    json_inv.write_text(json.dumps(write_large_inventory(yaml_inv, b.cfg.render_nodes)))
    ours_runs: list[dict[str, Any]] = []
    walls: list[float] = []
    rss: list[int] = []
    base_rss: list[int] = []

    def ours() -> float:
        out, wall, kb = run_worker(["ours", str(yaml_inv)], d / "time.txt")
        ours_runs.append(out)
        walls.append(wall)
        rss.append(kb)
        return float(out["seconds"])

    def baseline() -> float:
        out, _wall, kb = run_worker(["baseline", str(json_inv)], d / "time.txt")
        base_rss.append(kb)
        return float(out["seconds"])

    o, bl = interleave(b.cfg.render_reps, ours, baseline)
    applied, _wall, _kb = run_worker(["apply", str(yaml_inv), str(d / "root")], d / "time.txt")
    ours_s = statistics.median(o)
    peak_mb = max(rss) / 1024
    return summary(
        "render",
        b,
        o,
        bl,
        params={"nodes": b.cfg.render_nodes, "measured": "in a fresh child process per run"},
        load_s=round(statistics.median(float(r["load_s"]) for r in ours_runs), 4),
        render_s=round(statistics.median(float(r["render_s"]) for r in ours_runs), 4),
        outputs=ours_runs[-1]["outputs"],
        output_bytes=ours_runs[-1]["bytes"],
        ours_process_wall_s=round(statistics.median(walls), 4),
        peak_rss_mb=round(peak_mb, 1),
        baseline_peak_rss_mb=round(max(base_rss) / 1024, 1),
        under_1s=ours_s < 1.0,
        under_200mb=peak_mb < 200,
        apply_first_changes=applied["first_changes"],
        apply_noop_s=round(float(applied["seconds"]), 4),
        apply_noop_changes=applied["second_changes"],
        apply_noop_files_mtime_changed=len(applied["mtime_changed"]),
        apply_noop_mtime_changed_paths=applied["mtime_changed"][:10],
        apply_noop_lock_file_rewritten=applied["lock_rewritten"],
    )
