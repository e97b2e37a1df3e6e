"""Typed params of dsl (arXiv 2206.09068); values live in params.yaml only."""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param

# The full profile's datasets (spec §7) and the archive each is read from.
FULL_SOURCES = {
    "isic2019": "ISIC_2019_Training_Input.zip",
    "mura": "MURA-v1.1.zip",
    "hyperkvasir": "hyper-kvasir-labeled-images.zip",
}


@dataclass
class DataConfig:
    """Mini: procedural lesions (``subspacelab.modules.lesions``), 48×48 RGB, class = shape ×
    hue, split into train / validation (the split rule's held-out NMI) / test, drawn from the
    seed. Full (``source``, studies/dsl/full.py): ISIC-2019's training images archive and
    ground-truth CSV (8 classes), MURA v1.1's archive (14 classes; registration-gated: a
    ``file://`` URL of your copy) or HyperKvasir's labelled-images archive (23 classes), fetched
    against their SHA-256 (``images_*`` the archive, ``labels_*`` ISIC's CSV only), resized to
    ``size`` and split into ``n_train``/``n_val``/``n_test`` images."""

    source: str = param(choices=("lesions", *FULL_SOURCES))
    n_train: int = param(ge=10)
    n_val: int = param(ge=10)
    n_test: int = param(ge=10)
    size: int = param(ge=16)
    shapes: list[str] = param(choices=("ellipse", "rectangle", "star", "irregular"), min_len=1)
    hues: list[str] = param(choices=("brown", "red"), min_len=1)
    radius: list[float] = param(ge=0.05, le=0.4, min_len=2)
    max_hairs: int = param(ge=0)
    vignette: float = param(ge=0.0, lt=1.0)
    images_url: str = param()
    images_sha256: str = param()
    labels_url: str = param()
    labels_sha256: str = param()

    def check(self) -> dict[str, str]:
        """At least two classes; the radius is a range."""
        bad: dict[str, str] = {}
        if len(self.shapes) * len(self.hues) < 2:
            bad["shapes"] = "shapes × hues must give at least two classes"
        if len(self.radius) != 2 or self.radius[0] > self.radius[1]:
            bad["radius"] = "a range [low, high]"
        if self.source == "isic2019" and not (self.images_url and self.labels_url):
            bad["images_url"] = "ISIC-2019 needs the images archive and ground-truth CSV URLs"
        elif self.source in FULL_SOURCES and not self.images_url:
            bad["images_url"] = f"{FULL_SOURCES[self.source]}'s URL (file:// for a copy)"
        elif self.source in ("mura", "hyperkvasir") and (self.labels_url or self.labels_sha256):
            bad["labels_url"] = f"empty: {self.source}'s labels are inside its archive"
        return bad

    def unpinned(self) -> dict[str, str]:
        """None of the datasets publishes checksums: the archives are fetched only against
        pins."""
        if self.source not in FULL_SOURCES:
            return {}
        missing = {}
        if not self.images_sha256:
            missing["images_sha256"] = f"the SHA-256 of {FULL_SOURCES[self.source]}"
        if self.source == "isic2019" and not self.labels_sha256:
            missing["labels_sha256"] = "the SHA-256 of ISIC_2019_Training_GroundTruth.csv"
        return missing


@dataclass
class ModelConfig:
    """Backbone (``cnn``: conv3×3-BN-ReLU layers of ``widths`` and ``strides``; ``resnet50``:
    torchvision's ImageNet ResNet-50 trunk), the attention head's hidden widths, the embedding
    dimension, dropout before it and the margin loss's initial β."""

    backbone: str = param(choices=("cnn", "resnet50"))
    widths: list[int] = param(ge=1, min_len=1)
    strides: list[int] = param(ge=1, le=2, min_len=1)
    head: list[int] = param(ge=1, min_len=1)
    dim: int = param(ge=2)
    dropout: float = param(ge=0.0, lt=1.0)
    beta: float = param(gt=0.0)

    def check(self) -> dict[str, str]:
        """One stride per width."""
        if len(self.strides) != len(self.widths):
            return {"strides": f"one stride per width ({len(self.widths)})"}
        return {}


@dataclass
class TrainConfig:
    """Adam (learning rate, weight decay), batch size, epochs, the margin α; the same for every
    arm (DSL, DivConq, the cross-entropy classifier)."""

    epochs: int = param(ge=1)
    lr: float = param(gt=0.0)
    weight_decay: float = param(ge=0.0)
    batch: int = param(ge=2)
    margin: float = param(gt=0.0)


@dataclass
class LearnersConfig:
    """Re-clustering period (epochs), the share of epochs fine-tuned jointly at the end (K = 1),
    the split rule (patience in epochs, importance threshold, minimum last-learner size and
    important neurons, batches the Taylor scores average over) and DivConq's fixed Ks."""

    recluster: int = param(ge=1)
    finetune_fraction: float = param(ge=0.0, lt=1.0)
    patience: int = param(ge=1)
    threshold: float = param(gt=0.0, lt=1.0)
    min_size: int = param(ge=1)
    min_important: int = param(ge=1)
    taylor_batches: int = param(ge=1)
    divconq_k: list[int] = param(ge=1, min_len=1)


@dataclass
class EvalConfig:
    """Recall@k's ks and the proxy-mask threshold on min-max scaled maps (attention, Grad-CAM)."""

    recall_k: list[int] = param(ge=1, min_len=1)
    mask_threshold: float = param(gt=0.0, lt=1.0)


@dataclass
class DslConfig:
    """One profile of dsl's section in params.yaml."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    model: ModelConfig = param()
    train: TrainConfig = param()
    learners: LearnersConfig = param()
    eval: EvalConfig = param()

    def check(self) -> dict[str, str]:
        """DivConq's Ks fit the embedding; recall@1 is reported (the claims use it)."""
        bad: dict[str, str] = {}
        if max(self.learners.divconq_k) > self.model.dim:
            bad["learners.divconq_k"] = f"at most the embedding dimension {self.model.dim}"
        if 1 not in self.eval.recall_k:
            bad["eval.recall_k"] = "must include 1 (recall@1 is claimed)"
        return bad
