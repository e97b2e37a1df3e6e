"""Typed schema of the ``merging_compare`` section of params.yaml."""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param


@dataclass
class CompareTables:
    """Which zoo slice the merge table shows (concrete_merge runs on its own head/regime)."""

    heads: list[str] = param(choices=("h1", "h2"), min_len=1)
    regimes: list[str] = param(choices=("fft", "lora"), min_len=1)


@dataclass
class MergingCompareConfig:
    """The whole ``merging_compare`` section of one profile."""

    seeds: list[int] = param(min_len=1)
    tables: CompareTables = param()
