"""The benchmark harness (bench/) works: the `render` metric and a tiny `full` metric produce
well-formed results, and the node-side engine's copy is faithful. No speed is asserted here."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from bench import nodeside, synthetic, synthetic_plan, tree_compare
from bench.harness import CONFIGS, Bench
from bench.report import run_metric

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (Path(nodeside.BUSYBOX).exists() and shutil.which("rsync") and shutil.which("tar")),
        reason="needs busybox, rsync and tar",
    ),
]


def check_result(path: Path, metric: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    assert data["metric"] == metric
    assert isinstance(data["params"], dict)
    assert data["params"]["preset"] == "tiny"
    ours, base = data["ours_s"], data["baseline_s"]
    assert isinstance(ours, float) and ours > 0
    assert isinstance(base, float) and base > 0
    assert data["ratio"] == pytest.approx(ours / base, rel=0.01)
    assert all(x > 0 for x in data["ours_runs_s"] + data["baseline_runs_s"])
    return data


def test_render_and_tiny_full(tmp_path: Path) -> None:
    bench = Bench(
        CONFIGS["tiny"],
        tmp_path / "work",
        results=tmp_path / "results",
        cache=tmp_path / "cache",
        keep=True,
    )

    render = check_result(run_metric(bench, "render"), "render")
    assert render["params"]["nodes"] == 1000
    assert render["apply_noop_changes"] == 0
    assert render["apply_noop_files_mtime_changed"] == 0
    assert isinstance(render["peak_rss_mb"], float) and render["peak_rss_mb"] > 0

    full = check_result(run_metric(bench, "full"), "full")
    assert full["faithful"] is True and full["baseline_faithful"] is True
    assert full["ours_method"] == "tar"  # a blank root: one tar stream

    # The node-side copy itself: same names, sizes, hard-link counts, symlink targets.
    tree = synthetic.ensure_tree(synthetic_plan.PRESETS["tiny"], 1, tmp_path / "cache")
    copy = tmp_path / "work" / "full-node"
    assert (copy / nodeside.STATE_DIR / "last-sync").is_file()  # the engine recorded its sync

    def listing(root: Path) -> dict[str, tuple[Any, ...]]:
        out: dict[str, tuple[Any, ...]] = {}
        for rel, st in tree_compare.walk(root):
            if rel.startswith(nodeside.ENGINE_PATHS):
                continue
            p = root / rel
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", st.st_size, st.st_nlink)
        return out

    want, have = listing(tree.root), listing(copy)
    assert sorted(have) == sorted(want)
    assert have == want
    assert any(v[0] == "link" for v in want.values())
    assert any(v[0] == "file" and v[2] > 1 for v in want.values())  # hard links exist
    assert tree_compare.compare_trees(tree.root, copy, nodeside.ENGINE_PATHS) == []


def test_scale_metric_reports_its_curve(tmp_path: Path) -> None:
    bench = Bench(
        CONFIGS["tiny"], tmp_path / "work", results=tmp_path / "results", cache=tmp_path / "cache"
    )
    scale = check_result(run_metric(bench, "scale"), "scale")
    (row,) = scale["rows"]
    assert row["nodes"] == 300
    assert all(row[f"{op}_s"] > 0 for op in ("add", "set", "remove", "render", "apply", "noop"))
    assert scale["goals"]["rss"][2] is True
