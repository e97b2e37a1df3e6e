"""Typed schema of the ``recsys_compare`` section of params.yaml (values live only there)."""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param


@dataclass
class RecsysCompareConfig:
    """Which seeds the tables average: the CTR studies' (unified_embedding, optfs) and cm3's."""

    seeds: list[int] = param(min_len=1)
    cm3_seeds: list[int] = param(min_len=1)
