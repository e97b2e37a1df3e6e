"""Typed schema of the ``grbf_active`` section of params.yaml (values live only there).

grbf_active: D'Agostino, Ilievski & Shoemaker, Neural Networks 2024, arXiv:2307.05639.
"""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param
from subspacelab.studies.grbf_active.tables import TABLES


@dataclass
class DataConfig:
    """The ridge world (B), the digits splits (A, C) and the full profile's UCI tables."""

    ridge_d: int = param(ge=2)
    ridge_support: int = param(ge=2)
    ridge_train: int = param(ge=10)
    ridge_test: int = param(ge=10)
    ridge_noise: float = param(ge=0)
    data_seed: int = param(ge=0)  # world of seed s: drawn with data_seed + s
    digits_pair: list[int] = param(ge=0, le=9)
    digits_test: float = param(gt=0, lt=1)
    digits_split_seed: int = param(ge=0)  # A: the notebook's fixed split (random_state=42)
    multiclass_rows: int = param(ge=0)  # C: the first rows of the 1797 digits (0: all)
    tables: list[str] = param(choices=tuple(TABLES))
    tables_dir: str = param()
    tables_sha256: dict[str, str] = param()

    def check(self) -> dict[str, str]:
        """A support inside the world; two distinct digit classes."""
        if self.ridge_support > self.ridge_d:
            return {"ridge_support": f"at most ridge_d ({self.ridge_d})"}
        if len(self.digits_pair) != 2 or self.digits_pair[0] == self.digits_pair[1]:
            return {"digits_pair": "two distinct digit classes"}
        return {}

    def unpinned(self) -> dict[str, str]:
        """Each UCI table is fetched only against its SHA-256."""
        return {
            f"tables_sha256.{name}": f"SHA-256 of {TABLES[name].url}"
            for name in self.tables
            if not self.tables_sha256.get(name)
        }


@dataclass
class ModelConfig:
    """Centres (fixed k-means, random_state=0) and the penalties λ_u, λ_w of the notebook."""

    k_ridge: int = param(ge=1)
    k_digits: int = param(ge=1)
    k_multiclass: int = param(ge=1)
    k_tables: int = param(ge=1)
    lam_u: float = param(ge=0)
    lam_w: float = param(ge=0)


@dataclass
class TrainConfig:
    """Adam, lr 0.01, batch 256 (notebook); epochs per task."""

    lr: float = param(gt=0)
    batch: int = param(ge=1)
    epochs_ridge: int = param(ge=1)
    epochs_digits: int = param(ge=1)
    epochs_multiclass: int = param(ge=1)
    epochs_tables: int = param(ge=1)


@dataclass
class EvalConfig:
    """Feature-selection sizes, the energy share that reads r, the baselines' settings."""

    top_m: list[int] = param(ge=1, min_len=1)  # claim C is decided at the largest
    energy_share: float = param(gt=0, le=1)
    ll_points: int = param(ge=1)
    ll_neighbors: int = param(ge=2)
    rf_trees: int = param(ge=1)


@dataclass
class GrbfActiveConfig:
    """The grbf_active study."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    model: ModelConfig = param()
    train: TrainConfig = param()
    eval: EvalConfig = param()
