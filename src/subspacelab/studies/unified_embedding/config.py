"""Typed schema of the ``unified_embedding`` section of params.yaml (values live only there).

unified_embedding: Coleman et al., NeurIPS 2023, arXiv:2305.12102.
"""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param
from subspacelab.recsys.datasets import CTR_FIELDS, PinnedFile, RealCTRLog


@dataclass
class DataConfig:
    """A generated CTR log (mini) or the first rows of a real one (full: Criteo, Avazu, KDD12 or
    MovieLens-1M, read by :func:`subspacelab.recsys.datasets.read_ctr`)."""

    source: str = param(choices=("synthetic", *CTR_FIELDS))
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
    # a real log: hand-placed (Criteo, Avazu, KDD12: Kaggle terms) or fetched (MovieLens-1M),
    # verified against its pin and never deleted
    log: PinnedFile = param()
    positive_min: int = param(ge=1, le=5)  # MovieLens: a rating >= this is a click

    def check(self) -> dict[str, str]:
        """Sizes that fit together; a real source names its file and its field count."""
        if self.vocab_min > self.vocab_max:
            return {"vocab_min": f"at most vocab_max ({self.vocab_max})"}
        if self.n_noise >= self.n_fields:
            return {"n_noise": f"fewer than n_fields ({self.n_fields})"}
        if self.source == "synthetic":
            return {}
        real = self.real_log()
        if problems := real.check():
            return problems
        want = real.fields_problem(self.n_fields)
        return {"n_fields": want} if want else {}

    def real_log(self) -> RealCTRLog:
        """The real log of a source other than ``synthetic``."""
        return RealCTRLog(self.source, self.log, self.positive_min)


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
