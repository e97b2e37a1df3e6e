"""Typed schema of the ``mlc`` section of params.yaml (values live only there).

MLC: Ding et al., ICCV 2023, arXiv:2301.01805.
"""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param


@dataclass
class DataConfig:
    """Mini: union of manifolds and load_digits; full: CIFAR-10/100 (md5-pinned archives)."""

    datasets: list[str] = param(choices=("manifolds", "digits", "cifar10", "cifar100"), min_len=1)
    data_seed: int = param(ge=0)
    n_per: int = param(ge=2)
    n_clusters: int = param(ge=2)
    manifold_dim: int = param(ge=1)
    ambient: int = param(ge=2)
    mlp_hidden: int = param(ge=1)
    latent_dim: int = param(ge=1)  # the manifolds share a latent space of this dimension
    offset: float = param(ge=0)  # std of each manifold's centre in that space
    noise: float = param(ge=0)
    cifar_dir: str = param()
    max_samples: int = param(ge=10)  # evaluated samples (Γ is n×n)


@dataclass
class ModelConfig:
    """Trunk and heads."""

    backbone: str = param(choices=("mlp", "resnet18"))
    hidden: list[int] = param(ge=1)
    z_dim: int = param(ge=2)


@dataclass
class TrainConfig:
    """TCR warm-up and MLC optimisation (spec §4 values); ``batch`` ≥ n is full batch."""

    warmup_steps: int = param(ge=0)
    steps: int = param(ge=0)
    batch: int = param(ge=2)
    eps2: float = param(gt=0)
    eta: float = param(gt=0)
    sinkhorn_iters: int = param(ge=1)  # differentiated updates after convergence
    sinkhorn_tol: float = param(gt=0, lt=1)  # column sums of Γ within 1 ± tol
    sinkhorn_max_iters: int = param(ge=1)
    gamma: float = param(ge=0)
    inv_weight: float = param(ge=0)
    lr: float = param(gt=0)
    lr_cluster: float = param(gt=0)
    momentum: float = param(ge=0, lt=1)
    wd: float = param(ge=0)
    wd_cluster: float = param(ge=0)
    shift: int = param(ge=0)
    noise: float = param(ge=0)


@dataclass
class EvalConfig:
    """Numerical-rank threshold (relative to the top singular value)."""

    rank_rel: float = param(gt=0, lt=1)


@dataclass
class MLCConfig:
    """The mlc study."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    model: ModelConfig = param()
    train: TrainConfig = param()
    eval: EvalConfig = param()
