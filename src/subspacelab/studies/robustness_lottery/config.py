"""Typed schema of the ``robustness_lottery`` section of params.yaml (Li et al.,
arXiv:2206.07918). mini: MNIST-1D with in-project corruptions; the full profile scales it."""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.config import param
from subspacelab.probes.robustness import CORRUPTIONS


@dataclass
class DataConfig:
    """MNIST-1D generated locally, and the corruptions of its test split."""

    num_samples: int = param(ge=100)
    seed: int = param(ge=0)
    train_split: float = param(gt=0, lt=1)
    corruptions: list[str] = param(choices=tuple(CORRUPTIONS), min_len=2)
    severities: list[int] = param(ge=1, le=5, min_len=2)
    n_test: int = param(ge=10)


@dataclass
class TrainConfig:
    """The small CNN and the pruning methods."""

    channels: int = param(ge=1)
    hidden: int = param(ge=2)
    epochs: int = param(ge=2)
    finetune_epochs: int = param(ge=1)
    rewind_epoch: int = param(ge=1)
    sparsity: float = param(gt=0, lt=1)
    lr: float = param(gt=0)
    batch_size: int = param(ge=1)

    def check(self) -> dict[str, str]:
        """Rewinding happens during training."""
        if self.rewind_epoch >= self.epochs:
            return {"rewind_epoch": f"< epochs ({self.epochs})"}
        return {}


@dataclass
class RobustnessLotteryConfig:
    """The ``robustness_lottery`` section."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    train: TrainConfig = param()
