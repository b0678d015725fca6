"""The disk layouts against the real sfdisk: every layout's script partitions a scratch disk
image, and makes each partition its `partitions` list names. The inventory model leaves the
script's syntax to sfdisk (sfdisk(8), "INPUT FORMATS"); `validate` and `apply` ask sfdisk
itself, so that a script a node would refuse at boot is refused on the master first."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from clustcontrol.inventory.model import DiskLayout, Inventory
from clustcontrol.run import require, run

#: The scratch disk's size in bytes: the largest a dos label covers with 512-byte sectors
#: (sfdisk(8) warns beyond it); scripts of fixed sizes up to it fit.
SCRATCH_DISK = 2_199_023_255_040


def _partition_numbers(sfdisk: str, image: Path) -> set[int]:
    """The numbers of the partitions on `image` that have sectors, from `sfdisk --json` (its
    "node" names end in the number). sfdisk accepts a size the disk cannot hold (",100TiB")
    and writes an entry of 0 sectors, which the kernel does not show as a partition."""
    table = json.loads(run([sfdisk, "--json", image]).stdout)["partitiontable"]
    found = (
        re.search(r"(\d+)$", str(p.get("node", "")))
        for p in table.get("partitions", [])
        if int(p.get("size", 0)) > 0
    )
    return {int(m.group(1)) for m in found if m}


def layout_problems(name: str, layout: DiskLayout, sfdisk: str, scratch: Path) -> list[str]:
    """The problems of one layout: its script as sfdisk writes it onto a blank scratch image
    of SCRATCH_DISK bytes in the directory `scratch` (the same options as the node engine's
    cc_partition), then the partitions it lists that the script does not make."""
    image = scratch / f"{name}.img"
    image.unlink(missing_ok=True)
    with image.open("wb") as f:
        os.truncate(f.fileno(), SCRATCH_DISK)
    result = run(
        [sfdisk, "--wipe", "always", "--wipe-partitions", "always", "-q", image],
        input=layout.sfdisk.encode(),
        check=False,
    )
    if result.returncode != 0:
        said = [ln for ln in result.stderr.decode(errors="replace").splitlines() if ln.strip()]
        why = said[-1].strip() if said else f"exit status {result.returncode}"
        return [f"disk_layouts.{name}.sfdisk: sfdisk refuses the script: {why[:200]}"]
    made = _partition_numbers(sfdisk, image)
    return [
        f"disk_layouts.{name}.partitions: partition {p.number} ({p.use}) is not made by the "
        f"sfdisk script (it makes {', '.join(map(str, sorted(made))) or 'none'})"
        for p in layout.partitions
        if p.number not in made
    ]


def sfdisk_problems(inv: Inventory) -> list[str]:
    """One line per problem of the inventory's disk layouts (layout_problems), each layout
    tried on its own scratch image in a private temporary directory. Raises CommandError when
    sfdisk is not installed (Debian package fdisk)."""
    sfdisk = require("sfdisk", "fdisk")
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="clustcontrol-layouts-") as tmp:
        for name, layout in sorted(inv.disk_layouts.items()):
            problems += layout_problems(name, layout, sfdisk, Path(tmp))
            (Path(tmp) / f"{name}.img").unlink(missing_ok=True)
    return problems
