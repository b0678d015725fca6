"""The benchmark metrics, one module each: `METRIC_FUNCS` maps a metric's name to the function
that measures it (ours vs its baseline, interleaved) and returns its result."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.harness import Bench
from bench.metrics.commit import metric_commit
from bench.metrics.full import metric_full
from bench.metrics.incremental import metric_incremental
from bench.metrics.noop import metric_noop
from bench.metrics.render import metric_render
from bench.metrics.scale import metric_scale
from bench.metrics.storm import metric_storm

METRIC_FUNCS: dict[str, Callable[[Bench], dict[str, Any]]] = {
    "full": metric_full,
    "noop": metric_noop,
    "incremental": metric_incremental,
    "storm": metric_storm,
    "render": metric_render,
    "scale": metric_scale,
    "commit": metric_commit,
}
METRICS = tuple(METRIC_FUNCS)  # in the order a run measures them
#: What a run measures unless --only names others: commit (the master's side, not a node's
#: sync; a minute and a half at the quick size) only when asked for.
DEFAULT_METRICS = tuple(m for m in METRICS if m != "commit")
