"""The strict closed-ended parser against the golden set, one case per test, plus the box parser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from breastgpt.bench.parsing import parse_box, parse_choice, parse_choice_detailed

GOLDEN = [json.loads(line) for line in (Path(__file__).parent / "parser_golden.jsonl").read_text().splitlines()
          if line.strip()]


def test_golden_set_is_large_and_covers_every_status():
    assert len(GOLDEN) >= 60
    assert {c["status"] for c in GOLDEN} == {"letter", "text", "empty", "unparseable", "ambiguous", "negated",
                                              "out_of_range"}
    assert sum(c["expected"] is None for c in GOLDEN) >= 25


@pytest.mark.parametrize("case", GOLDEN, ids=[f"{i:02d}-{c['note'][:40]}" for i, c in enumerate(GOLDEN)])
def test_golden_case(case):
    got = parse_choice_detailed(case["response"], case["options"])
    assert (got.index, got.status) == (case["expected"], case["status"])
    assert parse_choice(case["response"], case["options"]) == case["expected"]


def test_option_count_outside_2_to_6_is_an_error():
    with pytest.raises(ValueError, match="2-6 options"):
        parse_choice("A", ["only"])
    with pytest.raises(ValueError, match="2-6 options"):
        parse_choice("A", list("abcdefg"))


@pytest.mark.parametrize("text,dims,box,status", [
    ("The lesion is at [100, 200, 300, 400].", 2, (100.0, 200.0, 300.0, 400.0), "ok"),
    ("[100,200,300,400] and again [100,200,300,400]", 2, (100.0, 200.0, 300.0, 400.0), "ok"),
    ("[10.5,20,30,40]", 2, (10.5, 20.0, 30.0, 40.0), "ok"),
    ("[1,2,3,4,5,6]", 3, (1.0, 2.0, 3.0, 4.0, 5.0, 6.0), "ok"),
    ("[1,2,3,4,5,6]", 2, None, "none"),
    ("no box here", 2, None, "none"),
    ("[100,200,300,400] or [500,500,600,600]", 2, None, "ambiguous"),
    ("[300,200,100,400]", 2, None, "invalid"),
    ("[100,200,300,1400]", 2, None, "invalid"),
    ("[1,2,3,4,9,5]", 3, None, "invalid"),
    ("<think>[1,2,3,4]</think> [5,6,7,8]", 2, (5.0, 6.0, 7.0, 8.0), "ok"),
])
def test_parse_box(text, dims, box, status):
    got = parse_box(text, dims)
    assert (got.box, got.status) == (box, status)
