"""Disk layouts are checked with the real sfdisk on a scratch image: a script sfdisk refuses,
or one that does not make a partition the layout lists, is refused by `validate` (and `apply`)
naming the field; what validates partitions a disk."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clustcontrol.inventory.layouts import SCRATCH_DISK, sfdisk_problems
from clustcontrol.inventory.store import parse_inventory
from tests.conftest import Cli, inventory_data

pytestmark = pytest.mark.skipif(shutil.which("sfdisk") is None, reason="needs sfdisk (fdisk)")

GPT = "label: gpt\n\n,1GiB,S\n,4GiB,L\n,,L\n"
PARTS: list[dict[str, Any]] = [
    {"number": 1, "use": "swap"},
    {"number": 2, "use": "root"},
    {"number": 3, "use": "data", "mount": "/scratch"},
]


def layout_problems(script: str, partitions: list[dict[str, Any]] = PARTS) -> list[str]:
    layouts = {"default": {"sfdisk": script, "partitions": partitions}}
    return sfdisk_problems(parse_inventory(inventory_data(disk_layouts=layouts)))


def test_the_default_and_a_gpt_layout_pass() -> None:
    assert sfdisk_problems(parse_inventory(inventory_data())) == []
    assert layout_problems(GPT) == []


def test_text_sfdisk_refuses_is_refused() -> None:
    (line,) = layout_problems("hello world\n")
    assert line.startswith("disk_layouts.default.sfdisk: sfdisk refuses the script: ")
    assert "unsupported command" in line


def test_a_listed_partition_the_script_does_not_make_is_refused() -> None:
    (line,) = layout_problems("label: gpt\n\n,1GiB,S\n,,L\n")
    assert line == (
        "disk_layouts.default.partitions: partition 3 (data) is not made by the sfdisk "
        "script (it makes 1, 2)"
    )


LINES = st.sampled_from(
    ["label: gpt", "label: dos", "unit: sectors", ",1GiB,S", ",4GiB,L", ",,L", ",,L,*",
     "size=2GiB, type=L", "start=2048, size=4GiB", "bogus", "label: nonsense", ",100TiB,L", ""]
)  # fmt: skip


def partitioned(script: str, image: Path) -> set[int] | None:
    """The oracle: sfdisk writes `script` onto a fresh blank image as the node does; the
    partition numbers partx(8) reads back, or None when sfdisk refuses."""
    image.unlink(missing_ok=True)
    with image.open("wb") as f:
        f.truncate(SCRATCH_DISK)
    wrote = subprocess.run(
        ["sfdisk", "-q", str(image)], input=script.encode(), capture_output=True, check=False
    )
    if wrote.returncode != 0:
        return None
    listed = subprocess.run(
        ["partx", "-g", "-o", "NR", str(image)], capture_output=True, text=True, check=False
    )
    return {int(n) for n in listed.stdout.split()}


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(LINES, min_size=1, max_size=6))
def test_refused_exactly_when_a_node_could_not_partition_with_it(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str]
) -> None:
    script = "\n".join(lines) + "\n"
    if not script.strip():
        return
    made = partitioned(script, tmp_path_factory.mktemp("oracle") / "disk.img")
    problems = layout_problems(script)
    if made is None:
        assert len(problems) == 1 and "sfdisk refuses the script" in problems[0], problems
    else:
        missing = {1, 2, 3} - made
        assert len(problems) == len(missing), (made, problems)
        assert all(f"partition {n} " in " ".join(problems) for n in missing), problems


def test_validate_and_apply_refuse_it(initialized: Cli, tmp_path: Path) -> None:
    cli = initialized
    text = cli.config.read_text().replace("      ,,L\n", "      ,,L\n      frobnicate\n", 1)
    cli.config.write_text(text)
    for verb in (["validate"], ["apply", "--root", str(tmp_path / "prefix")]):
        result = cli(*verb)
        assert result.code == 2, (verb, result)
        assert "disk_layouts.default.sfdisk: sfdisk refuses the script" in result.err
    assert not (tmp_path / "prefix").exists()
