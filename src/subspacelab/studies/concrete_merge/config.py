"""Typed schema of the ``concrete_merge`` section of params.yaml (arXiv:2312.06173)."""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param


@dataclass
class TTAConfig:
    """Test-time adaptation on unlabelled validation batches (held-out test for the numbers)."""

    heads: list[str] = param(choices=("h1", "h2"), min_len=1)
    regime: str = param(choices=("fft", "lora"))
    lambda_grid: list[float] = param(gt=0, min_len=1)  # TA's λ, chosen on validation
    temperature: float = param(gt=0)
    lr: float = param(gt=0)
    inner_lr: float = param(gt=0)
    cta_steps: int = param(ge=1)
    meta_steps: int = param(ge=1)
    ada_steps: int = param(ge=1)
    batch_size: int = param(ge=1)
    collapse_fraction: float = param(ge=0, le=1)  # abort when label entropy < this · log C


@dataclass
class ConcreteMergeConfig:
    """The whole ``concrete_merge`` section of one profile."""

    seeds: list[int] = param(min_len=1)
    tta: TTAConfig = param()
