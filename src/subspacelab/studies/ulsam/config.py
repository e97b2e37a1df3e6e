"""Typed params of ulsam (arXiv 2006.15102); values live in params.yaml only."""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param


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


@dataclass
class ModelConfig:
    """The compact MobileNet-V1-style CNN: stem width, separable blocks' widths and strides,
    ULSAM's subspace counts (inserted after the last block / replacing it) and BN momentum."""

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
        for name in ("insert_groups", "replace_groups"):
            if any(g < 1 or self.widths[-1] % g for g in getattr(self, name)):
                bad[name] = f"divisors of the last width {self.widths[-1]}"
        return bad


@dataclass
class TrainConfig:
    """Adam, constant learning rate, per-member seeded mini-batches."""

    epochs: int = param(ge=1)
    lr: float = param(gt=0.0)
    batch: int = param(ge=1)


@dataclass
class UlsamConfig:
    """One profile of ulsam's section in params.yaml."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    model: ModelConfig = param()
    train: TrainConfig = param()
