"""Typed schema of the ``s2cag`` section of params.yaml (values live only there).

S2CAG: Lin, Yang, Zheng & Ke, KDD 2025, arXiv:2411.11074.
"""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param
from subspacelab.clustering.datasets import PLANETOID_PARTS


@dataclass
class DataConfig:
    """Contextual SBM regimes (mini) or Planetoid graphs (full)."""

    source: str = param(choices=("csbm", "planetoid"))
    # csbm: one graph per regime and seed; regimes are parallel lists
    regimes: list[str] = param()
    ratios: list[float] = param(gt=0)  # p_in / p_out
    topic_weights: list[float] = param(ge=0, le=1)
    n_nodes: int = param(ge=20)
    n_clusters: int = param(ge=2)
    mean_degree: float = param(gt=0)
    n_words: int = param(ge=2)
    words_per_node: int = param(ge=1)
    # planetoid: datasets, where the files live, the raw-file base URL and their SHA-256 pins
    planetoid: list[str] = param(choices=("cora", "citeseer", "pubmed"))
    planetoid_dir: str = param()
    planetoid_url: str = param()
    planetoid_sha256: dict[str, str] = param()

    def check(self) -> dict[str, str]:
        """Regime lists must be parallel; each source needs its datasets."""
        if self.source == "csbm":
            if not self.regimes or not len(self.regimes) == len(self.ratios) == len(
                self.topic_weights
            ):
                return {"regimes": "non-empty, as long as ratios and topic_weights"}
            if self.n_nodes < 2 * self.n_clusters:
                return {"n_nodes": "at least 2 * n_clusters"}
        elif not self.planetoid:
            return {"planetoid": "at least one of cora, citeseer, pubmed"}
        return {}

    def unpinned(self) -> dict[str, str]:
        """Each Planetoid file is fetched only against its SHA-256."""
        if self.source != "planetoid":
            return {}
        parts = (*PLANETOID_PARTS, "test.index")
        files = [f"ind.{name}.{part}" for name in self.planetoid for part in parts]
        return {
            f"planetoid_sha256.{f}": "its SHA-256"
            for f in files
            if not self.planetoid_sha256.get(f)
        }


@dataclass
class ModelConfig:
    """The (T, α) grid searched without labels, solver settings and baseline settings."""

    steps_grid: list[int] = param(ge=0, min_len=1)
    alpha_grid: list[float] = param(gt=0, min_len=1)
    power_iters_sub: int = param(ge=0)
    power_iters_mod: int = param(ge=1)
    gamma: float = param(ge=0)
    sgc_steps: int = param(ge=0)
    sagsc_lam: float = param(gt=0)


@dataclass
class S2CAGConfig:
    """The s2cag study."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    model: ModelConfig = param()
