"""Typed schema of the ``robustness_lottery`` section of params.yaml (Li et al.,
arXiv:2206.07918). mini: MNIST-1D with in-project 1-D corruptions and a small 1-D CNN; full:
CIFAR-10 with CIFAR-10-C and Conv-8."""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param
from subspacelab.probes.robustness import CORRUPTIONS
from subspacelab.studies.robustness_lottery.full import CIFAR10C_CORRUPTIONS, PER_SEVERITY

ARCHS = ("small_cnn", "conv8")


@dataclass
class Mnist1dData:
    """MNIST-1D generated locally (the miniature)."""

    num_samples: int = param(ge=100)
    train_split: float = param(gt=0, lt=1)


@dataclass
class CifarData:
    """CIFAR-10 and CIFAR-10-C, downloaded (checksums pinned in code) into ``download_dir``."""

    download_dir: str = param()


@dataclass
class DataConfig:
    """Exactly one source (``mnist1d`` or ``cifar10``), and the corruptions of its test split.

    ``seed``: MNIST-1D's generator and the 1-D corruptions' noise."""

    seed: int = param(ge=0)
    mnist1d: Mnist1dData | None = param()
    cifar10: CifarData | None = param()
    corruptions: list[str] = param(
        choices=tuple(dict.fromkeys([*CORRUPTIONS, *CIFAR10C_CORRUPTIONS])), min_len=2
    )
    severities: list[int] = param(ge=1, le=5, min_len=2)
    n_test: int = param(ge=10)

    def check(self) -> dict[str, str]:
        """One source; corruptions that exist for it; CIFAR-10-C has 10,000 images a cell."""
        if (self.mnist1d is None) == (self.cifar10 is None):
            return {"mnist1d": "exactly one of mnist1d and cifar10 set, the other null"}
        allowed = CORRUPTIONS if self.mnist1d is not None else CIFAR10C_CORRUPTIONS
        unknown = [c for c in self.corruptions if c not in allowed]
        if unknown:
            return {"corruptions": f"{unknown} do not exist for this source"}
        if self.cifar10 is not None and self.n_test > PER_SEVERITY:
            return {"n_test": f"<= {PER_SEVERITY} (CIFAR-10's test set)"}
        return {}


@dataclass
class TrainConfig:
    """The network and the pruning methods. ``small_cnn`` (1-D, mini): conv widths
    ``channels``, hidden width ``hidden``; ``conv8`` (images, full): conv widths ``channels``
    × (1, 2, 4, 8), two FC layers of ``hidden``."""

    arch: str = param(choices=ARCHS)
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

    def check(self) -> dict[str, str]:
        """The 1-D network for MNIST-1D, Conv-8 for CIFAR-10."""
        wanted = "small_cnn" if self.data.mnist1d is not None else "conv8"
        if self.train.arch != wanted:
            return {"train.arch": f"{wanted!r} for this data source"}
        return {}
