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
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console
from rich.table import Table
from tests.test_scale import write_large_inventory

from bench import changed_standard, nodeside, synthetic, tree_compare
from bench.synthetic_plan import PRESETS, Preset

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
WORKER = BENCH / "render_worker.py"
METRICS = ("full", "noop", "incremental", "storm", "render")
BLOCK_SIZES = (0, 256, 1024)  # incremental: the delta's rsync block size (0: rsync's, the default)
GOALS = {
    "full": "ratio <= 1.1",
    "noop": "generation skip",
    "incremental": "bytes <= 1.05, time <= 1",
    "storm": "0 failures",
    "render": "< 1 s, < 200 MB, 0 writes",
}


@dataclass(frozen=True)
class Config:
    name: str
    tree: Preset
    storm_tree: Preset
    storm_nodes: int
    reps: int
    storm_reps: int
    render_nodes: int
    render_reps: int
    seed: int = 1


CONFIGS = {
    "quick": Config("quick", PRESETS["quick"], PRESETS["storm-quick"], 16, 3, 2, 10_000, 3),
    "full": Config("full", PRESETS["full"], PRESETS["storm-full"], 128, 5, 3, 10_000, 5),
    # The pytest smoke test: seconds, not minutes.
    "tiny": Config("tiny", PRESETS["tiny"], PRESETS["tiny"], 4, 1, 1, 1_000, 1),
}


@dataclass
class Bench:
    """One run: configuration and where things go."""

    cfg: Config
    work: Path
    results: Path = RESULTS
    cache: Path | None = None
    keep: bool = False  # keep each metric's node copies (the tests inspect them)
    console: Console = field(default_factory=lambda: make_console())

    def __post_init__(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.bbdir = nodeside.busybox_bin(self.work / "busybox-bin")
        self.generated: list[tuple[str, float]] = []

    def tree(self, preset: Preset) -> synthetic.Tree:
        start = time.perf_counter()
        tree = synthetic.ensure_tree(preset, self.cfg.seed, self.cache)
        self.note_generation(f"standard {preset.name}", time.perf_counter() - start)
        return tree

    def note_generation(self, what: str, took: float) -> None:
        if took > 1:
            self.generated.append((what, took))
            self.console.print(f"  [dim]{what}: generated in {took:.1f} s (cached now)[/]")

    def generation_note(self) -> str:
        if not self.generated:
            return "the standards were cached already"
        return "generating " + ", ".join(f"{w} ({s:.0f} s)" for w, s in self.generated)

    def scratch(self, name: str) -> Path:
        """An empty directory under the work dir."""
        path = self.work / name
        rm_rf(path)
        path.mkdir(parents=True)
        return path

    def cleanup(self, *paths: Path) -> None:
        """Free the work dir (tmpfs is memory) after a metric, unless asked to keep."""
        if not self.keep:
            for p in paths:
                rm_rf(p)
                rm_rf(p.parent / f"{p.name}.run")

    def node_sync(self, source: str | Path, target: Path, **kw: Any) -> nodeside.SyncResult:
        run_dir = kw.pop("run_dir", target.parent / f"{target.name}.run")
        return nodeside.node_sync(source, target, run_dir=run_dir, bbdir=self.bbdir, **kw)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def make_console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal:  # a log file: no wrapping of the table
        console = Console(highlight=False, width=150)
    return console


def rm_rf(path: Path) -> None:
    if path.exists() or path.is_symlink():
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


def timed(argv: list[str], **kw: Any) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kw)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return seconds, proc


def copy_tree(source: Path, dest: Path) -> float:
    """tar -C source -cf - . | tar -C dest -xf -; its seconds."""
    pipe = 'tar -C "$1" -cf - . | tar -C "$2" -xf -'
    return timed(["sh", "-c", pipe, "sh", str(source), str(dest)])[0]


def interleave(
    reps: int, ours: Callable[[], float], baseline: Callable[[], float]
) -> tuple[list[float], list[float]]:
    """ours, baseline, ours, baseline, ...: each callable prepares untimed, returns seconds."""
    o: list[float] = []
    b: list[float] = []
    for _ in range(reps):
        o.append(ours())
        b.append(baseline())
    return o, b


def check_sync(r: nodeside.SyncResult, what: str) -> None:
    if r.rc != 0:
        raise RuntimeError(f"{what}: the engine failed (status {r.rc}):\n{r.output[-3000:]}")


