"""incremental: 1% of the files changed and committed: cc_sync of a node at the previous
generation over a real rsync daemon (the master's delta; every byte of the boot counted by a
relay, also with smaller rsync blocks) vs the seed's local rsync -aHAX --delete of the tree."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

from bench import changed_standard, nodeside, tree_compare
from bench.harness import Bench, check_sync, copy_tree, interleave, summary, sync_params, timed

# The ways a node at the previous generation can sync the delta: the master's batch (the
# default), rsync's delta algorithm against the master, the same with smaller blocks.
VARIANTS: tuple[tuple[str, dict[str, str]], ...] = (
    ("batch", {}),
    ("delta", {"CC_DELTA_BATCH": "no"}),
    ("delta, 256-byte blocks", {"CC_DELTA_BATCH": "no", "CC_DELTA_BLOCK_SIZE": "256"}),
)


def metric_incremental(b: Bench) -> dict[str, Any]:
    """1% changed, one committed generation later: the engine over a real rsync daemon (a node
    at the previous generation: the master's delta) vs the seed's local rsync of the tree.
    Returns the result (harness.summary; times in seconds, sizes in bytes), with the bytes both
    ways of each way to sync the delta (VARIANTS). Raises RuntimeError if a command or the
    engine fails."""
    tree = b.tree(b.cfg.tree)
    start = time.perf_counter()
    changed, changes = changed_standard.ensure_changed_tree(tree, b.cache)
    b.note_generation("changed standard", time.perf_counter() - start)
    ours_dir, base_dir = b.scratch("inc-node"), b.scratch("inc-rsync")
    # The node as the engine left it at the previous generation (its sync record included).
    at_previous = b.scratch("inc-node-previous")
    check_sync(b.node_sync(tree.root, at_previous), "incremental: first sync")
    copy_tree(tree.root, base_dir)
    received: list[int] = []
    runs: list[nodeside.SyncResult] = []
    base_bytes: list[int] = []

    def reset(source: Path, d: Path) -> None:
        """Back to the previous generation (untimed)."""
        timed(["rsync", "-aHAXS", "--delete", f"{source}/", f"{d}/"])  # holes kept
        os.sync()

    with nodeside.rsync_daemon(changed, b.work / "inc-daemon") as daemon:

        def ours() -> float:
            reset(at_previous, ours_dir)
            r = b.node_sync("", ours_dir, transport="rsync", port=daemon.port)
            check_sync(r, "incremental")
            received.append(r.bytes_received)
            runs.append(r)
            return r.seconds

        def baseline() -> float:
            reset(tree.root, base_dir)
            argv = ["rsync", "-aHAX", "--delete", "--stats", f"{changed}/", f"{base_dir}/"]
            seconds, proc = timed(argv)
            st = nodeside.parse_stats(proc.stdout)
            base_bytes.append(st.get("Total bytes sent", 0) + st.get("Total bytes received", 0))
            return seconds

        o, bl = interleave(b.cfg.reps, ours, baseline)
        # Untimed, through a relay counting every byte of the boot's connections both ways
        # (the generation file, the delta, the batch or the sync): each variant.
        sweep: list[dict[str, Any]] = []
        for name, env in VARIANTS:
            reset(at_previous, ours_dir)
            with nodeside.counting_proxy(daemon.port) as proxy:
                r = b.node_sync("", ours_dir, transport="rsync", port=proxy.port, env=env)
            check_sync(r, f"relayed, {name}")
            sweep.append(
                {
                    "variant": name,
                    "method": r.method,
                    "from_master_bytes": proxy.downstream,
                    "bytes_ratio": round(proxy.downstream / changes.changed_bytes, 3),
                    "to_master_bytes": proxy.upstream,
                    "up_ratio": round(proxy.upstream / changes.changed_bytes, 3),
                    "seconds": round(r.seconds, 3),
                }
            )
        all_bytes = int(sweep[0]["from_master_bytes"])
        up_bytes = int(sweep[0]["to_master_bytes"])
    problems = tree_compare.compare_trees(changed, ours_dir, nodeside.NOT_COPIED)
    # The baseline is the seed's rsync -aHAX --delete (no --sparse): holes are not compared.
    base_problems = tree_compare.compare_trees(changed, base_dir, exact=False)
    b.cleanup(ours_dir, base_dir, at_previous)
    ours_bytes = int(statistics.median(received))
    st = runs[-1].stats
    return summary(
        "incremental",
        b,
        o,
        bl,
        params={
            **sync_params(b, tree, "rsync daemon on 127.0.0.1"),
            "change_set": changes.as_dict(),
        },
        changed_bytes=changes.changed_bytes,
        ours_method=runs[-1].method,
        ours_bytes_received=ours_bytes,
        bytes_ratio=round(ours_bytes / changes.changed_bytes, 3),
        ours_bytes_from_master_all_connections=all_bytes,
        bytes_ratio_all_connections=round(all_bytes / changes.changed_bytes, 3),
        ours_bytes_to_master_all_connections=up_bytes,
        up_ratio_all_connections=round(up_bytes / changes.changed_bytes, 3),
        ours_literal_bytes=st.get("Literal data", 0),
        ours_matched_bytes=st.get("Matched data", 0),
        ours_overhead_bytes=ours_bytes - st.get("Literal data", 0),
        ours_bytes_sent=st.get("Total bytes sent", 0),
        variants=sweep,
        baseline_pipe_bytes=int(statistics.median(base_bytes)),
        faithful=not problems,
        faithful_problems=problems[:10],
        baseline_faithful=not base_problems,
    )
