"""Typed schema of the ``nc_deep_linear`` section of params.yaml (Dang et al.,
arXiv:2301.00437).

mini: the direct deep-linear UFM and an MLP on class-imbalanced MNIST-1D; full: the same MLP
check on class-imbalanced CIFAR-10 (flattened images).
"""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param


@dataclass
class UFMConfig:
    """Direct optimisation of (H, W_1..W_M), bias-free MSE, imbalanced classes."""

    counts: list[int] = param(ge=1, min_len=2)
    dim: int = param(ge=2)
    lam: float = param(gt=0)  # λ_W = λ_H
    collapse_lam: float = param(gt=0)  # R2: raised λ_W = λ_H (M = 1)
    depths: list[int] = param(ge=1, min_len=1)
    iters: int = param(ge=1)
    lr: float = param(gt=0)
    momentum: float = param(ge=0, lt=1)
    init_std: float = param(gt=0)


@dataclass
class Mnist1dData:
    """MNIST-1D generated locally."""

    num_samples: int = param(ge=100)
    seed: int = param(ge=0)


@dataclass
class DataConfig:
    """mini: ``mnist1d``; full: ``cifar10`` (true); class sizes of the imbalanced subset."""

    mnist1d: Mnist1dData | None = param()
    cifar10: bool = param()
    class_counts: list[int] = param(ge=1, min_len=2)
    seed: int = param(ge=0)  # the subsample's seed

    def check(self) -> dict[str, str]:
        """Exactly one source."""
        if (self.mnist1d is None) == (not self.cifar10):
            return {"cifar10": "true exactly when data.mnist1d is null"}
        return {}


@dataclass
class NetConfig:
    """Bias-free ReLU MLP + M linear layers on Dang et al.'s objective (MSE, weight decay λ_W
    on the linear head and feature decay λ_H on its input, in the UFM's scaling): Adam on
    mini-batches, then full-batch L-BFGS to a stationary point."""

    hidden: int = param(ge=1)
    layers: int = param(ge=1)
    depths: list[int] = param(ge=1, min_len=1)
    lr: float = param(gt=0)
    weight_decay: float = param(ge=0)  # λ_W
    feature_decay: float = param(ge=0)  # λ_H
    epochs: int = param(ge=1)  # Adam epochs
    batch_size: int = param(ge=1)
    lbfgs_iters: int = param(ge=1)  # full-batch L-BFGS iterations after Adam
    lbfgs_tol: float = param(gt=0)  # stop once every gradient entry is below


@dataclass
class NcDeepLinearConfig:
    """The ``nc_deep_linear`` section."""

    seeds: list[int] = param(min_len=1)
    ufm: UFMConfig = param()
    data: DataConfig = param()
    net: NetConfig = param()