def fs_type(path: Path) -> str:
    best, kind = "", "?"
    with open("/proc/mounts") as f:
        for line in f:
            _dev, mnt, typ, *_ = line.split()
            if str(path.resolve()).startswith(mnt) and len(mnt) > len(best):
                best, kind = mnt, typ
    return kind


def default_workdir() -> Path:
    """tmpfs when there is one: see RESULTS.md (metadata operations of this VM's ext4)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and fs_type(shm) == "tmpfs" and os.access(shm, os.W_OK):
        return shm / "clustcontrol-bench"
    return synthetic.cache_dir() / "work"


def summary(
    metric: str, b: Bench, ours: list[float], base: list[float], **extra: Any
) -> dict[str, Any]:
    ours_s, base_s = statistics.median(ours), statistics.median(base)
    params = {"preset": b.cfg.name, "seed": b.cfg.seed, "reps": len(ours)}
    params.update(extra.pop("params", {}))
    return {
        "metric": metric,
        "ours_s": round(ours_s, 6),
        "baseline_s": round(base_s, 6),
        "ratio": round(ours_s / base_s, 3) if base_s > 0 else None,
        "params": params,
        "ours_runs_s": [round(x, 6) for x in ours],
        "baseline_runs_s": [round(x, 6) for x in base],
        **extra,
    }


def tree_params(tree: synthetic.Tree) -> dict[str, Any]:
    return {
        "tree": tree.preset.name,
        "tree_files": tree.preset.files,
        "tree_bytes": tree.total_bytes,
        "tree_counts": tree.counts(),
    }


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------
def metric_full(b: Bench) -> dict[str, Any]:
    """Blank target: the engine's sync (cc_sync, NFS-like local source) vs tar | tar."""
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
    base_problems = tree_compare.compare_trees(tree.root, base_dir)
    b.cleanup(ours_dir, base_dir)
    stats = last[0].stats
    return summary(
        "full",
        b,
        o,
        bl,
        params={**tree_params(tree), "workdir_fs": fs_type(b.work), "transport": "nfs (local)"},
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


def metric_noop(b: Bench) -> dict[str, Any]:
    """Node already in sync: the engine's sync vs rsync -aHAX --delete std/ node/."""
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
        params={**tree_params(tree), "workdir_fs": fs_type(b.work), "transport": "nfs (local)"},
        ours_files_transferred=max(transferred),
        ours_skipped_transfer=all(skipped),
        overhead_s=round(statistics.median(o) - statistics.median(bl), 4),
        verify_boot_s=round(verify.seconds, 4),
        verify_every=every,
        amortized_s=round(amortized, 4),
        amortized_ratio=round(amortized / statistics.median(bl), 3),
        faithful=not problems,
    )


def metric_incremental(b: Bench) -> dict[str, Any]:
    """1% changed, one committed generation later: the engine over a real rsync daemon (a node
    at the previous generation: the master's delta) vs the seed's local rsync of the tree."""
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
        timed(["rsync", "-aHAX", "--delete", f"{source}/", f"{d}/"])
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
        # Untimed, through a relay counting every byte of the boot's connections (the
        # generation file, the delta, the sync): the engine's default rsync block size, then
        # smaller ones (fewer bytes from the master, more block checksums to it).
        sweep = []
        for block in BLOCK_SIZES:
            reset(at_previous, ours_dir)
            with nodeside.counting_proxy(daemon.port) as proxy:
                r = b.node_sync(
                    "",
                    ours_dir,
                    transport="rsync",
                    port=proxy.port,
                    env={"CC_DELTA_BLOCK_SIZE": str(block)},
                )
            check_sync(r, f"relayed, block size {block}")
            sweep.append(
                {
                    "block_size": block,
                    "from_master_bytes": proxy.downstream,
                    "bytes_ratio": round(proxy.downstream / changes.changed_bytes, 3),
                    "to_master_bytes": r.stats.get("Total bytes sent", 0),
                    "seconds": round(r.seconds, 3),
                }
            )
        all_bytes = sweep[0]["from_master_bytes"]
    problems = tree_compare.compare_trees(changed, ours_dir, nodeside.NOT_COPIED)
    problems += tree_compare.compare_trees(changed, base_dir)
    b.cleanup(ours_dir, base_dir, at_previous)
    ours_bytes = int(statistics.median(received))
    st = runs[-1].stats
    return summary(
        "incremental",
        b,
        o,
        bl,
        params={
            **tree_params(tree),
            "workdir_fs": fs_type(b.work),
            "transport": "rsync daemon on 127.0.0.1",
            "change_set": changes.as_dict(),
        },
        changed_bytes=changes.changed_bytes,
        ours_method=runs[-1].method,
        ours_bytes_received=ours_bytes,
        bytes_ratio=round(ours_bytes / changes.changed_bytes, 3),
        ours_bytes_from_master_all_connections=all_bytes,
        bytes_ratio_all_connections=round(all_bytes / changes.changed_bytes, 3),
        ours_literal_bytes=st.get("Literal data", 0),
        ours_matched_bytes=st.get("Matched data", 0),
        ours_overhead_bytes=ours_bytes - st.get("Literal data", 0),
        ours_bytes_sent=st.get("Total bytes sent", 0),
        block_size_sweep=sweep,
        baseline_pipe_bytes=int(statistics.median(base_bytes)),
        faithful=not problems,
        faithful_problems=problems[:10],
    )


