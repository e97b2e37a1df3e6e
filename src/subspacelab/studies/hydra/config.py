"""Typed params of hydra (Hydra/SimLAP, arXiv 2410.18200); values live in params.yaml only."""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param

SOURCES = ("mnist1d", "cifar10")
BACKBONES = ("cnn1d", "resnet18")


@dataclass
class DataConfig:
    """The data: ``mnist1d`` generated locally (mini: ``num_samples`` signals, the generator's
    ``generator_seed``, ``train_split``) or ``cifar10`` (full: the MD5-pinned python archive);
    the augmentation of every training batch (spec §6): a random shift of up to ``shift``
    positions along the last axis (zero fill), amplitude scaling in [scale_min, scale_max] and
    Gaussian noise of std ``noise``."""

    source: str = param(choices=SOURCES)
    num_samples: int = param(ge=20)
    generator_seed: int = param(ge=0)
    train_split: float = param(gt=0.0, lt=1.0)
    shift: int = param(ge=0)
    scale_min: float = param(gt=0.0)
    scale_max: float = param(gt=0.0)
    noise: float = param(ge=0.0)

    def check(self) -> dict[str, str]:
        """A scaling range, low to high."""
        if self.scale_min > self.scale_max:
            return {"scale_max": f">= scale_min ({self.scale_min})"}
        return {}


@dataclass
class ModelConfig:
    """Backbone f → r (``rep_dim``), projector h (Linear-BN-ReLU-Linear-LayerNorm, hidden
    ``proj_hidden``) → z (``out_dim``), the class-pair gate (label embedding ``embed_dim``, MLP
    hidden ``gate_hidden``, ``fuse``d pair embedding) and the temperature τ. ``channels`` and
    ``kernel``: the 1-D CNN's three conv layers (the ``resnet18`` backbone ignores them)."""

    backbone: str = param(choices=BACKBONES)
    channels: list[int] = param(min_len=3)
    kernel: int = param(ge=1)
    rep_dim: int = param(ge=1)
    proj_hidden: int = param(ge=1)
    out_dim: int = param(ge=1)
    embed_dim: int = param(ge=1)
    gate_hidden: int = param(ge=1)
    fuse: bool = param()
    temperature: float = param(gt=0.0)

    def check(self) -> dict[str, str]:
        """An odd kernel (same-length padding) and positive widths."""
        bad: dict[str, str] = {}
        if self.kernel % 2 == 0:
            bad["kernel"] = "odd"
        if len(self.channels) != 3 or any(c < 1 for c in self.channels):
            bad["channels"] = "three positive widths"
        return bad


@dataclass
class TrainConfig:
    """Adam (L2 weight decay), constant learning rate, per-member seeded batches; the detached
    linear head's cross-entropy uses ``label_smoothing``."""

    epochs: int = param(ge=1)
    lr: float = param(gt=0.0)
    weight_decay: float = param(ge=0.0)
    batch: int = param(ge=2)
    label_smoothing: float = param(ge=0.0, lt=1.0)


@dataclass
class EvalConfig:
    """The linear probe on frozen r: multinomial logistic regression on standardised features,
    inverse regularisation ``probe_c``, at most ``probe_iter`` L-BFGS iterations."""

    probe_c: float = param(gt=0.0)
    probe_iter: int = param(ge=1)


@dataclass
class HydraConfig:
    """One profile of hydra's section in params.yaml."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    model: ModelConfig = param()
    train: TrainConfig = param()
    eval: EvalConfig = param()

    def check(self) -> dict[str, str]:
        """The 1-D CNN goes with MNIST-1D, ResNet-18 with CIFAR-10."""
        wanted = "cnn1d" if self.data.source == "mnist1d" else "resnet18"
        if self.model.backbone != wanted:
            return {"model.backbone": f"{wanted} for data.source {self.data.source}"}
        return {}
