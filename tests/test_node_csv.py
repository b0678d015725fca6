"""`node import` reads CSV files as spreadsheets write them: a UTF-8 byte order mark is
accepted; a line break inside a quoted field, a node named twice and text that is not UTF-8
(Latin-1, UTF-16) are refused, one line each naming the file and line, nothing imported. An
inventory that is not UTF-8 is one clear error too, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from clustcontrol.errors import InvalidInputError
from clustcontrol.inventory.normalize import read_node_csv
from tests.conftest import Cli

HEADER = "name,mac,ip,image\r\n"


def problems(path: Path) -> list[str]:
    with pytest.raises(InvalidInputError) as info:
        read_node_csv(path)
    return info.value.problems


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    f = tmp_path / "nodes.csv"
    f.write_bytes(b"\xef\xbb\xbf" + (HEADER + "n1,52-54-00-AA-00-01,192.168.0.31,\r\n").encode())
    (entry,) = read_node_csv(f)
    assert (entry.name, entry.mac, entry.ip, entry.image) == (
        "n1",
        "52:54:00:aa:00:01",
        "192.168.0.31",
        None,
    )


def test_a_line_break_in_a_quoted_field_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "nodes.csv"
    f.write_text(
        HEADER + 'n1,52:54:00:00:00:01,192.168.0.31,\r\n"n2\nx",52:54:00:00:00:02,192.168.0.32,\r\n'
    )
    (line,) = problems(f)
    assert line.startswith(f"{f}:3: a quoted field holds a line break")


def test_a_node_named_twice_is_refused_with_both_lines(tmp_path: Path) -> None:
    f = tmp_path / "nodes.csv"
    f.write_text(
        HEADER
        + "n1,52:54:00:00:00:01,192.168.0.31,\n"
        + "n2,52:54:00:00:00:02,192.168.0.32,\n"
        + "N1,52:54:00:00:00:03,192.168.0.33,\n"
    )
    assert problems(f) == [f"{f}:4: node 'n1' is on line 2 already"]


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16"])
def test_text_that_is_not_utf8_is_refused(tmp_path: Path, encoding: str) -> None:
    f = tmp_path / "nodes.csv"
    f.write_bytes((HEADER + "n\xe9,52:54:00:00:00:01,192.168.0.31,\n").encode(encoding))
    (line,) = problems(f)
    assert line.startswith(f"{f}: not UTF-8 text (byte 0x")


def test_the_cli_imports_nothing_from_a_refused_file(initialized: Cli, tmp_path: Path) -> None:
    cli = initialized
    before = cli.config.read_bytes()
    f = tmp_path / "nodes.csv"
    f.write_bytes((HEADER + "n\xe9,52:54:00:00:00:01,192.168.0.31,\n").encode("utf-16"))
    result = cli("node", "import", f)
    assert result.code == 2 and result.err.count("\n") == 2, result.err  # error and hint
    assert "Traceback" not in result.err
    assert cli.config.read_bytes() == before


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16"])
def test_an_inventory_that_is_not_utf8_is_one_clear_error(initialized: Cli, encoding: str) -> None:
    cli = initialized
    text = cli.config.read_text() + "# caf\xe9\n"
    cli.config.write_bytes(text.encode(encoding))
    for verb in (
        ["validate"],
        ["node", "list"],
        ["node", "add", "n9", "--mac", "52:54:00:00:00:09", "--ip", "192.168.0.99"],
    ):
        result = cli(*verb)
        assert result.code == 2, (verb, result.err)
        assert result.err.startswith(f"clustcontrol: error: {cli.config}: not UTF-8 text"), (
            result.err
        )
        assert "Traceback" not in result.err


def test_a_yaml_alias_bomb_makes_short_errors(cli: Cli) -> None:
    """cluster.domain as 10**9 shared copies of one list (YAML aliases, nine levels of ten):
    the error line spelled every copy out (megabytes, minutes); it is cut at a few levels."""
    levels = ["x0: &l0 [a, a, a, a, a, a, a, a, a, a]"] + [
        f"x{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 9)
    ]
    cli.config.write_text(
        "\n".join(levels)
        + "\ncluster:\n  domain: *l8\n  network: 192.168.0.0/24\n"
        + "  master: {name: m, ip: 192.168.0.1}\nimages: {default: {root: /srv/a}}\n"
    )
    result = cli("validate")
    assert result.code == 2
    assert result.err.startswith("clustcontrol: error: cluster.domain: [[[")
    assert len(result.err) < 2000, len(result.err)