def metric_storm(b: Bench) -> dict[str, Any]:
    """N nodes at once from one daemon with max connections N/2 (retry with back-off) vs N
    times one node alone."""
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


def run_worker(args: list[str], report: Path) -> tuple[dict[str, Any], float, int]:
    """One render_worker child under /usr/bin/time -v: its JSON, wall seconds, peak RSS (kB)."""
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
    one str.format per node; peak RSS; apply with nothing changed writes nothing."""
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


METRIC_FUNCS: dict[str, Callable[[Bench], dict[str, Any]]] = {
    "full": metric_full,
    "noop": metric_noop,
    "incremental": metric_incremental,
    "storm": metric_storm,
    "render": metric_render,
}


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
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
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if Path(f"/proc/{pid}/comm").read_text().startswith("qemu"):
                    return True
            except OSError:
                continue
    return False


def notes(r: dict[str, Any]) -> str:
    m = r["metric"]
    if m == "full":
        return f"{r['bytes'] / 1e6:.0f} MB; faithful={r['faithful']}"
    if m == "noop":
        return (
            f"skipped={r['ours_skipped_transfer']}; verify boot {r['verify_boot_s']:.2f} s; "
            f"1-in-{r['verify_every']} amortized ratio {r['amortized_ratio']:.2f}"
        )
    if m == "incremental":
        small = r["block_size_sweep"][1]
        return (
            f"{r['ours_method']}: {r['ours_bytes_from_master_all_connections'] / 1e6:.2f} MB "
            f"from the master / changed {r['changed_bytes'] / 1e6:.2f} MB = "
            f"{r['bytes_ratio_all_connections']:.2f} ({small['bytes_ratio']:.2f} with "
            f"{small['block_size']}-byte blocks, {small['to_master_bytes'] / 1e6:.0f} MB up)"
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
    return ""


WIDTHS = (12, 9, 11, 8, 26, 64)


def table(rows: list[dict[str, Any]], header: bool) -> Table:
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
    """Measure one metric, write <results>/<metric>.json, return its path."""
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
  (`src/clustcontrol/node/lib/clustcontrol-functions`) is sourced by `busybox sh` and its
  `cc_sync` is called (`bench/nodeside.py: node_sync`), with the NFS transport as a plain local
  directory (`CC_SOURCE_MNT`) or a real `rsync --daemon` on 127.0.0.1. Disk partitioning and
  mounting (`cc_run`) are left out: the target is a directory.
* Node targets live on tmpfs (`/dev/shm`) when there is one: on this VM's ext4 a file creation
  costs ~225 us (measured: 20,000 files through `tar | tar` take 13-17 s on ext4, 0.9 s on
  tmpfs), which makes every copy method equally slow and hides the differences this bench is
  for; `--workdir DIR` puts them elsewhere. The standards are cached under `cache/bench/`.
* The synthetic standard (`bench/synthetic.py`, seed 1) is a committed one: it carries
  `etc/clustcontrol-generation` (SEQ-HASH, as `clustcontrol image commit` writes it); the
  changed standard of `incremental` carries the next generation.
"""


def write_results_md(results: Path, out: Path) -> None:
    """RESULTS.md from the full-preset JSON files in results (and results/run.json)."""
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
    lines += ["", RESULTS_NOTES]
    extra = BENCH / "RESULTS-notes.md"
    if extra.exists():
        lines += [extra.read_text()]
    out.write_text("\n".join(lines).rstrip() + "\n")


def main(argv: list[str] | None = None) -> int:
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
    metrics = args.only or list(METRICS)
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
