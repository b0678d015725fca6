"""commit: `clustcontrol image commit` of the synthetic standard into a new generation store
(the master's code: every file copied and hashed, the manifest, the lists the tree carries) vs
tar | tar of the same standard; and a recommit after 1% of a working copy changed (the rest
hard-linked to the previous generation, what is known of it carried over)."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

from bench.changed_standard import apply_changes, plan_changes
from bench.harness import Bench, copy_tree, interleave, rm_rf, summary, tree_params
from bench.synthetic import generation_id
from clustcontrol.contract import CONTROL_DIR
from clustcontrol.image.commit import CommitResult, commit_tree
from clustcontrol.image.generation import GenerationStore


def _commit(root: Path, store: Path) -> tuple[float, CommitResult]:
    """commit_tree of the working tree root into the store at store: wall seconds, result."""
    start = time.perf_counter()
    result = commit_tree("bench", root, GenerationStore(store), control_dir=CONTROL_DIR, keep=2)
    return time.perf_counter() - start, result


def metric_commit(b: Bench) -> dict[str, Any]:
    """The first commit of the standard (ours) vs tar | tar of it (baseline), interleaved; then
    the recommit of a working copy after the incremental metric's 1% change set. Returns the
    result (harness.summary; times in seconds). Raises RuntimeError if a command fails."""
    tree = b.tree(b.cfg.tree)
    store, base_dir = b.work / "commit-store", b.work / "commit-tar"
    last: list[CommitResult] = []

    def ours() -> float:
        rm_rf(store)
        os.sync()
        seconds, result = _commit(tree.root, store)
        last[:] = [result]
        return seconds

    def baseline() -> float:
        rm_rf(base_dir)
        base_dir.mkdir(parents=True)
        os.sync()
        return copy_tree(tree.root, base_dir)

    o, bl = interleave(b.cfg.reps, ours, baseline)
    first = last[0]
    # The recommit: a working copy committed once (untimed), 1% of it changed, committed again.
    changes = plan_changes(tree)
    working, again = b.work / "commit-working", b.work / "commit-store-again"
    recommits: list[float] = []
    linked = copied = 0
    for _ in range(b.cfg.reps):
        for path in (working, again):
            rm_rf(path)
        working.mkdir(parents=True)
        copy_tree(tree.root, working)
        _commit(working, again)
        apply_changes(working, changes, tree.seed, generation_id(tree.seed, tree.preset.name, 2))
        os.sync()
        seconds, result = _commit(working, again)
        recommits.append(seconds)
        assert result.tree is not None
        linked, copied = result.tree.linked, result.tree.copied
    b.cleanup(store, base_dir, working, again)
    assert first.tree is not None
    return summary(
        "commit",
        b,
        o,
        bl,
        params={**tree_params(tree), "workdir_fs": "see RESULTS.md"},
        files=first.files,
        copied=first.tree.copied,
        bytes_copied=first.tree.bytes_copied,
        recommit_s=round(statistics.median(recommits), 4),
        recommit_runs_s=[round(x, 4) for x in recommits],
        recommit_linked=linked,
        recommit_copied=copied,
    )
