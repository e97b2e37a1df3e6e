"""The synthetic-worlds group's row format (SUMMARY.md's group table)."""

from __future__ import annotations

import pytest

from subspacelab import summary as report
from subspacelab.worlds import GROUP_TABLE, group_table

ROW = {"quantity": "rank", "error": "|r - r*|", "baseline": "PCA"}


def test_group_table_is_one_row_of_means_over_seeds() -> None:
    metrics = {
        "world/truth": [3.0, 3.0],
        "world/recovered": [3.0, 4.0],
        "world/error": [0.0, 1.0],
        "world/baseline_error": [2.0, 2.0],
    }
    lines = group_table(ROW, metrics).splitlines()
    assert len(lines) == 3 and lines[0].count("|") == 8
    assert lines[2] == (
        "| rank | 3.000 ± 0.000 | 3.500 ± 0.707 | \\|r - r*\\| | 0.500 ± 0.707 | PCA "
        "| 2.000 ± 0.000 |"
    )


def test_group_table_names_missing_metrics() -> None:
    with pytest.raises(KeyError, match="world/baseline_error"):
        group_table(ROW, {"world/truth": [1.0], "world/recovered": [1.0], "world/error": [0.0]})


def test_the_table_name_is_the_one_summary_gathers() -> None:
    assert GROUP_TABLE == report.GROUP_TABLE
