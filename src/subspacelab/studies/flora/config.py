"""Typed schema of the ``flora`` section of params.yaml (FLoRA, arXiv:2405.14739)."""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param
from subspacelab.studies.flora import core

TASKS = ("relabel", "invert", "rot90", "bandpass")
# the 19 VTAB-1k tasks of the full profile (NOAH's folder names)
VTAB_TASKS = (
    "cifar",
    "caltech101",
    "dtd",
    "oxford_flowers102",
    "oxford_iiit_pet",
    "svhn",
    "sun397",
    "patch_camelyon",
    "eurosat",
    "resisc45",
    "diabetic_retinopathy",
    "clevr_count",
    "clevr_dist",
    "dmlab",
    "kitti",
    "dsprites_loc",
    "dsprites_ori",
    "smallnorb_azi",
    "smallnorb_ele",
)


@dataclass
class FloraVtab:
    """Full profile: the VTAB-1k archive (NOAH layout), pinned by SHA-256 ("" refuses)."""

    root: str = param()
    url: str = param()
    filename: str = param()
    sha256: str = param()
    tasks: list[str] = param(choices=VTAB_TASKS, min_len=1)
    image_size: int = param(ge=8)

    def unpinned(self) -> dict[str, str]:
        """The archive is downloaded only against its SHA-256."""
        return {} if self.sha256 else {"sha256": f"the SHA-256 of {self.filename}"}


@dataclass
class FloraSchedule:
    """Full profile: AdamW's weight decay, warm-up epochs before the cosine, loader workers."""

    weight_decay: float = param(ge=0)
    warmup_epochs: int = param(ge=0)
    workers: int = param(ge=0)


@dataclass
class FloraData:
    """sklearn digits upsampled; pretraining on ``pretrain_classes``; 10-way downstream tasks."""

    size: int = param(ge=8)
    pretrain_classes: list[int] = param(ge=0, le=9, min_len=2)
    tasks: list[str] = param(choices=TASKS, min_len=1)
    n_train: int = param(ge=10)
    n_test: int = param(ge=10)
    max_shift: int = param(ge=0)
    vtab: FloraVtab | None = param()  # full profile only (null in mini)


@dataclass
class FloraModel:
    """CNN of 3×3 convs (stride per layer), GAP, linear head; the adapters' scale s and input
    dropout (the same for LoRA and FLoRA)."""

    channels: list[int] = param(ge=1, min_len=1)
    strides: list[int] = param(ge=1, min_len=1)
    scale: float = param(gt=0)
    dropout: float = param(ge=0, lt=1)
    spatial_rank: int = param(ge=1)  # r = [r_c, r_c, spatial, spatial]
    budgets: list[float] = param(gt=0, lt=1, min_len=1)  # fractions of the conv parameters
    convnext: str | None = param()  # full profile: the timm model name (null in mini)

    def check(self) -> dict[str, str]:
        """One stride per conv; in the miniature (no ``convnext``), budgets that LoRA and FLoRA
        can match within 10 % on these channels, each a different adapter."""
        if len(self.strides) != len(self.channels):
            return {"strides": "one stride per channel entry"}
        if self.convnext is None:
            net = core.SmallCNN(self.channels, self.strides, 10)
            try:
                core.budget_matches(net, self.budgets, self.spatial_rank)
            except ValueError as err:
                return {"budgets": f"fractions LoRA and FLoRA can match on these channels ({err})"}
        return {}


@dataclass
class FloraTrain:
    """Pretraining and adaptation."""

    pretrain_epochs: int = param(ge=1)
    epochs: int = param(ge=1)
    lr: float = param(gt=0)
    peft_lr: float = param(gt=0)
    batch_size: int = param(ge=1)
    schedule: FloraSchedule | None = param()  # full profile only (null in mini)


@dataclass
class FloraConfig:
    """The whole ``flora`` section of one profile."""

    seeds: list[int] = param(min_len=1)
    data: FloraData = param()
    model: FloraModel = param()
    train: FloraTrain = param()
