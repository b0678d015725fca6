"""The managed block (apply.merge_block) in files the administrator owns (/etc/fstab,
named.conf.local): exact on bytes, and never merged when its marker lines make no single block.

Oracle: the block's lines are the ones between the BEGIN and END marker lines; taking them out,
markers included, must give back the administrator's file byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clustcontrol.apply import BLOCK_BEGIN, BLOCK_END, merge_block
from clustcontrol.errors import InvalidInputError
from tests.conftest import Cli, inventory_data

BEGIN, END = BLOCK_BEGIN.encode(), BLOCK_END.encode()

# Lines an administrator's file may hold: any bytes but a newline, and the near misses of a
# marker that must stay plain lines (a CR line end, a prefix, leading blank, the node's form).
NEAR = [
    BEGIN + b"\r",
    END + b"\r",
    b" " + BEGIN,
    BEGIN[:-1],
    b"# BEGIN clustcontrol",
    b"# END clustcontrol",
    b"\x0c",
    b"\r",
    b"",
    b"\xfc\xff",
]
LINE = st.one_of(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), st.sampled_from(NEAR))
FILE = st.builds(
    lambda lines, final: b"\n".join(lines) + (b"\n" if final and lines else b""),
    st.lists(LINE, max_size=8),
    st.booleans(),
)
BLOCK = st.lists(
    st.text(st.characters(codec="utf-8", exclude_characters="\n"), max_size=20), max_size=4
).map(lambda lines: "".join(f"{line}\n" for line in lines).encode())


def remove_block(data: bytes) -> bytes:
    """The oracle: data without the lines from BEGIN to END, both included."""
    lines = data.split(b"\n")
    start, stop = lines.index(BEGIN), lines.index(END)
    return b"\n".join(lines[:start] + lines[stop + 1 :])


@given(FILE, BLOCK)
def test_merge_then_remove_gives_back_the_file(content: bytes, block: bytes) -> None:
    merged = merge_block(content, block)
    newline = b"\n" if content and not content.endswith(b"\n") else b""
    assert remove_block(merged) == content + newline
    # The block holds exactly the rendered lines, and merging again changes nothing.
    lines = merged.split(b"\n")
    inside = lines[lines.index(BEGIN) + 1 : lines.index(END)]
    assert b"".join(line + b"\n" for line in inside) == block
    assert merge_block(merged, block) == merged


@given(FILE, FILE, BLOCK, BLOCK)
def test_with_markers_only_the_block_changes(
    before: bytes, after: bytes, old: bytes, new: bytes
) -> None:
    before = before if not before or before.endswith(b"\n") else before + b"\n"
    content = before + BEGIN + b"\n" + old + END + b"\n" + after
    assert merge_block(content, new) == before + BEGIN + b"\n" + new + END + b"\n" + after


@given(st.lists(st.one_of(LINE, st.sampled_from([BEGIN, END])), max_size=10))
def test_markers_that_make_no_single_block_are_refused_naming_lines(lines: list[bytes]) -> None:
    content = b"\n".join(lines) + b"\n"
    markers = [line for line in lines if line in (BEGIN, END)]
    if markers in ([], [BEGIN, END]):
        merge_block(content, b"x\n", "/etc/fstab")
        return
    with pytest.raises(InvalidInputError) as info:
        merge_block(content, b"x\n", "/etc/fstab")
    numbers = {i + 1 for i, line in enumerate(lines) if line in (BEGIN, END)}
    for problem in info.value.problems:
        where, number, _why = problem.split(": ", 2)
        assert where == "/etc/fstab" and int(number.removeprefix("line ")) in numbers


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            f"{BLOCK_BEGIN}\n/dev/sdb1 /data ext4 defaults 0 2\n",
            ["line 1: a begin marker without an end marker after it"],
        ),
        (
            f"/dev/sdb1 /data ext4 defaults 0 2\n{BLOCK_END}\n",
            ["line 2: an end marker without a begin marker before it"],
        ),
        (
            f"{BLOCK_BEGIN}\n/data\n{BLOCK_BEGIN}\nx\n{BLOCK_END}\n",
            ["line 1: no end marker before the next begin marker (line 3)"],
        ),
        (
            f"{BLOCK_BEGIN}\nx\n{BLOCK_END}\n/data\n{BLOCK_BEGIN}\ny\n{BLOCK_END}\n",
            ["line 5: a second managed block (the first begins at line 1)"],
        ),
    ],
)
def test_each_unmatched_marker_is_named(content: str, expected: list[str]) -> None:
    with pytest.raises(InvalidInputError) as info:
        merge_block(content.encode(), b"x\n", "/etc/fstab")
    assert info.value.problems == [f"/etc/fstab: {line}" for line in expected]


def apply_cli(cli: Cli, prefix: Path, *extra: str) -> tuple[int, str, str]:
    result = cli("apply", "--root", prefix, "--no-check", *extra)
    return result.code, result.out, result.err


@pytest.fixture
def prefix(cli: Cli, tmp_path: Path) -> Path:
    cli.config.write_text(json.dumps(inventory_data()))
    (tmp_path / "p/etc").mkdir(parents=True)
    return tmp_path / "p"


def test_a_stray_begin_marker_stops_apply_and_nothing_is_written(cli: Cli, prefix: Path) -> None:
    # Before: the first apply appended a second block, the second deleted the /data line.
    fstab = prefix / "etc/fstab"
    admin = f"UUID=abc / ext4 defaults 0 1\n{BLOCK_BEGIN}\n/dev/sdb1 /data ext4 defaults 0 2\n"
    fstab.write_text(admin)
    for extra in (["--dry-run"], []):
        code, out, err = apply_cli(cli, prefix, *extra)
        assert code == 2, (out, err)
        assert err.splitlines()[0] == (
            f"clustcontrol: error: {fstab}: line 2: a begin marker without an end marker after it"
        )
        assert fstab.read_text() == admin
        files = {str(p.relative_to(prefix)) for p in prefix.rglob("*") if p.is_file()}
        assert files - {"run/clustcontrol-apply.lock"} == {"etc/fstab"}  # the lock alone


def test_apply_keeps_every_byte_of_the_admins_fstab(cli: Cli, prefix: Path) -> None:
    # A line with a form feed, CRLF line ends and a Latin-1 comment: before, the first was split
    # in two, CRLF became LF and a byte that is not UTF-8 gave a traceback (--dry-run too).
    fstab = prefix / "etc/fstab"
    admin = (
        b"# f\xfcr die Daten\r\n"
        b"UUID=abc / ext4 defaults 0 1\r\n"
        b"/dev/sdb1 /data ext4 defaults\x0c0 2\n"
        b"tmpfs /tmp tmpfs defaults 0 0"  # no final newline
    )
    fstab.write_bytes(admin)
    code, out, err = apply_cli(cli, prefix, "--dry-run")
    assert code == 0, err
    assert "+# BEGIN clustcontrol managed block" in out and "\\xfc" in out and "\x0c" not in out
    assert fstab.read_bytes() == admin
    code, out, err = apply_cli(cli, prefix)
    assert code == 0, err
    merged = fstab.read_bytes()
    assert merged.startswith(admin + b"\n" + BEGIN + b"\n")
    assert remove_block(merged) == admin + b"\n"
    code, out, err = apply_cli(cli, prefix)
    assert code == 0 and fstab.read_bytes() == merged, err
