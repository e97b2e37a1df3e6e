"""Typed schema of the ``optfs`` section of params.yaml (values live only there).

optfs: Lyu et al., WWW 2023, arXiv:2301.10909.
"""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param
from subspacelab.recsys.datasets import RealCTRLog


@dataclass
class DataConfig:
    """A generated CTR log with known signal values (§6), or (``real``, full profile) the first
    rows of a real one (Criteo, Avazu, KDD12 or MovieLens-1M, as unified_embedding reads them),
    split in log order; the generator's settings then go unused."""

    n_train: int = param(ge=100)
    n_val: int = param(ge=100)
    n_test: int = param(ge=100)
    n_fields: int = param(ge=2)
    vocab_min: int = param(ge=2)
    vocab_max: int = param(ge=2)
    zipf_s: float = param(gt=0)
    n_noise: int = param(ge=0)
    signal_value_frac: float = param(gt=0, le=1)
    latent_dim: int = param(ge=1)
    target_ctr: float = param(gt=0, lt=1)
    min_count: int = param(ge=1)
    data_seed: int = param(ge=0)
    real: RealCTRLog | None = param()  # null: the generated log (mini); full names its log

    def check(self) -> dict[str, str]:
        """Sizes that fit together; a real log has ``n_fields`` fields."""
        if self.vocab_min > self.vocab_max:
            return {"vocab_min": f"at most vocab_max ({self.vocab_max})"}
        if self.n_noise >= self.n_fields:
            return {"n_noise": f"fewer than n_fields ({self.n_fields})"}
        want = self.real.fields_problem(self.n_fields) if self.real else None
        return {"n_fields": want} if want else {}


@dataclass
class ModelConfig:
    """DeepFM backbone (§6)."""

    dim: int = param(ge=1)
    hidden: list[int] = param(ge=1, min_len=1)


@dataclass
class SearchConfig:
    """OptFS: gates by continuation, the λ sweep, rewind and retrain (§3, §6)."""

    lr: float = param(gt=0)
    l2: float = param(ge=0)
    gate_lr: float = param(gt=0)
    gate_init: float = param()
    lambdas: list[float] = param(gt=0, min_len=1)
    tau_final: float = param(gt=1)
    search_epochs: int = param(ge=2)
    rewind_epoch: int = param(ge=0)
    retrain_epochs: int = param(ge=1)
    batch: int = param(ge=1)

    def check(self) -> dict[str, str]:
        """The rewind checkpoint is taken during the search."""
        if self.rewind_epoch >= self.search_epochs:
            return {"rewind_epoch": f"below search_epochs ({self.search_epochs})"}
        return {}


@dataclass
class OptFSConfig:
    """The optfs study."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    model: ModelConfig = param()
    search: SearchConfig = param()
