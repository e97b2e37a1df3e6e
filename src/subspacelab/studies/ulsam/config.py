"""Typed params of ulsam (arXiv 2006.15102); values live in params.yaml only."""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param
from subspacelab.data.finegrained import FineGrainedData
from subspacelab.data.imagenet import ImageNetData


@dataclass
class DataConfig:
    """Cluttered digits (spec §6): canvas side, glyph upsampling, clutter fragments, noise, and
    the share of sklearn's source digits kept for test canvases (source-disjoint splits)."""

    n_train: int = param(ge=10)
    n_test: int = param(ge=10)
    canvas: int = param(ge=8)
    scale: int = param(ge=1)
    n_clutter: int = param(ge=0)
    fragment: int = param(ge=1)
    noise: float = param(ge=0.0)
    test_fraction: float = param(gt=0.0, lt=1.0)
    imagenet: ImageNetData | None = param()  # full: the user's ILSVRC2012 archives
    finegrained: FineGrainedData | None = param()  # full: the transfer sets (spec §7)


@dataclass
class ModelConfig:
    """The compact MobileNet-V1-style CNN (``arch: compact``: stem width, separable blocks'
    widths and strides) or MobileNet-V2 (``arch: mobilenet_v2``, full profile: ULSAM at the
    inverted-residual blocks ``sites``), ULSAM's subspace counts (inserted / replacing) and the
    compact CNN's BN momentum."""

    arch: str = param(choices=("compact", "mobilenet_v2"))
    sites: list[int] = param()  # mobilenet_v2: width-keeping blocks (1-17) ULSAM goes to
    stem: int = param(ge=1)
    widths: list[int] = param(min_len=2)
    strides: list[int] = param(min_len=2)
    insert_groups: list[int] = param(min_len=1)
    replace_groups: list[int] = param(min_len=1)
    bn_momentum: float = param(gt=0.0, le=1.0)

    def check(self) -> dict[str, str]:
        """Strides match widths; the last two blocks are equal-width (the replaced block keeps
        its channels); every g divides that width."""
        bad: dict[str, str] = {}
        if len(self.strides) != len(self.widths):
            bad["strides"] = f"one stride per width ({len(self.widths)})"
        if any(s not in (1, 2) for s in self.strides):
            bad["strides"] = "1 or 2"
        if self.widths[-1] != self.widths[-2] or self.strides[-1] != 1:
            bad["widths"] = "the last block must map its width to itself at stride 1"
        if self.arch == "compact":
            widths = [self.widths[-1]]
        else:
            from subspacelab.studies.ulsam.full import residual_sites

            allowed = residual_sites()
            if not self.sites or any(s not in allowed for s in self.sites):
                bad["sites"] = f"a non-empty list of width-keeping blocks among {list(allowed)}"
                return bad
            widths = [allowed[s] for s in self.sites]
        for name in ("insert_groups", "replace_groups"):
            if any(g < 1 or w % g for g in getattr(self, name) for w in widths):
                bad[name] = f"divisors of the widths ULSAM sees ({sorted(set(widths))})"
        return bad


@dataclass
class TrainConfig:
    """The optimiser and schedule (mini: Adam, constant rate, per-member seeded mini-batches;
    full: SGD with momentum, cosine, one shared ImageNet loader), then the fine-grained
    fine-tuning (full only: ``finetune_epochs`` 0 skips it)."""

    epochs: int = param(ge=1)
    lr: float = param(gt=0.0)
    batch: int = param(ge=1)
    optimizer: str = param(choices=("adam", "sgd"))
    momentum: float = param(ge=0.0, lt=1.0)
    weight_decay: float = param(ge=0.0)
    schedule: str = param(choices=("constant", "cosine"))
    workers: int = param(ge=0)
    finetune_epochs: int = param(ge=0)
    finetune_lr: float = param(gt=0.0)


@dataclass
class UlsamConfig:
    """One profile of ulsam's section in params.yaml."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    model: ModelConfig = param()
    train: TrainConfig = param()

    def check(self) -> dict[str, str]:
        """MobileNet-V2 trains on ImageNet (full profile); the compact CNN on cluttered digits;
        fine-tuning needs the fine-grained sets."""
        bad: dict[str, str] = {}
        if (self.model.arch == "mobilenet_v2") != (self.data.imagenet is not None):
            bad["model"] = "arch mobilenet_v2 exactly when data.imagenet is given (full profile)"
        if (self.train.finetune_epochs > 0) != (self.data.finegrained is not None):
            bad["train"] = "finetune_epochs > 0 exactly when data.finegrained is given"
        return bad
