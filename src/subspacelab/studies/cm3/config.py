"""Typed schema of the ``cm3`` section of params.yaml (values live only there).

cm3: Zhou, Wang, Shen 2025, arXiv:2508.01226.
"""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param


@dataclass
class DataConfig:
    """The synthetic multimodal catalogue (§6); item texts encoded with MiniLM."""

    n_items: int = param(ge=50)
    n_users: int = param(ge=10)
    n_per_user: int = param(ge=10)
    latent_dim: int = param(ge=2)
    image_dim: int = param(ge=2)
    image_noise: float = param(ge=0)
    sharpness: float = param(gt=0)
    data_seed: int = param(ge=0)
    text_batch: int = param(ge=1)


@dataclass
class ModelConfig:
    """Backbone and CM³ settings (the official configs' grids)."""

    dim: int = param(ge=1)
    layers: int = param(ge=1)
    knn_k: int = param(ge=1)
    image_weight: float = param(ge=0, le=1)
    beta_alpha: float = param(gt=0)
    gamma: float = param(gt=0)
    min_sim: float = param(ge=-1, le=1)
    max_sim: float = param(ge=-1, le=1)
    similar_threshold: float = param(gt=-1, lt=1)


@dataclass
class TrainConfig:
    """Adam, fixed epochs (§6)."""

    epochs: int = param(ge=1)
    batch: int = param(ge=1)
    lr: float = param(gt=0)
    weight_decay: float = param(ge=0)


@dataclass
class CM3Config:
    """The cm3 study."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    model: ModelConfig = param()
    train: TrainConfig = param()
