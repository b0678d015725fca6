"""rsync batch files beside the generation deltas: a delta's transfer computed once on the master.

For the delta from the previous generation FROM (whose tree is kept), `image commit` runs rsync
once against FROM's tree with `--only-write-batch` (rsync(1), BATCH MODE; compressed, so holes
and compressible data take little room) and writes, next to the delta in the new tree:

    etc/clustcontrol-deltas/FROM.batch   the batch: changed blocks and new data, nothing else
    etc/clustcontrol-deltas/FROM.list    the paths it covers, exactly as a node at FROM lists
                                         them (the delta's paths its sync does not exclude,
                                         then the generation file)
    etc/clustcontrol-deltas/FROM.sums    sha256 of each regular file among them (sha256sum -c)

A node at FROM whose own list is the same replays the batch (`--read-batch`) instead of running
rsync's delta algorithm against the master: nothing goes up, and what comes down is the batch.
rsync replays onto whatever files the node has, so the node checks every result against FROM.sums
and falls back to the ordinary delta sync when anything differs (contract.BATCH_OPTIONS on both
sides). A delta that copies a symbolic link with extended attributes gets no batch: rsync's
batch replay creates the link without them."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path

from clustcontrol.contract import (
    BATCH_OPTIONS,
    DELTA_FORMAT,
    DELTAS_DIR,
    GENERATION_FILE,
    exclusions,
    params,
)
from clustcontrol.fsutil import atomic_write
from clustcontrol.image.generation import GenerationStore, Manifest
from clustcontrol.run import require, run


def _rule_regex(rule: str) -> str:
    """The node's cc_filter_regex for one path rule (relative, `*` within a name, `/**` for
    everything below): the whole path must match."""
    return re.escape(rule).replace(r"\*\*", "\0").replace(r"\*", "[^/]*").replace("\0", ".*")


def excluded_paths(control_dir: str, extra: Iterable[str]) -> re.Pattern[str]:
    """A regular expression matching every path (relative to the root) a node's sync leaves
    alone: the contract's exclusions (node paths at their defaults) and `extra` (absolute
    paths: the image's persistent paths and data partition mount points), each with everything
    below it. Mirrors the node's filter (copy.sh cc_write_filter, cc_filter_regex)."""
    values = {p.key: p.default for p in params("conf.d") if p.default}
    values["CC_CONTROL_DIR"] = control_dir
    rules: list[str] = []
    for path, contents in exclusions(values, sync=True):
        rules += [f"{path}/**"] if contents else [path, f"{path}/**"]
    for path in extra:
        rules += [path.strip("/"), f"{path.strip('/')}/**"]
    return re.compile("|".join(f"(?:{_rule_regex(r)})" for r in rules))


def _delta_copy_paths(delta: bytes) -> list[str] | None:
    """The paths to copy of a delta file (see deltas.py), or None when it is not one."""
    lines = delta.decode().split("\n")
    if not lines or not lines[0].startswith(f"# {DELTA_FORMAT} ") or "# removed" not in lines:
        return None
    return lines[1 : lines.index("# removed")]


def _linked_xattrs(manifest: Manifest, path: str) -> bool:
    """Whether path is a symbolic link with extended attributes: rsync's batch replay
    (--read-batch with -X; rsync 3.2.7 and 3.5.0) creates such a link without them, so a delta
    that copies one gets no batch (its nodes run the ordinary delta sync, which carries them)."""
    entry = manifest.get(path)
    return entry is not None and entry.kind == "l" and bool(entry.xattrs)


def write_batches(
    store: GenerationStore,
    tree: Path,
    manifest: Manifest,
    sources: Iterable[str],
    excluded: re.Pattern[str],
) -> tuple[str, ...]:
    """Write FROM.batch, FROM.list and FROM.sums into tree/DELTAS_DIR for each FROM of `sources`
    that has a delta there and a kept tree in `store` (the module docstring says what they
    hold). `tree` is the new generation's complete tree, `manifest` its manifest, `excluded`
    what nodes leave alone (excluded_paths). Returns the sources that got a batch.

    Raises CommandError when rsync fails and OSError when a file cannot be written."""
    rsync = require("rsync", "rsync")
    deltas = tree / DELTAS_DIR
    written = []
    for source in sources:
        old = store.tree(source)
        delta = deltas / source
        if not old.is_dir() or not delta.is_file():
            continue
        copy = _delta_copy_paths(delta.read_bytes())
        if copy is None or any(_linked_xattrs(manifest, p) for p in copy):
            continue
        listed = [p for p in copy if not excluded.fullmatch(p)] + [GENERATION_FILE]
        listing = "".join(f"{p}\n" for p in listed).encode()
        atomic_write(deltas / f"{source}.list", listing, mode=0o600)
        regular = [p for p in listed if p in manifest and manifest[p].kind == "f"]
        sums = "".join(f"{manifest[p].digest}  {p}\n" for p in regular)
        # The generation file is not in the manifest.
        generation = hashlib.sha256((tree / GENERATION_FILE).read_bytes()).hexdigest()
        sums += f"{generation}  {GENERATION_FILE}\n"
        atomic_write(deltas / f"{source}.sums", sums.encode(), mode=0o600)
        batch = deltas / f"{source}.batch"
        run(
            [
                rsync,
                *BATCH_OPTIONS.split(),
                "--no-whole-file",
                "--files-from=-",
                f"--only-write-batch={batch}",
                f"{tree}/",
                f"{old}/",
            ],
            input=listing,
        )
        batch.with_name(batch.name + ".sh").unlink(missing_ok=True)
        batch.chmod(0o600)
        written.append(source)
    return tuple(written)
