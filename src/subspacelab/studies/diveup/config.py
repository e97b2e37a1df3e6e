"""Typed params of diveup (arXiv 2603.13571); values live in params.yaml only."""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param


@dataclass
class FullData:
    """Spec §7: a segmentation set in its released layout under ``root`` (``voc``: VOCdevkit/
    VOC2012 with JPEGImages, SegmentationClass palette PNGs and ImageSets/Segmentation lists;
    ``ade20k``: ADEChallengeData2016 with images/ and annotations/ {training, validation};
    ``coco_stuff``: images/ and annotations/ {train2017, val2017}),
    images resized to ``image_size``; ``max_images`` caps each split (``null``: all)."""

    dataset: str = param(choices=("voc", "ade20k", "coco_stuff"))
    root: str = param()
    image_size: int = param(ge=16)
    max_images: int | None = param(ge=1)


@dataclass
class DataConfig:
    """The procedural scenes (spec §6; :mod:`subspacelab.data.scenes2d`): counts, side, classes
    (background included), shapes per scene, radius range, colour jitter, pixel noise; or the
    full profile's real set (``full``)."""

    n_train: int = param(ge=2)
    n_test: int = param(ge=1)
    size: int = param(ge=16)
    classes: int = param(ge=2, le=8)
    min_shapes: int = param(ge=1)
    max_shapes: int = param(ge=1)
    min_radius: float = param(gt=0.0)
    max_radius: float = param(gt=0.0)
    jitter: float = param(ge=0.0)
    noise: float = param(ge=0.0)
    full: FullData | None = param()

    def check(self) -> dict[str, str]:
        """The image side is a whole number of stride-8 tokens; ranges are ordered."""
        bad: dict[str, str] = {}
        if self.size % 8:
            bad["size"] = "a multiple of 8 (the experts' token stride)"
        if self.max_shapes < self.min_shapes:
            bad["max_shapes"] = f">= min_shapes ({self.min_shapes})"
        if self.max_radius < self.min_radius:
            bad["max_radius"] = f">= min_radius ({self.min_radius})"
        return bad


@dataclass
class ExpertsConfig:
    """The four stand-in VFMs A (spikes), B (half-token shift), C (blur), D (clean, held out):
    output widths in that order, hidden width, the pathologies' strengths, and the brief
    denoising pre-training (input noise sd, epochs, Adam lr, batch)."""

    widths: list[int] = param(min_len=4)
    hidden: int = param(ge=2)
    spike_prob: float = param(gt=0.0, lt=1.0)
    spike_norm: float = param(gt=1.0)
    blur_sigma: float = param(gt=0.0)
    dae_noise: float = param(ge=0.0)
    epochs: int = param(ge=1)
    lr: float = param(gt=0.0)
    batch: int = param(ge=1)

    def check(self) -> dict[str, str]:
        """Each width splits over the upsampler's 4 heads; the hidden width is even."""
        bad: dict[str, str] = {}
        if len(self.widths) != 4:
            bad["widths"] = "four widths: A, B, C, D"
        if any(w < 4 or w % 4 for w in self.widths):
            bad["widths"] = "multiples of 4 (the attention heads split the value channels)"
        if self.hidden % 2:
            bad["hidden"] = "even"
        return bad


@dataclass
class ReleasedWeights:
    """Full profile: the released checkpoints (URL, SHA-256 pin) and the official code that
    defines their module (GitHub repository for ``torch.hub`` and its pinned commit): DiveUp's
    and NAF's (the same architecture trained by self-reconstruction)."""

    diveup_repo: str = param()
    diveup_revision: str = param()
    diveup_url: str = param()
    diveup_sha256: str = param()
    naf_repo: str = param()
    naf_revision: str = param()
    naf_url: str = param()
    naf_sha256: str = param()

    def unpinned(self) -> dict[str, str]:
        """The checkpoints are used only against their SHA-256 (neither project publishes
        one)."""
        missing = {}
        for arm in ("diveup", "naf"):
            if not getattr(self, f"{arm}_sha256"):
                missing[f"{arm}_sha256"] = f"the SHA-256 of {getattr(self, f'{arm}_url')}"
        return missing


@dataclass
class ModelConfig:
    """The upsampler (spec §6: NAF-style, ``unfold`` attention): guidance dim, window (tokens),
    heads, conv layers per stack, RoPE base and coordinate rescale. Full profile: the timm
    backbones in the roles A, B, C, D with their weight files' SHA-256 pins, and the released
    weights (``released``)."""

    dim: int = param(ge=4)
    kernel: int = param(ge=1)
    heads: int = param(ge=1)
    layers: int = param(ge=1)
    rope_base: float = param(gt=0.0)
    rope_rescale: float = param(gt=0.0)
    backbones: list[str] = param()
    backbone_sha256: list[str] = param()
    released: ReleasedWeights | None = param()

    def check(self) -> dict[str, str]:
        """dim splits into heads × 4 (2-D RoPE pairs); the window is odd; four backbones with a
        pin each, or none."""
        bad: dict[str, str] = {}
        if self.dim % (4 * self.heads):
            bad["dim"] = f"a multiple of 4 × heads ({4 * self.heads})"
        if self.kernel % 2 == 0:
            bad["kernel"] = "odd"
        if len(self.backbones) not in (0, 4) or len(self.backbone_sha256) != len(self.backbones):
            bad["backbones"] = "none (mini) or four (roles A-D), with one backbone_sha256 each"
        return bad

    def unpinned(self) -> dict[str, str]:
        """Each backbone's weights are used only against their SHA-256."""
        return {
            f"backbone_sha256[{i}]": f"the SHA-256 of {name}'s weight file"
            for i, (name, sha) in enumerate(zip(self.backbones, self.backbone_sha256, strict=True))
            if not sha
        }


@dataclass
class TrainConfig:
    """Both trained arms (Adam, constant lr): epochs, lr, batch; token-aligned crops of
    ``crop`` tokens (output 2·crop cells against the experts' features of the 2× image); the
    COM window radius (cells) and temperature; the spikiness above which an expert leaves the
    consensus."""

    epochs: int = param(ge=1)
    lr: float = param(gt=0.0)
    batch: int = param(ge=1)
    crop: int = param(ge=1)
    com_radius: int = param(ge=1)
    tau: float = param(gt=0.0)
    spike_threshold: float = param(gt=1.0)


@dataclass
class EvalConfig:
    """The linear probe: train images it is fitted on (the first of the train split), the
    stride of the pixel grid it is fitted on, ridge (relative to tr(Σ)/d of the centred
    features); the boundary tolerance (pixels); images per batch."""

    probe_images: int = param(ge=1)
    pixel_stride: int = param(ge=1)
    ridge: float = param(ge=0.0)
    boundary_tol: int = param(ge=0)
    batch: int = param(ge=1)


@dataclass
class DiveupConfig:
    """One profile of diveup's section in params.yaml."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    experts: ExpertsConfig = param()
    model: ModelConfig = param()
    train: TrainConfig = param()
    eval: EvalConfig = param()

    def check(self) -> dict[str, str]:
        """Crops fit the token grid; the probe's images exist; the full profile names its
        weights and backbones."""
        bad: dict[str, str] = {}
        if self.train.crop > self.data.size // 8:
            bad["train"] = f"crop <= the token grid ({self.data.size // 8})"
        if self.eval.probe_images > self.data.n_train:
            bad["eval"] = f"probe_images <= n_train ({self.data.n_train})"
        full = self.data.full is not None
        if full != (self.model.released is not None) or full != bool(self.model.backbones):
            bad["model"] = "released and backbones exactly when data.full is given"
        return bad
