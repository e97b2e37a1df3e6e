"""Typed schema of the ``convergent`` section of params.yaml (Li et al., arXiv:1511.07543).

The nets' seeds are ``seeds``: every pair of them is compared (6 pairs for 4 nets)."""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.config import param


@dataclass
class DataConfig:
    """MNIST-1D generated locally (``make_dataset``)."""

    num_samples: int = param(ge=100)
    seed: int = param(ge=0)
    train_split: float = param(gt=0, lt=1)


@dataclass
class TrainConfig:
    """The 1-D CNN and its training."""

    channels: int = param(ge=2)
    epochs: int = param(ge=1)
    lr: float = param(gt=0)
    weight_decay: float = param(ge=0)
    batch_size: int = param(ge=1)
    untrained_seed: int = param(ge=0)  # the null net


@dataclass
class AnalysisConfig:
    """Activations of ``n_signals`` test signals; Lasso alphas (must include the claim's 0.01);
    spectral clusters."""

    n_signals: int = param(ge=4)
    alphas: list[float] = param(gt=0, min_len=1)
    clusters: int = param(ge=2)


@dataclass
class ConvergentConfig:
    """The ``convergent`` section."""

    seeds: list[int] = param(min_len=2)
    data: DataConfig = param()
    train: TrainConfig = param()
    analysis: AnalysisConfig = param()
