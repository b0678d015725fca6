"""noop: a node already in sync: the engine's cc_sync (generation skip) vs the seed's
rsync -aHAX --delete of the whole tree."""

from __future__ import annotations

import os
import statistics
from typing import Any

from bench import nodeside, tree_compare
from bench.harness import Bench, check_sync, copy_tree, interleave, summary, sync_params, timed


def metric_noop(b: Bench) -> dict[str, Any]:
    """Node already in sync: the engine's sync vs rsync -aHAX --delete std/ node/. Returns the
    result (harness.summary; times in seconds), with the whole-tree verify boot every 10th boot
    amortized. Raises RuntimeError if a command or the engine fails."""
    tree = b.tree(b.cfg.tree)
    ours_dir, base_dir = b.scratch("noop-node"), b.scratch("noop-rsync")
    # In sync already: the node by the engine (its record holds the standard's generation),
    # the baseline's copy by tar (the fastest way there).
    check_sync(b.node_sync(tree.root, ours_dir), "noop: first sync")
    copy_tree(tree.root, base_dir)
    seed = ["rsync", "-aHAX", "--delete", f"{tree.root}/", f"{base_dir}/"]
    transferred: list[int] = []
    skipped: list[bool] = []

    def ours() -> float:
        os.sync()
        r = b.node_sync(tree.root, ours_dir)
        check_sync(r, "noop")
        transferred.append(r.stats.get("Number of regular files transferred", 0))
        skipped.append(r.method == "skip")
        return r.seconds

    def baseline() -> float:
        os.sync()
        return timed(seed)[0]

    o, bl = interleave(b.cfg.reps, ours, baseline)
    # Every CC_VERIFY_EVERY-th boot (default 10) compares the whole tree anyway.
    os.sync()
    verify = b.node_sync(tree.root, ours_dir, env={"CC_VERIFY_EVERY": "1"})
    check_sync(verify, "noop: verify boot")
    every = 10
    amortized = ((every - 1) * statistics.median(o) + verify.seconds) / every
    problems = tree_compare.compare_trees(tree.root, ours_dir, nodeside.ENGINE_PATHS)
    b.cleanup(ours_dir, base_dir)
    return summary(
        "noop",
        b,
        o,
        bl,
        params=sync_params(b, tree, "nfs (local)"),
        ours_files_transferred=max(transferred),
        ours_skipped_transfer=all(skipped),
        overhead_s=round(statistics.median(o) - statistics.median(bl), 4),
        verify_boot_s=round(verify.seconds, 4),
        verify_every=every,
        amortized_s=round(amortized, 4),
        amortized_ratio=round(amortized / statistics.median(bl), 3),
        faithful=not problems,
    )
