"""Typed schema of the ``subspacead`` section of params.yaml (values live only there).

SubspaceAD: Lendering, Akdag & Bondarev, CVPR 2026, arXiv:2602.23013.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from subspacelab.api import param
from subspacelab.studies.subspacead.core import AUG_MODES
from subspacelab.studies.subspacead.textures import DEFECT_TYPES, TEXTURE_CATEGORIES

DATASETS = ("textures", "mvtec_ad", "visa")
ABLATION_EVS = (0.9, 0.99, 0.9999)  # the values claim (c) compares
CNN_BACKBONES = ("random_cnn", "loco_cnn")  # the miniature's 4-stage CNN: random or pretrained
BACKBONES = (*CNN_BACKBONES, "dinov2")


@dataclass
class DataConfig:
    """Datasets: the procedural texture-AD miniature, or MVTec-AD and VisA (1cls)."""

    datasets: list[str] = param(choices=DATASETS, min_len=1)
    # Categories to use; an empty list means every category the dataset has.
    categories: list[str] = param()
    k_shot: int = param(ge=1)
    # texture generator (dataset "textures"): image side, test sizes, defects per category
    image_size: int = param(ge=16)
    n_test_good: int = param(ge=1)
    n_test_defect: int = param(ge=1)
    defects: dict[str, list[str]] = param()
    # full profile: where archives live (relative to the repository root) and their pins
    archive_dir: str = param()
    mvtec_archive: str = param()
    mvtec_sha256: str = param()
    visa_url: str = param()
    visa_sha256: str = param()

    def check(self) -> dict[str, str]:
        """Cross-field rules: texture categories and their defect lists must be known."""
        if "textures" not in self.datasets:
            return {}
        if len(self.datasets) > 1:
            return {"datasets": "either ['textures'] or real datasets (mvtec_ad, visa)"}
        if not self.categories:
            return {"categories": f"a non-empty subset of {list(TEXTURE_CATEGORIES)}"}
        bad = [c for c in self.categories if c not in TEXTURE_CATEGORIES or c not in self.defects]
        if bad:
            return {"categories": f"texture categories with a defects entry; unknown: {bad}"}
        for cat in self.categories:
            kinds = self.defects[cat]
            if not kinds or any(k not in DEFECT_TYPES for k in kinds):
                return {"defects": f"{cat}: a non-empty list from {list(DEFECT_TYPES)}"}
        return {}

    def unpinned(self) -> dict[str, str]:
        """The MVTec-AD archive (placed by hand) and VisA (downloaded) are SHA-256 pinned."""
        pins = {"mvtec_ad": "mvtec_sha256", "visa": "visa_sha256"}
        return {
            pins[d]: "the archive's SHA-256"
            for d in self.datasets
            if d in pins and not getattr(self, pins[d])
        }


@dataclass
class FeaturesConfig:
    """Frozen backbone, input size and the k-shot augmentation."""

    backbone: str = param(choices=BACKBONES)
    image_res: int = param(ge=16)
    # random_cnn / loco_cnn (mini): stage widths, how many last stages are averaged, init seed
    cnn_channels: list[int] = param(ge=1, min_len=4)
    cnn_mean_stages: int = param(ge=1, le=4)
    cnn_seed: int = param(ge=0)
    # dinov2 (full): HF model, pinned commit, hidden-state indices averaged
    hf_model: str = param()
    hf_revision: str = param()
    layers: list[int] = param(min_len=1)
    # augmentation: copies per train image; mode per category (rotate | flip | none)
    aug_count: int = param(ge=0)
    aug_default: str = param(choices=AUG_MODES)
    aug_overrides: dict[str, str] = param()
    rotate_range: list[float] = param(ge=-360, le=360, min_len=2)
    flip_max_deg: float = param(ge=0, le=45)
    aug_fill: str = param(choices=("mirror", "constant"))
    batch_size: int = param(ge=1)
    thumb_size: int = param(ge=8)

    def check(self) -> dict[str, str]:
        """Cross-field rules on the augmentation and the CNN grid."""
        bad = {k: v for k, v in self.aug_overrides.items() if v not in AUG_MODES}
        if bad:
            return {"aug_overrides": f"modes from {list(AUG_MODES)}; got {bad}"}
        if len(self.rotate_range) != 2 or self.rotate_range[0] > self.rotate_range[1]:
            return {"rotate_range": "[low, high] degrees with low <= high"}
        if len(self.cnn_channels) != 4:
            return {"cnn_channels": "four stage widths"}
        if self.backbone in CNN_BACKBONES and self.image_res % 16:
            return {"image_res": "a multiple of 16 for the 4-stage stride-2 CNN"}
        return {}

    def unpinned(self) -> dict[str, str]:
        """DINOv2 is loaded at a pinned hub commit (40 hex digits)."""
        if self.backbone == "dinov2" and not re.fullmatch(r"[0-9a-f]{40}", self.hf_revision):
            return {"hf_revision": f"the 40-hex commit of {self.hf_model} on the HF hub"}
        return {}


@dataclass
class PretrainConfig:
    """Leave-one-category-out pretraining of the ``loco_cnn`` backbone (mini): for each
    evaluated category, the CNN learns to classify the *other* texture categories on good
    images drawn from the generator with ``seed`` (a stream no evaluation seed uses)."""

    images_per_category: int = param(ge=1)
    seed: int = param(ge=0)
    crop: int = param(ge=8)  # random crops (plus flips and brightness/contrast jitter)
    jitter: float = param(ge=0, lt=1)
    epochs: int = param(ge=1)
    batch_size: int = param(ge=1)
    lr: float = param(gt=0)
    weight_decay: float = param(ge=0)


@dataclass
class FitConfig:
    """PCA rank rule and the explained-variance ablation."""

    pca_ev: float = param(gt=0, le=1)
    ablation_ev: list[float] = param(gt=0, le=1, min_len=1)

    def check(self) -> dict[str, str]:
        """The ablation must contain the three values claim (c) compares."""
        missing = [ev for ev in ABLATION_EVS if ev not in self.ablation_ev]
        if missing:
            return {"ablation_ev": f"a list containing {list(ABLATION_EVS)} (claim c)"}
        return {}


@dataclass
class EvalConfig:
    """Anomaly-map post-processing, image score and metric settings."""

    blur_kernel: int = param(ge=1)
    blur_sigma: float = param(gt=0)
    top_frac: float = param(gt=0, le=1)
    aupro_fpr_limit: float = param(gt=0, le=1)
    n_plot: int = param(ge=1)
    plot_max_categories: int = param(ge=1)

    def check(self) -> dict[str, str]:
        """The Gaussian kernel must have odd size."""
        return {"blur_kernel": "an odd kernel size"} if self.blur_kernel % 2 == 0 else {}


@dataclass
class SubspaceADConfig:
    """SubspaceAD study: seeds (texture generator / k-shot draw) and one section per step."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    pretrain: PretrainConfig | None = param()  # set exactly when features.backbone is loco_cnn
    features: FeaturesConfig = param()
    fit: FitConfig = param()
    eval: EvalConfig = param()

    def check(self) -> dict[str, str]:
        """The pretrain section goes with the loco_cnn backbone on texture data, and its crops
        fit the images."""
        loco = self.features.backbone == "loco_cnn"
        if loco != (self.pretrain is not None):
            return {"pretrain": "a section when features.backbone is loco_cnn, null otherwise"}
        if loco and self.data.datasets != ["textures"]:
            return {
                "features": "backbone loco_cnn needs the textures dataset (its pretraining data)"
            }
        if self.pretrain is not None and self.pretrain.crop > self.data.image_size:
            return {"pretrain": f"crop <= data.image_size ({self.data.image_size})"}
        return {}
