"""Typed schema of the ``oca`` section of params.yaml (OCA, arXiv:2408.08793)."""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param


@dataclass
class OcaCifar:
    """Full profile: CIFAR-100 (downloaded into ``root``); old model on classes 0..n_old-1."""

    root: str = param()
    n_old: int = param(ge=2, le=99)


@dataclass
class OcaResNet:
    """Full profile: the torchvision ResNet (CIFAR stem) under the embedding."""

    arch: str = param(choices=("resnet18", "resnet34", "resnet50"))


@dataclass
class OcaSchedule:
    """Full profile: Adam's weight decay and the warm-up epochs before the cosine decay."""

    weight_decay: float = param(ge=0)
    warmup_epochs: int = param(ge=0)


@dataclass
class OcaData:
    """MNIST-1D generated locally; old model on ``old_classes``, new models on all classes."""

    num_samples: int = param(ge=100)
    seed: int = param(ge=0)
    train_split: float = param(gt=0, lt=1)
    old_classes: list[int] = param(ge=0, le=9, min_len=2)
    cifar100: OcaCifar | None = param()  # full profile only (null in mini)


@dataclass
class OcaModel:
    """1-D CNN (kernel 5, stride 2) and embedding sizes."""

    channels: list[int] = param(ge=1, min_len=1)
    d_old: int = param(ge=2)
    extra_dims: int = param(ge=1)
    ortho_bias: bool = param()
    resnet: OcaResNet | None = param()  # full profile only (null in mini)


@dataclass
class OcaTrain:
    """Adam for the old model and every new arm."""

    epochs: int = param(ge=1)
    lr: float = param(gt=0)
    batch_size: int = param(ge=1)
    schedule: OcaSchedule | None = param()  # full profile only (null in mini)


@dataclass
class OcaConfig:
    """The whole ``oca`` section of one profile."""

    seeds: list[int] = param(min_len=1)
    data: OcaData = param()
    model: OcaModel = param()
    train: OcaTrain = param()
