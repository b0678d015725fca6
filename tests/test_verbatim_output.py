"""What the CLI prints is data and shows verbatim: rich markup ("[b]", "[/]") and emoji codes
(":ab:", ":cd:" inside a MAC address) are never interpreted, in tables or in lines."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clustcontrol.cli import common
from tests.conftest import Cli

# Printable ASCII holds every character rich interprets: [ ] / : and emoji names.
# Pieces of what rich would take for markup or emoji codes, joined with random ASCII.
PIECES = ["[b]", "[/]", "[/b]", "[red on blue]", ":ab:", ":cd:", ":smile:", "\\", "[", ":", "]"]
VALUE = st.lists(
    st.one_of(
        st.sampled_from(PIECES),
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=6),
    ),
    min_size=1,
    max_size=5,
).map("".join)


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    saved = common.out.file
    common.out.file = buffer
    try:
        yield buffer
    finally:
        common.out.file = saved


def test_a_cell_that_looks_like_markup_or_an_emoji_code_prints_verbatim(
    captured: io.StringIO,
) -> None:
    values = ["52:54:00:ab:cd:03", "[bold]x[/bold]", ":smile:", "[/]", "a[b]c", r"\[x]"]
    common.print_rows(False, [{"v": v} for v in values], "[red]title[/red]", ["v"])
    text = captured.getvalue()
    for v in values:
        assert v in text
    assert "[red]title[/red]" in text


@given(st.lists(VALUE, min_size=1, max_size=4))
def test_every_table_cell_and_line_prints_verbatim(values: list[str]) -> None:
    buffer = io.StringIO()
    saved = common.out.file
    common.out.file = buffer
    try:
        common.print_rows(False, [{"v": v, "w": v[::-1]} for v in values], "rows", ["v", "w"])
        for v in values:
            common.out.print(f"line: {v}")
    finally:
        common.out.file = saved
    text = buffer.getvalue()
    for v in values:
        assert v in text and v[::-1] in text
        assert f"line: {v}\n" in text


def test_node_list_shows_the_mac_as_it_is(initialized: Cli) -> None:
    """The regression: 52:54:00:ab:cd:03 was shown as 52:54:00🆎cd:03."""
    cli = initialized
    for i, mac in enumerate(["52:54:00:ab:cd:03", "52:54:00:cd:ab:04"]):
        r = cli("node", "add", f"node0{i}", "--mac", mac, "--ip", f"192.168.0.{20 + i}")
        assert r.code == 0, r.err
    table = cli("node", "list").out
    assert "52:54:00:ab:cd:03" in table and "52:54:00:cd:ab:04" in table, table
    rows = json.loads(cli("node", "list", "--output", "json").out)
    assert {r["mac"] for r in rows} == {"52:54:00:ab:cd:03", "52:54:00:cd:ab:04"}
