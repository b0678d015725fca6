"""clustcontrol benchmarks: `python bench/run.py --quick|--full [--only METRIC]`.

Each metric measures "ours" (the real code path: the node-side engine under busybox sh, or the
master-side renderers) against a baseline measured in the same run, interleaved
ours/baseline/ours/baseline..., and reports medians. It prints a table row and writes
bench/results/<metric>.json (a --quick run: bench/results/quick/); a --full run also rewrites
bench/RESULTS.md.

    full         blank target: the engine's cc_sync (NFS-like local source: its tar stream) vs
                 tar | tar
    noop         node already in sync: cc_sync vs rsync -aHAX --delete (the seed's command)
    incremental  1% of the files changed and committed: cc_sync of a node at the previous
                 generation over a real rsync daemon (the master's delta; every byte of the
                 boot counted by a relay, also with smaller rsync blocks) vs the seed's local
                 rsync -aHAX --delete of the whole tree
    storm        N nodes at once from one rsync daemon with max connections N/2: wall time vs
                 N x one node, zero failures, refusals retried with the engine's back-off
    render       load_inventory + render_all of a 10,000-node inventory vs json.loads + one
                 str.format per node; peak RSS; apply with nothing changed writes nothing
    scale        node add / set / remove, render --out, a first and a no-op apply as fresh
                 processes on inventories of 1k/10k/50k/100k nodes (--quick: 1k, 10k; a /14
                 made by node import) vs json.loads + str.format of the same nodes; peak RSS
    commit       image commit of the standard into a new generation store vs tar | tar of it;
                 the recommit of a working copy after a 1% change (only with --only commit)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import BENCH, CONFIGS, RESULTS, Bench, default_workdir, fs_type, rm_rf
from bench.metrics import DEFAULT_METRICS, METRICS
from bench.report import qemu_running, run_metric, table, write_results_md


def main(argv: list[str] | None = None) -> int:
    """The command line (argv: its arguments, default sys.argv[1:]); returns the exit status.
    Raises RuntimeError if a metric's command or the engine fails."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    size = ap.add_mutually_exclusive_group(required=True)
    size.add_argument("--quick", action="store_true", help="small trees, < 60 s")
    size.add_argument("--full", action="store_true", help="100,000 files / 2 GB, N=128 storm")
    ap.add_argument("--only", choices=METRICS, action="append", help="run only this metric")
    ap.add_argument("--workdir", type=Path, help="node targets (default: tmpfs when available)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument(
        "--report-only", action="store_true", help="with --full: rewrite RESULTS.md, run nothing"
    )
    args = ap.parse_args(argv)
    if args.report_only:
        write_results_md(RESULTS, BENCH / "RESULTS.md")
        return 0
    cfg = CONFIGS["full" if args.full else "quick"]
    work = args.workdir or default_workdir()
    # The committed results are those of the full run; a quick run keeps its own.
    b = Bench(cfg, work, results=RESULTS if args.full else RESULTS / cfg.name)
    metrics = args.only or list(DEFAULT_METRICS)
    c = b.console
    c.print(
        f"clustcontrol bench [bold]{cfg.name}[/]: {', '.join(metrics)}; "
        f"node targets in {work} ({fs_type(work)})"
        + ("; [yellow]a QEMU guest is running: expect noise[/]" if qemu_running() else "")
    )
    c.print(table([], header=True))
    start = time.perf_counter()
    try:
        for metric in metrics:
            r = json.loads(run_metric(b, metric).read_text())
            c.print(table([r], header=False))
    finally:
        if not args.keep:
            rm_rf(work)
    total = time.perf_counter() - start
    c.print(f"done in {total:.1f} s; results in {b.results}")
    if args.full:
        if not args.only:
            info = {"total_s": round(total, 1), "generation_note": b.generation_note()}
            (b.results / "run.json").write_text(json.dumps(info, indent=2) + "\n")
        write_results_md(b.results, BENCH / "RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
