"""storm: N nodes at once from one rsync daemon with max connections N/2 (refusals retried with
the engine's back-off) vs N x one node alone: wall time, zero failures, faithful copies."""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

from bench import nodeside, tree_compare
from bench.harness import Bench, check_sync, fs_type, interleave, rm_rf, summary, tree_params


def metric_storm(b: Bench) -> dict[str, Any]:
    """N nodes at once from one daemon with max connections N/2 (retry with back-off) vs N
    times one node alone. Returns the result (harness.summary; times in seconds, throughput in
    MB/s; failed nodes are counted, not raised). Raises RuntimeError if a single node fails."""
    tree = b.tree(b.cfg.storm_tree)
    n = b.cfg.storm_nodes
    max_conn = max(1, n // 2)
    single_dir = b.work / "storm-single"
    nodes = [b.work / "storm" / f"node{i:03d}" for i in range(n)]
    failures = 0
    refused_engine: list[int] = []
    refused_daemon: list[int] = []
    retried: list[int] = []
    slowest: list[float] = []
    file_bytes: list[int] = []

    with nodeside.rsync_daemon(
        tree.root, b.work / "storm-daemon", max_connections=max_conn
    ) as daemon:

        def storm() -> float:
            nonlocal failures
            rm_rf(b.work / "storm")
            os.sync()
            offset = daemon.log_size()
            start = time.perf_counter()
            running = [
                nodeside.start_node_sync(
                    "",
                    d,
                    run_dir=d.parent / f"{d.name}.run",
                    bbdir=b.bbdir,
                    transport="rsync",
                    port=daemon.port,
                )
                for d in nodes
            ]
            results = [r.wait(3600) for r in running]
            seconds = time.perf_counter() - start
            failures += sum(1 for r in results if r.rc != 0)
            refused_engine.append(sum(r.refused for r in results))
            retried.append(sum(r.failed_attempts for r in results))
            refused_daemon.append(nodeside.RsyncDaemon.refusals(daemon.log_since(offset)))
            slowest.append(max(r.seconds for r in results))
            for r in results:
                if r.rc != 0:
                    b.console.print(f"[red]storm node failed:[/] {r.output[-1500:]}")
            return seconds

        def single() -> float:
            rm_rf(single_dir)
            os.sync()
            r = b.node_sync("", single_dir, transport="rsync", port=daemon.port)
            check_sync(r, "storm: single node")
            file_bytes.append(r.file_bytes)
            return r.seconds

        o, one = interleave(b.cfg.storm_reps, storm, single)
    signature = tree_compare.signature(tree.root)
    unfaithful = 0
    for d in nodes:
        copy = tree_compare.signature(d, nodeside.ENGINE_PATHS)
        unfaithful += copy != signature
    b.cleanup(b.work / "storm", single_dir)
    per_node = int(statistics.median(file_bytes))
    storm_s, one_s = statistics.median(o), statistics.median(one)
    aggregate = n * per_node / storm_s
    single_tp = per_node / one_s
    return summary(
        "storm",
        b,
        o,
        [n * x for x in one],
        params={
            **tree_params(tree),
            "nodes": n,
            "max_connections": max_conn,
            "workdir_fs": fs_type(b.work),
            "retries": 5,
            "retry_base_s": 2,
            "retry_max_s": 60,
            "baseline": "N x one node alone (same daemon, same engine path)",
        },
        single_node_s=round(one_s, 4),
        failures=failures,
        refused_connections_retried=sum(refused_engine),
        refused_by_daemon_log=sum(refused_daemon),
        # The daemon also refuses the engine's other connection, the fetch of the standard's
        # generation file before the sync; it is retried with the same back-off.
        refused_generation_fetches=sum(refused_daemon) - sum(refused_engine),
        failed_attempts_retried=sum(retried),
        slowest_node_s=round(max(slowest), 3),
        aggregate_mb_per_s=round(aggregate / 1e6, 2),
        single_node_mb_per_s=round(single_tp / 1e6, 2),
        aggregate_vs_single=round(aggregate / single_tp, 3),
        unfaithful_copies=unfaithful,
    )
