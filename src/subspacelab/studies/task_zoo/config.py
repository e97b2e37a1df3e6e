"""Typed schema of the ``task_zoo`` section of params.yaml (the merge-bench, dc_merge.md §6)."""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param
from subspacelab.merging.bench import TRANSFORMS
from subspacelab.studies.task_zoo.full import URLS, VISION_TASKS


@dataclass
class VisionData:
    """Full profile: the 8 vision tasks, downloaded into ``root`` (a cache outside DVC)."""

    root: str = param()
    tasks: list[str] = param(choices=VISION_TASKS, min_len=2)
    val_fraction: float = param(gt=0, lt=1)  # validation carved from train (task-vectors: 0.1)
    max_val: int = param(ge=1)  # ... at most this many images (task-vectors: 5000)
    checksums: dict[str, str] = param()  # file -> "md5:<hex>" / "sha256:<hex>"; "" refuses

    def unpinned(self) -> dict[str, str]:
        """Every file of the chosen tasks is fetched (or verified) against a pinned checksum."""
        missing = {}
        for task in self.tasks:
            for name in URLS[task]:
                algo, _, digest = self.checksums.get(name, "").partition(":")
                if algo not in ("md5", "sha256") or not digest:
                    missing[f"checksums.{name}"] = '"md5:<hex>" or "sha256:<hex>"'
        return missing


@dataclass
class ClipModel:
    """Full profile: the open_clip backbone and the LoRA of the LoRA regime."""

    arch: str = param()
    pretrained: str = param()
    image_size: int = param(ge=8)
    lora_rank: int = param(ge=1)
    lora_scale: float = param(gt=0)


@dataclass
class ClipTrain:
    """Full profile: fine-tuning through the frozen zero-shot head (AdamW, warm-up + cosine)."""

    regimes: list[str] = param(choices=("fft", "lora"), min_len=1)
    steps: int = param(ge=1)
    batch_size: int = param(ge=1)
    lr: float = param(gt=0)
    lora_lr: float = param(gt=0)
    weight_decay: float = param(ge=0)
    warmup_steps: int = param(ge=0)
    workers: int = param(ge=0)


@dataclass
class ZooData:
    """sklearn digits split per seed into train/val/test; one task per input transform."""

    n_train: int = param(ge=10)
    n_val: int = param(ge=10)
    n_test: int = param(ge=10)
    tasks: list[str] = param(choices=TRANSFORMS, min_len=2)
    perm_seed: int = param(ge=0)  # the fixed pixel permutation of the `permute` task
    vision: VisionData | None = param()  # full profile only (null in mini)

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
    clip: ClipModel | None = param()  # full profile only (null in mini)


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
    clip: ClipTrain | None = param()  # full profile only (null in mini)


@dataclass
class TaskZooConfig:
    """The whole ``task_zoo`` section of one profile."""

    seeds: list[int] = param(min_len=1)
    data: ZooData = param()
    model: ZooModel = param()
    train: ZooTrain = param()
