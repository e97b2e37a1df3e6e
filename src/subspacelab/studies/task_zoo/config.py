"""Typed schema of the ``task_zoo`` section of params.yaml (the merge-bench, dc_merge.md §6)."""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.config import param
from subspacelab.merging.bench import TRANSFORMS


@dataclass
class ZooData:
    """sklearn digits split per seed into train/val/test; one task per input transform."""

    n_train: int = param(ge=10)
    n_val: int = param(ge=10)
    n_test: int = param(ge=10)
    tasks: list[str] = param(choices=TRANSFORMS, min_len=2)
    perm_seed: int = param(ge=0)  # the fixed pixel permutation of the `permute` task

    def check(self) -> dict[str, str]:
        """The three splits must fit in the 1797 digits; tasks must be distinct."""
        bad = {}
        if self.n_train + self.n_val + self.n_test > 1797:
            bad["n_train"] = "n_train + n_val + n_test <= 1797 (sklearn digits)"
        if len(set(self.tasks)) != len(self.tasks):
            bad["tasks"] = "distinct task names"
        return bad


@dataclass
class ZooModel:
    """MLP backbone and the LoRA used for the LoRA task models."""

    hidden: list[int] = param(ge=1, min_len=1)
    lora_rank: int = param(ge=1)
    lora_scale: float = param(gt=0)


@dataclass
class ZooTrain:
    """Pretraining, probes (H1) and fine-tuning."""

    pretrain_epochs: int = param(ge=1)
    probe_epochs: int = param(ge=1)
    finetune_epochs: int = param(ge=1)
    lr: float = param(gt=0)
    lora_lr: float = param(gt=0)
    probe_lr: float = param(gt=0)
    batch_size: int = param(ge=1)
    heads: list[str] = param(choices=("h1", "h2"), min_len=1)
    regimes: list[str] = param(choices=("fft", "lora"), min_len=1)


@dataclass
class TaskZooConfig:
    """The whole ``task_zoo`` section of one profile."""

    seeds: list[int] = param(min_len=1)
    data: ZooData = param()
    model: ZooModel = param()
    train: ZooTrain = param()
