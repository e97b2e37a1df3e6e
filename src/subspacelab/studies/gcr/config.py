# param() returns a dataclasses.field (no call at class creation needs guarding).
"""Typed schema of the ``gcr`` section of params.yaml (GCR, Wang, Li & Zhang, arXiv:2308.01547).

Both profiles share it. The ``mini`` profile sets ``data.mnist1d`` (and ``data.digits`` for the
second check) and leaves ``data.imagenet`` null; the ``full`` profile does the opposite and names
its transfer sets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from subspacelab.api import param
from subspacelab.data.imagenet import ImageNetData

HEAD_PATTERN = re.compile(r"^(softmax|cosine|gcr([1-9][0-9]*))$")
TRANSFER_SETS = ("cifar10", "cifar100")


@dataclass
class Mnist1dData:
    """MNIST-1D generated locally (Greydanus & Kobak, arXiv 2011.14439)."""

    num_samples: int = param(ge=100)
    seed: int = param(ge=0)  # the data set's seed: the same data for every training seed
    train_split: float = param(gt=0, lt=1)


@dataclass
class DigitsData:
    """sklearn's bundled 8x8 digits, read as length-64 signals: the second check."""

    test_size: float = param(gt=0, lt=1)
    seed: int = param(ge=0)
    epochs: int = param(ge=1)  # digits has ~900 source images: its own epoch count


@dataclass
class DataConfig:
    """Source and target tasks.

    mini: ``mnist1d`` (main) and ``digits`` (second check) are split by class: pretraining on
    ``source_classes``, transfer to ``target_classes``. full: pretraining on ``imagenet`` (all
    classes), transfer to the whole of each of ``transfer_sets``.
    """

    mnist1d: Mnist1dData | None = param()
    digits: DigitsData | None = param()
    imagenet: ImageNetData | None = param()
    source_classes: list[int] = param(ge=0)
    target_classes: list[int] = param(ge=0)
    transfer_sets: list[str] = param(choices=TRANSFER_SETS)

    def check(self) -> dict[str, str]:
        """Exactly one main task; class splits for the class-split tasks, sets for ImageNet."""
        if (self.mnist1d is None) == (self.imagenet is None):
            return {"imagenet": "null when mnist1d is set (mini), set when mnist1d is null (full)"}
        if self.imagenet is not None:
            bad = {}
            if self.digits is not None:
                bad["digits"] = "null in the ImageNet (full) profile"
            if not self.transfer_sets:
                bad["transfer_sets"] = f"at least one of {', '.join(TRANSFER_SETS)}"
            return bad
        if self.transfer_sets:
            return {"transfer_sets": "[] with mnist1d: the target is its own target_classes"}
        if len(self.source_classes) < 2 or len(self.target_classes) < 2:
            return {"source_classes": "at least 2 source and 2 target classes"}
        if set(self.source_classes) & set(self.target_classes):
            return {"target_classes": "classes disjoint from source_classes"}
        if max(self.source_classes + self.target_classes) > 9:
            return {"target_classes": "digit classes 0-9"}
        return {}


@dataclass
class CnnConfig:
    """The miniature's trunk: conv-BN-ReLU blocks on 1-D signals, global average pooling."""

    channels: list[int] = param(ge=1, min_len=1)  # conv widths; the feature dim d is the last
    kernel_size: int = param(ge=1)
    stride: int = param(ge=1)  # stride of every conv after the first


@dataclass
class ModelConfig:
    """Trunk and heads. Heads: ``softmax``, ``cosine`` or ``gcr<k>`` (k-dim class subspaces)."""

    backbone: str = param(choices=("cnn", "resnet50d"))  # resnet50d: timm, full profile
    cnn: CnnConfig | None = param()  # set for backbone cnn, null otherwise
    heads: list[str] = param(min_len=1)
    gamma: float = param(gt=0)  # logit scale of the cosine and GCR heads

    def check(self) -> dict[str, str]:
        """Known, distinct head names; the cnn section exactly when the backbone is cnn."""
        known = all(HEAD_PATTERN.match(h) for h in self.heads)
        if not known or len(set(self.heads)) != len(self.heads):
            return {"heads": "distinct names among softmax, cosine, gcr<k> (k >= 1)"}
        if (self.cnn is None) == (self.backbone == "cnn"):
            return {"cnn": "a section when backbone is cnn, null otherwise"}
        return {}


@dataclass
class TrainConfig:
    """SGD for trunk and vector heads, Riemannian SGD for class subspaces, cosine schedule."""

    epochs: int = param(ge=1)
    batch_size: int = param(ge=1)
    lr: float = param(gt=0)
    momentum: float = param(ge=0, lt=1)
    weight_decay: float = param(ge=0)  # never applied to the class subspaces
    lr_factor: float = param(gt=0)  # subspace step = scheduled lr * lr_factor
    reorth_every: int = param(ge=1)  # QR re-orthonormalisation every this many steps
    num_workers: int = param(ge=0)


@dataclass
class EvalConfig:
    """Feature extraction for evaluation and transfer."""

    batch_size: int = param(ge=1)
    num_workers: int = param(ge=0)


@dataclass
class ProbeConfig:
    """Linear probe: L2-regularised logistic regression, C chosen on a validation split."""

    shots: int | None = param(ge=2)  # labelled per target class; null: the set's train split
    draws: int = param(ge=1)  # labelled sets drawn per model (seed); 1 without shots
    val_fraction: float = param(gt=0, lt=1)
    c_grid: list[float] = param(gt=0, min_len=1)
    max_iter: int = param(ge=1)

    def check(self) -> dict[str, str]:
        """Several draws only with shots (without, every draw is the set's own split)."""
        if self.shots is None and self.draws != 1:
            return {"draws": "1 when shots is null (the set's own train/test split)"}
        return {}


@dataclass
class GcrConfig:
    """The ``gcr`` study's configuration (one profile)."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    model: ModelConfig = param()
    train: TrainConfig = param()
    eval: EvalConfig = param()
    probe: ProbeConfig = param()
