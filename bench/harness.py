"""What every benchmark metric shares: the run's configuration and work directory (`Bench`), and
the helpers the metrics measure with (timed commands, interleaved repetitions, the copy
baseline, the summary every metric's result starts from).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import nodeside, synthetic
from bench.synthetic_plan import PRESETS, Preset

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"


@dataclass(frozen=True)
class Config:
    """The sizes of a run (a --quick, --full or test run).

    tree: the standard of full, noop and incremental; storm_tree and storm_nodes: the standard
    and the number of nodes of storm; reps, storm_reps, render_reps: the interleaved
    repetitions (each of ours and of the baseline) per metric; render_nodes: the size of the
    render metric's inventory; seed: the synthetic standards' seed.
    """

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
    """One run: configuration and where things go.

    work: the scratch directory of node targets (created); results: where the JSON files go;
    cache: the generated standards (default: synthetic.cache_dir()); keep: keep each metric's
    node copies; console: where progress is printed.
    """

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
        """The synthetic standard of preset (this run's seed), generated first if not cached."""
        start = time.perf_counter()
        tree = synthetic.ensure_tree(preset, self.cfg.seed, self.cache)
        self.note_generation(f"standard {preset.name}", time.perf_counter() - start)
        return tree

    def note_generation(self, what: str, took: float) -> None:
        """Record (and print) that generating what took took seconds, if that is over 1 s: a
        cache hit is not worth a note."""
        if took > 1:
            self.generated.append((what, took))
            self.console.print(f"  [dim]{what}: generated in {took:.1f} s (cached now)[/]")

    def generation_note(self) -> str:
        """What this run generated and how many seconds it took, in words (for RESULTS.md)."""
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
        """nodeside.node_sync with this run's busybox, its run directory next to target unless
        kw names one (kw: the other options of nodeside.node_sync)."""
        run_dir = kw.pop("run_dir", target.parent / f"{target.name}.run")
        return nodeside.node_sync(source, target, run_dir=run_dir, bbdir=self.bbdir, **kw)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def make_console() -> Console:
    """A console for progress and the table: 150 columns wide when not a terminal (a log)."""
    console = Console(highlight=False)
    if not console.is_terminal:  # a log file: no wrapping of the table
        console = Console(highlight=False, width=150)
    return console


def rm_rf(path: Path) -> None:
    """rm -rf path, not crossing into other file systems. Raises
    subprocess.CalledProcessError if rm fails."""
    if path.exists() or path.is_symlink():
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


def timed(argv: list[str], **kw: Any) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run argv (kw: more subprocess.run arguments), output captured as text: its wall seconds
    and the finished process. Raises RuntimeError if it exits non-zero."""
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kw)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return seconds, proc


def copy_tree(source: Path, dest: Path) -> float:
    """tar -C source -cf - . | tar -C dest -xf -; its wall seconds. Raises RuntimeError if
    the pipe fails."""
    pipe = 'tar -C "$1" -cf - . | tar -C "$2" -xf -'
    return timed(["sh", "-c", pipe, "sh", str(source), str(dest)])[0]


def interleave(
    reps: int, ours: Callable[[], float], baseline: Callable[[], float]
) -> tuple[list[float], list[float]]:
    """ours, baseline, ours, baseline, ... reps times each: each callable prepares untimed and
    returns the seconds it measured. Returns ours' seconds and the baseline's, in run order."""
    o: list[float] = []
    b: list[float] = []
    for _ in range(reps):
        o.append(ours())
        b.append(baseline())
    return o, b


def check_sync(r: nodeside.SyncResult, what: str) -> None:
    """Raise RuntimeError, naming what and the end of the engine's output, if the sync failed."""
    if r.rc != 0:
        raise RuntimeError(f"{what}: the engine failed (status {r.rc}):\n{r.output[-3000:]}")


def fs_type(path: Path) -> str:
    """The type of the file system path is on (the longest mount point above it in
    /proc/mounts, such as "tmpfs" or "ext4"), "?" if none matches."""
    best, kind = "", "?"
    with open("/proc/mounts") as f:
        for line in f:
            _dev, mnt, typ, *_ = line.split()
            if str(path.resolve()).startswith(mnt) and len(mnt) > len(best):
                best, kind = mnt, typ
    return kind


def default_workdir() -> Path:
    """Where node targets go by default: tmpfs (/dev/shm) when there is a writable one (see
    RESULTS.md: metadata operations of this VM's ext4), else work/ in the standards' cache."""
    shm = Path("/dev/shm")
    if shm.is_dir() and fs_type(shm) == "tmpfs" and os.access(shm, os.W_OK):
        return shm / "clustcontrol-bench"
    return synthetic.cache_dir() / "work"


def summary(
    metric: str, b: Bench, ours: list[float], base: list[float], **extra: Any
) -> dict[str, Any]:
    """A metric's result: the medians of ours and base (seconds) and their ratio (None if the
    baseline took no time), every run's seconds, the run's parameters updated with
    extra["params"], then the rest of extra."""
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
    """The parameters describing a standard: preset name, file names, bytes, manifest counts."""
    return {
        "tree": tree.preset.name,
        "tree_files": tree.preset.files,
        "tree_bytes": tree.total_bytes,
        "tree_counts": tree.counts(),
    }


def sync_params(b: Bench, tree: synthetic.Tree, transport: str) -> dict[str, Any]:
    """The parameters of a single-node sync metric: the standard's (tree_params), the file
    system of the work directory, the transport the engine used."""
    return {**tree_params(tree), "workdir_fs": fs_type(b.work), "transport": transport}
