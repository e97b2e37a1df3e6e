"""Typed schema of the ``dc_merge`` section of params.yaml (DC-Merge, arXiv:2603.06242)."""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param


@dataclass
class MergeConfig:
    """Merges on the task zoo; α of every merge is chosen on validation from ``alpha_grid``."""

    alpha_grid: list[float] = param(gt=0, min_len=1)
    ties_density: float = param(gt=0, le=1)
    keep_fraction: float = param(gt=0, le=1)  # the paper's literal top-0.1% (dc_literal)
    rho: float = param(ge=1)  # linear smoothing's largest ratio
    heads: list[str] = param(choices=("h1", "h2"), min_len=1)
    regimes: list[str] = param(choices=("fft", "lora"), min_len=1)


@dataclass
class DCMergeConfig:
    """The whole ``dc_merge`` section of one profile."""

    seeds: list[int] = param(min_len=1)
    merge: MergeConfig = param()
