"""full: a blank target filled by the engine's cc_sync (NFS-like local source: its tar stream)
vs tar | tar."""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

from bench import nodeside, tree_compare
from bench.harness import Bench, check_sync, copy_tree, interleave, rm_rf, summary, sync_params


def metric_full(b: Bench) -> dict[str, Any]:
    """Blank target: the engine's sync (cc_sync, NFS-like local source) vs tar | tar. Returns
    the result (harness.summary; times in seconds, sizes in bytes, throughput in MB/s). Raises
    RuntimeError if a command or the engine fails."""
    tree = b.tree(b.cfg.tree)
    ours_dir, base_dir = b.work / "full-node", b.work / "full-tar"
    last: list[nodeside.SyncResult] = []

    def blank(path: Path) -> None:
        rm_rf(path)
        rm_rf(b.work / "full-node.run")
        path.mkdir(parents=True)
        os.sync()

    def ours() -> float:
        blank(ours_dir)
        r = b.node_sync(tree.root, ours_dir)
        check_sync(r, "full")
        last[:] = [r]
        return r.seconds

    def baseline() -> float:
        blank(base_dir)
        return copy_tree(tree.root, base_dir)

    o, bl = interleave(b.cfg.reps, ours, baseline)
    problems = tree_compare.compare_trees(tree.root, ours_dir, nodeside.ENGINE_PATHS)
    # The baseline is a plain tar | tar: names, content, modes and times, nothing more.
    base_problems = tree_compare.compare_trees(tree.root, base_dir, exact=False)
    b.cleanup(ours_dir, base_dir)
    stats = last[0].stats
    return summary(
        "full",
        b,
        o,
        bl,
        params=sync_params(b, tree, "nfs (local)"),
        bytes=tree.total_bytes,
        ours_mb_per_s=round(tree.total_bytes / statistics.median(o) / 1e6, 1),
        baseline_mb_per_s=round(tree.total_bytes / statistics.median(bl) / 1e6, 1),
        faithful=not problems,
        faithful_problems=problems[:10],
        baseline_faithful=not base_problems,
        ours_method=last[0].method,
        engine_files_transferred=stats.get("Number of regular files transferred", 0),
        engine_log_tail=last[0].output.strip().splitlines()[-2:],
    )
