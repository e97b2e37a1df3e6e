"""Typed schema of the ``unified_embedding`` section of params.yaml (values live only there).

unified_embedding: Coleman et al., NeurIPS 2023, arXiv:2305.12102.
"""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param


@dataclass
class DataConfig:
    """A generated CTR log (mini) or the first rows of a Criteo-format log (full)."""

    source: str = param(choices=("synthetic", "criteo"))
    n_train: int = param(ge=100)
    n_val: int = param(ge=100)
    n_test: int = param(ge=100)
    n_fields: int = param(ge=2)
    vocab_min: int = param(ge=2)
    vocab_max: int = param(ge=2)
    zipf_s: float = param(gt=0)
    n_noise: int = param(ge=0)
    latent_dim: int = param(ge=1)
    target_ctr: float = param(gt=0, lt=1)
    data_seed: int = param(ge=0)
    # criteo: a hand-placed file (Kaggle terms), verified against its pin and never deleted
    criteo_file: str = param()
    criteo_sha256: str = param()
    criteo_dir: str = param()

    def check(self) -> dict[str, str]:
        """Sizes that fit together; a Criteo file when the source is Criteo."""
        if self.vocab_min > self.vocab_max:
            return {"vocab_min": f"at most vocab_max ({self.vocab_max})"}
        if self.n_noise >= self.n_fields:
            return {"n_noise": f"fewer than n_fields ({self.n_fields})"}
        if self.source == "criteo" and not self.criteo_file:
            return {"criteo_file": "the Criteo-format log to read"}
        return {}

    def unpinned(self) -> dict[str, str]:
        """The hand-placed Criteo log needs its SHA-256 pinned before the full profile runs."""
        if self.source == "criteo" and not self.criteo_sha256:
            return {"criteo_sha256": f"SHA-256 of your copy of {self.criteo_file}"}
        return {}


@dataclass
class ModelConfig:
    """FM + MLP over each scheme's field embeddings; the budgets in table rows of width dim."""

    dim: int = param(ge=1)
    hidden: list[int] = param(ge=1, min_len=1)
    budgets: list[int] = param(ge=2, min_len=1)
    ue_large_fields: int = param(ge=0)
    ue_chunks: int = param(ge=1)
    ue_tables: int = param(ge=1)
    init_std: float = param(gt=0)


@dataclass
class TrainConfig:
    """Adam on all parameters, a fixed number of epochs (§6)."""

    epochs: int = param(ge=1)
    lr: float = param(gt=0)
    batch: int = param(ge=1)


@dataclass
class UnifiedEmbeddingConfig:
    """The unified_embedding study."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    model: ModelConfig = param()
    train: TrainConfig = param()
