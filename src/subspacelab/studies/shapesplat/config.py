"""Typed params of shapesplat (arXiv 2408.10906); values live in params.yaml only."""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param


@dataclass
class DataConfig:
    """The synthetic world: ``n`` points in ``dim`` dimensions near a planted ``rank``-subspace."""

    n: int = param(ge=2)
    dim: int = param(ge=2)
    rank: int = param(ge=1)
    noise: float = param(ge=0.0)


@dataclass
class ShapesplatConfig:
    """One profile of shapesplat's section in params.yaml."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
