"""Benchmark results: one JSON file per metric (with the machine it ran on), the table the run
prints, and bench/RESULTS.md rendered from the full run's JSON files."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from rich.table import Table

from bench import nodeside
from bench.harness import BENCH, Bench
from bench.metrics import METRIC_FUNCS, METRICS

GOALS = {
    "full": "ratio <= 0.9, exact (sparse, attributes)",
    "noop": "ratio <= 0.05",
    "incremental": "down <= 1.02, up <= 0.1, time <= 1",
    "storm": "0 failures",
    "render": "< 1 s, < 200 MB, 0 writes",
    "commit": "record (copy + hash)",
    "scale": "edits <= 0.3 s @10k, 1 s @50k; render, apply <= 5 s, no-op <= 1 s @50k",
}


def machine() -> dict[str, Any]:
    """The machine a result was measured on: cores, memory in GiB, CPU, kernel, Python, rsync
    and busybox versions, load averages, the UTC date, whether a QEMU guest was running."""
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    info["rsync"] = subprocess.run(
        ["rsync", "--version"], capture_output=True, text=True, check=False
    ).stdout.split("\n", 1)[0]
    info["busybox"] = subprocess.run(
        [nodeside.BUSYBOX], capture_output=True, text=True, check=False
    ).stdout.split("\n", 1)[0]
    info["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
    info["qemu_running"] = qemu_running()
    return info


def qemu_running() -> bool:
    """Whether a qemu process runs on this machine (it makes the timings noisy)."""
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if Path(f"/proc/{pid}/comm").read_text().startswith("qemu"):
                    return True
            except OSError:
                continue
    return False


def notes(r: dict[str, Any]) -> str:
    """The notes column of a metric's result r: its most telling numbers, in words."""
    m = r["metric"]
    if m == "full":
        return f"{r['bytes'] / 1e6:.0f} MB; faithful={r['faithful']}"
    if m == "noop":
        return (
            f"skipped={r['ours_skipped_transfer']}; verify boot {r['verify_boot_s']:.2f} s; "
            f"1-in-{r['verify_every']} amortized ratio {r['amortized_ratio']:.2f}"
        )
    if m == "incremental":
        ways = "; ".join(
            f"{v['variant']}: {v['bytes_ratio']:.2f} down, {v['up_ratio']:.2f} up"
            for v in r["variants"]
        )
        return (
            f"{r['ours_method']}: {r['ours_bytes_from_master_all_connections'] / 1e6:.2f} MB "
            f"from the master / changed {r['changed_bytes'] / 1e6:.2f} MB ({ways})"
        )
    if m == "storm":
        p = r["params"]
        return (
            f"N={p['nodes']} max={p['max_connections']}: {r['failures']} failed, "
            f"{r['refused_connections_retried']} refusals retried; "
            f"{r['aggregate_mb_per_s']:.0f} MB/s all, {r['single_node_mb_per_s']:.0f} one"
        )
    if m == "render":
        return (
            f"{r['params']['nodes']} nodes: {r['ours_s']:.2f} s, {r['peak_rss_mb']:.0f} MB, "
            f"apply no-op writes {r['apply_noop_files_mtime_changed']}"
        )
    if m == "scale":
        met = [k for k, (_v, _g, ok) in r["goals"].items() if ok]
        missed = [f"{k} {v:.2f}/{g}" for k, (v, g, ok) in r["goals"].items() if not ok]
        return f"sizes {','.join(str(n) for n in r['params']['sizes'])}; {len(met)} goals met" + (
            f", missed: {'; '.join(missed)}" if missed else ""
        )
    if m == "commit":
        return (
            f"{r['files']} entries, {r['copied']} copied ({r['bytes_copied'] / 1e6:.0f} MB); "
            f"recommit after 1%: {r['recommit_s']:.2f} s ({r['recommit_linked']} linked, "
            f"{r['recommit_copied']} copied)"
        )
    return ""


WIDTHS = (12, 9, 11, 8, 26, 64)


def table(rows: list[dict[str, Any]], header: bool) -> Table:
    """The printed table of metric results (rows), with or without its header line; fixed
    column widths, so rows printed one by one line up."""
    t = Table(show_header=header, box=None, pad_edge=False)
    for name, width in zip(
        ("metric", "ours s", "baseline s", "ratio", "goal", "notes"), WIDTHS, strict=True
    ):
        if name in ("ours s", "baseline s", "ratio"):
            t.add_column(name, width=width, justify="right")
        else:
            t.add_column(name, width=width)
    for r in rows:
        t.add_row(
            r["metric"],
            f"{r['ours_s']:.3f}",
            f"{r['baseline_s']:.3f}",
            f"{r['ratio']:.2f}",
            GOALS[r["metric"]],
            notes(r),
        )
    return t


def run_metric(b: Bench, metric: str) -> Path:
    """Measure one metric (a name in METRICS), write <results>/<metric>.json with the machine
    and the elapsed seconds added, return its path. Raises RuntimeError if the metric fails."""
    start = time.perf_counter()
    result = METRIC_FUNCS[metric](b)
    result["elapsed_s"] = round(time.perf_counter() - start, 1)
    result["machine"] = machine()
    b.results.mkdir(parents=True, exist_ok=True)
    path = b.results / f"{metric}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.rename(path)
    return path


