"""reports/SUMMARY.md from made-up reports: verdict counts, conditions, group tables."""

from __future__ import annotations

from typing import Any

import pytest

from subspacelab.summary import fmt_number, group_tables, render, table_sections


def _row(slug: str, group: str, verdicts: list[str], tables: str = "") -> dict[str, Any]:
    claims = [
        {
            "id": f"R{i}",
            "paper": "the paper says",
            "statement": "a > b",
            "verdict": v,
            "resolution": 0.01,
            "tests": [
                {
                    "name": "gap",
                    "rule": "mean",
                    "n": 3,
                    "mean": 0.02,
                    "low": 0.01,
                    "high": 0.03,
                    "op": ">=",
                    "threshold": 0.0,
                }
            ],
            "measured": {},
        }
        for i, v in enumerate(verdicts)
    ]
    metrics = {"study": slug, "title": slug.upper(), "arxiv": "0000.00000", "group": group,
               "kind": "paper", "profile": "mini", "timing_s": {"total": 12.0}}  # fmt: skip
    return {"metrics": metrics, "claims": claims, "tables": tables}


def _group(truth: float, error: float) -> str:
    return (
        "### group\n\n| quantity | truth | error |\n|---|---|---|\n"
        f"| rank | {truth} | {error} |\n\n### other\n\n| a |\n|---|\n| 1 |\n"
    )


def test_summary_counts_three_verdicts_and_shows_intervals() -> None:
    text = render([_row("a", "g", ["holds", "inconclusive", "does not hold"])])
    assert "Claims: 3 — 1 hold, 1 inconclusive, 1 do not hold" in text
    assert "| [a](a/) | [A](https://arxiv.org/abs/0000.00000) | g | 1 | 1 | 1 | 12 s |" in text
    assert "gap = 0.02 [0.01, 0.03] (n=3) >= 0" in text
    assert "**does not hold**" in text and "*inconclusive*" in text


def test_each_group_gets_one_table_from_its_studies_rows() -> None:
    rows = [
        _row("a", "worlds", ["holds"], _group(3.0, 0.1)),
        _row("b", "worlds", ["holds"], _group(5.0, 0.2)),
        _row("c", "other", ["holds"], "### other\n\n| a |\n|---|\n| 1 |\n"),
    ]
    tables = group_tables(rows)
    assert list(tables) == ["worlds"]
    assert tables["worlds"].splitlines() == [
        "| study | quantity | truth | error |",
        "|---|---|---|---|",
        "| a | rank | 3.0 | 0.1 |",
        "| b | rank | 5.0 | 0.2 |",
    ]
    assert "### worlds\n\n| study | quantity | truth | error |" in render(rows)


def test_studies_with_other_columns_are_never_merged_into_one_table() -> None:
    other = "### group\n\n| quantity | truth |\n|---|---|\n| rank | 3 |\n"
    tables = group_tables([_row("a", "w", ["holds"], _group(3.0, 0.1)), _row("b", "w", [], other)])
    assert list(tables) == ["w", "w (2)"]
    assert tables["w (2)"].splitlines()[2] == "| b | rank | 3 |"


def test_a_group_table_without_rows_is_an_error_naming_the_study() -> None:
    empty = "### group\n\n| quantity |\n|---|\n"
    with pytest.raises(ValueError, match="study a: its group table has no rows"):
        group_tables([_row("a", "w", ["holds"], empty)])


def test_a_group_row_with_a_stray_pipe_is_an_error_naming_the_study() -> None:
    stray = "### group\n\n| quantity | truth |\n|---|---|\n| prior over |C| | 3 |\n"
    with pytest.raises(ValueError, match=r"study a: a row of its group table has 4 cells, its h"):
        group_tables([_row("a", "w", ["holds"], stray)])
    escaped = stray.replace("|C|", "\\|C\\|")
    assert group_tables([_row("a", "w", ["holds"], escaped)])["w"].splitlines()[2] == (
        "| a | prior over \\|C\\| | 3 |"
    )


def test_table_sections_and_number_format() -> None:
    assert table_sections(_group(1.0, 2.0))["other"] == "| a |\n|---|\n| 1 |"
    assert [fmt_number(x) for x in (None, float("inf"), 1e-5, 123456.0, 0.12345)] == [
        "n/a", "n/a", "1e-05", "1.23e+05", "0.1235",
    ]  # fmt: skip


def test_a_paper_without_an_arxiv_id_is_named_not_linked() -> None:
    row = _row("x", "g", ["holds"])
    row["metrics"]["arxiv"] = ""
    text = render([row])
    assert "| [x](x/) | X | g |" in text and "arxiv.org/abs/)" not in text
