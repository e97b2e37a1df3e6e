"""Typed schema of the ``convergent`` section of params.yaml (Li et al., arXiv:1511.07543).

The nets' seeds are ``seeds``: every pair of them is compared (6 pairs for 4 nets). mini:
MNIST-1D and a 1-D CNN; full: ImageNet (ILSVRC2012, subspacelab.data.imagenet) and AlexNet."""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param
from subspacelab.data.imagenet import ImageNetData

ARCHS = ("net1d", "alexnet")


@dataclass
class Mnist1dData:
    """MNIST-1D generated locally (``make_dataset``)."""

    num_samples: int = param(ge=100)
    seed: int = param(ge=0)
    train_split: float = param(gt=0, lt=1)


@dataclass
class DataConfig:
    """Exactly one source: ``mnist1d`` (mini) or ``imagenet`` (full; user-placed archives,
    checksums pinned in params.yaml, prepared by subspacelab.data.imagenet)."""

    mnist1d: Mnist1dData | None = param()
    imagenet: ImageNetData | None = param()
    loader_seed: int = param(ge=0)  # the shared mini-batch order of the jointly trained nets

    def check(self) -> dict[str, str]:
        """One source."""
        if (self.mnist1d is None) == (self.imagenet is None):
            return {"mnist1d": "exactly one of mnist1d and imagenet set, the other null"}
        return {}


@dataclass
class TrainConfig:
    """The nets and their training: ``net1d`` (mini; conv widths ``channels``) or torchvision's
    ``alexnet`` (full; ``channels`` null)."""

    arch: str = param(choices=ARCHS)
    channels: int | None = param(ge=2)
    epochs: int = param(ge=1)
    lr: float = param(gt=0)
    weight_decay: float = param(ge=0)
    batch_size: int = param(ge=1)
    num_workers: int = param(ge=0)  # image decoding workers (full)

    def check(self) -> dict[str, str]:
        """``channels`` exactly for net1d."""
        if (self.channels is None) == (self.arch == "net1d"):
            return {"channels": "set for net1d, null for alexnet"}
        return {}


@dataclass
class AnalysisConfig:
    """Activations of ``n_signals`` held-out inputs at up to ``positions`` evenly spaced
    positions each (null: all); Lasso alphas (must include the claim's 0.01); spectral
    clusters."""

    n_signals: int = param(ge=4)
    positions: int | None = param(ge=1)
    alphas: list[float] = param(gt=0, min_len=1)
    clusters: int = param(ge=2)


@dataclass
class ConvergentConfig:
    """The ``convergent`` section."""

    seeds: list[int] = param(min_len=2)
    data: DataConfig = param()
    train: TrainConfig = param()
    analysis: AnalysisConfig = param()

    def check(self) -> dict[str, str]:
        """The 1-D net for MNIST-1D, AlexNet for ImageNet."""
        wanted = "net1d" if self.data.mnist1d is not None else "alexnet"
        if self.train.arch != wanted:
            return {"train.arch": f"{wanted!r} for this data source"}
        return {}