RESULTS_NOTES = """\
## How to read this

* `ratio` = ours / baseline, both medians of interleaved runs (ours, baseline, ours, ...)
  measured in the same run. Absolute seconds depend on the machine; the ratios much less.
* **ours** is always the real code path: the node-side engine
  (`src/clustcontrol/node/engine/`, `engine.sh` and its modules) is sourced by `busybox sh` and its
  `cc_sync` is called (`bench/nodeside.py: node_sync`), with the NFS transport as a plain local
  directory (`CC_SOURCE_MNT`) or a real `rsync --daemon` on 127.0.0.1. Disk partitioning and
  mounting (`cc_run`) are left out: the target is a directory.
* Node targets live on tmpfs (`/dev/shm`) when there is one: on this VM's ext4 a file creation
  costs ~225 us (measured: 20,000 files through `tar | tar` take 13-17 s on ext4, 0.9 s on
  tmpfs), which makes every copy method equally slow and hides the differences this bench is
  for; `--workdir DIR` puts them elsewhere. The standards are cached under `cache/bench/`.
* `scale` times the master's verbs as an administrator runs them: each operation is a new
  `clustcontrol` process (Python start and imports included), on inventories of growing size
  made by `clustcontrol node import` (`bench/metrics/scale.py`). Its ratio is `node add` at
  the largest size over the same-process baseline (json.loads of the nodes and one
  str.format each); what matters is the curve in its own section and the goals of issue 12
  in absolute seconds, which depend on the machine and its load: read them with the load
  average shown there. A first apply writes one file a node into the work directory: on
  tmpfs that is cheap, on this VM's ext4 each new file costs a create and an fsync.
* The synthetic standard (`bench/synthetic.py`, seed 1) is a committed one: it carries
  `etc/clustcontrol-generation` (SEQ-HASH, as `clustcontrol image commit` writes it); the
  changed standard of `incremental` carries the next generation.
"""


def scale_section(r: dict[str, Any]) -> list[str]:
    """The `scale` metric's curve as a Markdown section (lines): seconds of each operation by
    inventory size, peak RSS, the goals of issue 12 and how the cost grows."""
    from bench.metrics.scale import OPERATIONS

    lines = [
        "## scale: the master's verbs at 1,000 to 100,000 nodes",
        "",
        "Each cell is the median wall time of a fresh `clustcontrol` process (Python start",
        "included) on an inventory of that many nodes in a /14 made by `node import`; apply runs",
        f"`--no-check` under a prefix on {r['params']['workdir_fs']}. Load average at the end:",
        f"{', '.join(r['machine']['loadavg'])} on {r['machine']['nproc']} cores.",
        "",
        "| nodes | " + " | ".join(OPERATIONS) + " | peak RSS MB | json+format s |",
        "| ---: | " + " | ".join("---:" for _ in OPERATIONS) + " | ---: | ---: |",
    ]
    for row in r["rows"]:
        cells = " | ".join(f"{row[f'{op}_s']:.2f}" for op in OPERATIONS)
        lines.append(
            f"| {row['nodes']:,} | {cells} | {row['peak_rss_mb']:.0f} | {row['baseline_s']:.3f} |"
        )
    lines += [
        "",
        "Goals (issue 12): "
        + "; ".join(
            f"{k} {v:.2f} s (goal {g}) {'met' if ok else '**missed**'}"
            if k != "rss"
            else f"peak RSS {v:.0f} MB (goal {g}) {'met' if ok else '**missed**'}"
            for k, (v, g, ok) in r["goals"].items()
        )
        + ".",
    ]
    if r.get("growth"):
        lines += [
            "",
            "Growth (per-node cost of each size step over the step before; ~1 is linear): "
            + "; ".join(f"{op} {vals}" for op, vals in r["growth"].items())
            + ".",
        ]
    return lines


def write_results_md(results: Path, out: Path) -> None:
    """Write out (RESULTS.md) from the full-preset JSON files in results (and
    results/run.json); nothing if there are none. Raises OSError if out cannot be written."""
    rows = []
    for metric in METRICS:
        p = results / f"{metric}.json"
        if p.exists():
            r = json.loads(p.read_text())
            if r["params"].get("preset") == "full":
                rows.append(r)
    if not rows:
        return
    m = rows[0]["machine"]
    lines = [
        "# Benchmark results",
        "",
        "Latest `python bench/run.py --full` (generated by bench/run.py; raw numbers in",
        "`bench/results/*.json`).",
        "",
        f"Machine: {m['nproc']} cores (nproc), {m['memory_gib']} GiB RAM, CPU "
        f"`{m.get('cpu', '?')}` (/proc/cpuinfo), kernel `{m['kernel']}`, Python {m['python']},",
        f"{' '.join(m['rsync'].split()[:3])}, {m['busybox'].split(' (')[0]}; run {m['date']}.",
    ]
    run = results / "run.json"
    if run.exists():
        info = json.loads(run.read_text())
        lines.append(
            f"The whole `--full` run took {info['total_s'] / 60:.1f} minutes "
            f"({info.get('generation_note', 'standards cached')})."
        )
    if any(r["machine"].get("qemu_running") for r in rows):
        lines += [
            "",
            "**Noise:** a QEMU guest (another agent's end-to-end test, TCG, one core busy) was",
            "running during this run, on a 2-core machine: absolute times are noisy; the",
            "interleaved medians and ratios are what to compare.",
        ]
    lines += [
        "",
        "| metric | ours s | baseline s | ratio | goal | notes |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['metric']} | {r['ours_s']:.3f} | {r['baseline_s']:.3f} | {r['ratio']:.2f} | "
            f"{GOALS[r['metric']]} | {notes(r)} |"
        )
    scale = next((r for r in rows if r["metric"] == "scale"), None)
    if scale is not None:
        lines += ["", *scale_section(scale)]
    lines += ["", RESULTS_NOTES]
    extra = BENCH / "RESULTS-notes.md"
    if extra.exists():
        lines += [extra.read_text()]
    out.write_text("\n".join(lines).rstrip() + "\n")
