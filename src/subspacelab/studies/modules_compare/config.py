"""Typed params of modules_compare (issue 14's comparison table); values live in params.yaml.

The backbone and schedule repeat ulsam's mini section (a test keeps them equal), since the
baseline and ULSAM arms are ulsam's own trained models.
"""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param


@dataclass
class BackboneConfig:
    """ulsam's compact CNN (model.stem, widths, strides, bn_momentum) and ULSAM's g."""

    stem: int = param(ge=1)
    widths: list[int] = param(min_len=2)
    strides: list[int] = param(min_len=2)
    bn_momentum: float = param(gt=0.0, le=1.0)
    ulsam_groups: int = param(ge=1)


@dataclass
class ModulesConfig:
    """SE's reduction, CBAM's spatial kernel, the hydra gate's label embedding and MLP width."""

    se_reduction: int = param(ge=1)
    cbam_kernel: int = param(ge=1)
    gate_embed: int = param(ge=1)
    gate_hidden: int = param(ge=1)

    def check(self) -> dict[str, str]:
        """CBAM's kernel is odd (same-size maps)."""
        return {"cbam_kernel": "an odd size"} if self.cbam_kernel % 2 == 0 else {}


@dataclass
class TrainConfig:
    """ulsam's schedule: Adam, constant rate, per-member seeded mini-batches."""

    epochs: int = param(ge=1)
    lr: float = param(gt=0.0)
    batch: int = param(ge=1)


@dataclass
class LatencyConfig:
    """CPU latency: batch sizes, timed repeats (the median is kept), one thread."""

    batches: list[int] = param(ge=1, min_len=1)
    repeats: int = param(ge=1)


@dataclass
class ModulesCompareConfig:
    """One profile of modules_compare's section in params.yaml; ``seeds`` are ulsam's."""

    seeds: list[int] = param(min_len=1)
    backbone: BackboneConfig = param()
    modules: ModulesConfig = param()
    train: TrainConfig = param()
    latency: LatencyConfig = param()
