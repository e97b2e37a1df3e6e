"""Typed schema of the ``nc_perturbation`` section of params.yaml (Tirer et al.,
arXiv:2210.16658). mini: sklearn digits + MLP; full: CIFAR-10 + ResNet-18 — same schema."""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param


@dataclass
class DataConfig:
    """``source``: digits (mini, flattened) or cifar10 (full, (3, 32, 32) images)."""

    source: str = param(choices=("digits", "cifar10"))
    test_size: float = param(gt=0, lt=1)
    seed: int = param(ge=0)
    max_train: int = param(ge=10)  # training features used as H₀


@dataclass
class BackboneConfig:
    """Backbone trained with MSE + weight decay; H₀ = the output of block ``h0_block``
    (1-based). ``mlp``: ``blocks`` Linear-ReLU blocks of ``width``; ``resnet18`` (full, spec
    §7): CIFAR ResNet-18, whose four stages are the blocks (``width``/``blocks`` fixed: 64/4)."""

    arch: str = param(choices=("mlp", "resnet18"))
    width: int = param(ge=2)
    blocks: int = param(ge=2)
    h0_block: int = param(ge=1)
    epochs: int = param(ge=1)
    lr: float = param(gt=0)
    weight_decay: float = param(ge=0)
    batch_size: int = param(ge=1)

    def check(self) -> dict[str, str]:
        """H₀'s block must have a later block."""
        if self.arch == "resnet18" and (self.blocks, self.width) != (4, 64):
            return {"blocks": "4 with width 64 for resnet18 (its four stages)"}
        if self.h0_block >= self.blocks:
            return {"h0_block": f"< blocks ({self.blocks})"}
        return {}


@dataclass
class ModelConfig:
    """The perturbation model's grid, solver, flow and near-collapse test."""

    betas: list[float] = param(gt=0, min_len=2)
    lam_ws: list[float] = param(gt=0, min_len=1)
    ref_beta: float = param(gt=0)  # flow and R5
    ref_lam_w: float = param(gt=0)
    iters: int = param(ge=1)
    tol: float = param(gt=0)
    flow_steps: int = param(ge=1)
    flow_step_frac: float = param(gt=0, le=0.1)  # spec: step <= 0.1 N / (‖W*‖² + β)
    synth_k: int = param(ge=2)
    synth_d: int = param(ge=2)
    synth_per_class: int = param(ge=2)
    eps: list[float] = param(gt=0, min_len=2)
    delta: float = param(gt=0)


@dataclass
class NcPerturbationConfig:
    """The ``nc_perturbation`` section."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    backbone: BackboneConfig = param()
    model: ModelConfig = param()
