"""sync.sh under busybox sh: the copy decision, from facts only (no disk, no network).

The table reads like the README's list: an interrupted sync compares everything; an unchanged
generation skips; a blank root is filled by tar; an earlier committed generation takes its
delta; anything else walks the whole tree, every file's content compared unless the root is
blank; every N-th boot compares the whole tree instead of skipping or taking a delta. A
property test checks the same rules on random facts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.node.conftest import module_sh

FACTS = ("marker", "mode", "std", "rec", "due", "blank", "tar", "delta")
BASE = dict(marker="no", mode="normal", std="", rec="", due="no", blank="no", tar="no", delta="yes")

# facts (changed from BASE) -> method, mode, a piece of the log line ("" = none)
TABLE = [
    ({"marker": "yes", "std": "g2", "rec": "g1"}, "tree", "full", "did not finish"),
    ({"std": "g1", "rec": "g1"}, "skip", "normal", ""),
    ({"std": "g1", "rec": "g1", "due": "yes"}, "tree", "full", "g1 unchanged; every 10th"),
    ({"blank": "yes", "tar": "yes"}, "tar", "normal", ""),
    ({"blank": "yes", "tar": "yes", "std": "g2"}, "tar", "normal", ""),
    ({"blank": "yes"}, "tree", "normal", ""),
    ({"mode": "full", "blank": "yes", "tar": "yes"}, "tar", "full", ""),
    ({"mode": "full", "std": "g2", "rec": "g1"}, "tree", "full", ""),
    ({"mode": "full", "std": "g1", "rec": "g1"}, "tree", "full", ""),
    ({"std": "g2", "rec": "g1"}, "delta", "normal", ""),
    ({"std": "g2", "rec": "g1", "due": "yes"}, "tree", "full", "g2: every 10th boot"),
    ({"std": "", "rec": "", "due": "yes"}, "tree", "full", ""),
    ({"blank": "yes", "tar": "yes", "due": "yes"}, "tar", "normal", ""),
    ({"std": "g2", "rec": "g1", "delta": "no"}, "tree", "full", ""),
    ({"std": "g2", "rec": "uncommitted"}, "tree", "full", ""),
    ({"std": "", "rec": "g1"}, "tree", "full", ""),
    ({"std": "g1", "rec": ""}, "tree", "full", ""),
    ({"std": "", "rec": ""}, "tree", "full", ""),
    ({"std": "g2", "rec": "", "blank": "yes"}, "tree", "normal", ""),
]


def decide(rows: list[dict[str, str]]) -> list[tuple[str, str, str]]:
    """Run cc_copy_decision once per row in one busybox sh; (method, mode, why) per row."""
    calls = "".join(
        "cc_copy_decision " + " ".join(f"'{row[f]}'" for f in FACTS) + "\n"
        'printf "%s|%s|%s\\n" "$CC_COPY_METHOD" "$CC_COPY_MODE" "$CC_COPY_WHY"\n'
        for row in rows
    )
    rc, out = module_sh(["record", "sync"], calls, CC_VERIFY_EVERY="10")
    assert rc == 0, out
    result = [tuple(line.split("|", 2)) for line in out.splitlines()]
    assert len(result) == len(rows), out
    return result  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("facts", "method", "mode", "why"), TABLE, ids=[str(i) for i in range(len(TABLE))]
)
def test_decision_table(facts: dict[str, str], method: str, mode: str, why: str) -> None:
    ((got_method, got_mode, got_why),) = decide([{**BASE, **facts}])
    assert (got_method, got_mode) == (method, mode)
    assert why in got_why and (why != "" or got_why == "")


def test_the_table_covers_every_method() -> None:
    assert {row[1] for row in TABLE} == {"skip", "tar", "delta", "tree"}


GEN = st.sampled_from(["", "g1", "g2", "uncommitted"])
YES_NO = st.sampled_from(["yes", "no"])
ROW = st.fixed_dictionaries(
    {
        "marker": YES_NO,
        "mode": st.sampled_from(["normal", "full"]),
        "std": GEN,
        "rec": GEN,
        "due": YES_NO,
        "blank": YES_NO,
        "tar": YES_NO,
        "delta": YES_NO,
    }
)


@settings(max_examples=30, deadline=None)
@given(rows=st.lists(ROW, min_size=1, max_size=20))
def test_decision_rules_hold_on_random_facts(rows: list[dict[str, str]]) -> None:
    for row, (method, mode, _) in zip(rows, decide(rows), strict=True):
        interrupted = row["marker"] == "yes"
        compared = method == "tree" and row["blank"] == "no"
        assert mode == ("full" if interrupted or row["mode"] == "full" or compared else "normal")
        same = row["std"] != "" and row["std"] == row["rec"]
        assert (method == "skip") == (
            not interrupted and row["mode"] == "normal" and same and row["due"] == "no"
        )
        assert (method == "tar") == (row["blank"] == row["tar"] == "yes" and method != "skip")
        if method == "delta":
            assert row["due"] == "no" and row["delta"] == "yes" and mode == "normal"
            assert row["rec"] not in ("", "uncommitted") and row["std"] not in ("", row["rec"])
