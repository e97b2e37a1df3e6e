"""Typed schema of the ``oca`` section of params.yaml (OCA, arXiv:2408.08793)."""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.config import param


@dataclass
class OcaData:
    """MNIST-1D generated locally; old model on ``old_classes``, new models on all classes."""

    num_samples: int = param(ge=100)
    seed: int = param(ge=0)
    train_split: float = param(gt=0, lt=1)
    old_classes: list[int] = param(ge=0, le=9, min_len=2)


@dataclass
class OcaModel:
    """1-D CNN (kernel 5, stride 2) and embedding sizes."""

    channels: list[int] = param(ge=1, min_len=1)
    d_old: int = param(ge=2)
    extra_dims: int = param(ge=1)
    ortho_bias: bool = param()


@dataclass
class OcaTrain:
    """Adam for the old model and every new arm."""

    epochs: int = param(ge=1)
    lr: float = param(gt=0)
    batch_size: int = param(ge=1)


@dataclass
class OcaConfig:
    """The whole ``oca`` section of one profile."""

    seeds: list[int] = param(min_len=1)
    data: OcaData = param()
    model: OcaModel = param()
    train: OcaTrain = param()
