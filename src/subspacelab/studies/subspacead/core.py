"""SubspaceAD maths: patch features, the PCA-residual scorer, the kNN baseline, maps and metrics.

Lendering, Akdag & Bondarev, "SubspaceAD: Training-Free Few-Shot Anomaly Detection via Subspace
Modeling", CVPR 2026, arXiv:2602.23013.

* :class:`PatchCNN` — the miniature's 4-stage CNN; its tokens are the mean of the last stages
  resampled to the stride-8 grid (stand-in for the DINOv2 layer mean). Frozen random init
  (:func:`random_patch_cnn`) or pretrained leave-one-category-out (:class:`TextureClassifier`,
  :func:`crop_flip_jitter`).
* :class:`SubspaceAD` — the fitted normal model (mean, top-k principal directions and the
  spectrum as buffers); the score is the squared residual ``||(x-μ) - P_k P_kᵀ(x-μ)||²``.
* :class:`KNNBank` — the AnomalyDINO baseline (Damm et al., arXiv:2405.14529): 1-NN cosine
  distance to every training patch.
* maps (bilinear resize + 3×3 Gaussian blur), the ``mtop1p`` image score, pixel AUROC and AUPRO
  (Bergmann et al., "The MVTec anomaly detection dataset", IJCV 2021).

Pure functions and modules, no IO.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor, nn

from subspacelab.geometry import StreamingMoments, pca_from_moments, projection_residual
from subspacelab.studies.subspacead.textures import rotate_image

AUG_MODES = ("rotate", "flip", "none")


# --------------------------------------------------------------------------- features


class PatchCNN(nn.Module):
    """The miniature's backbone: 4 stages of (3×3 conv stride 2, BatchNorm, ReLU).

    Stage ``s`` has stride ``2**(s+1)``; the token grid is that of stage 3 (stride 8). The last
    ``n_mean`` stages are resampled to the grid (area pooling down, bilinear up), zero-padded
    to the widest stage and averaged: the analogue of SubspaceAD's mean over DINOv2 layers
    −12…−18. Built by :func:`random_patch_cnn` (frozen random init) or trained by
    :class:`TextureClassifier` (leave-one-category-out pretraining), then :meth:`freeze` d.
    """

    def __init__(self, channels: Sequence[int], n_mean: int) -> None:
        super().__init__()
        if len(channels) != 4:
            raise ValueError(f"channels must list 4 stage widths, got {list(channels)}")
        if not 1 <= n_mean <= 4:
            raise ValueError(f"n_mean must be in 1..4, got {n_mean}")
        stages = []
        c_in = 3
        for c_out in channels:
            conv = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False)
            stages.append(nn.Sequential(conv, nn.BatchNorm2d(c_out), nn.ReLU()))
            c_in = c_out
        self.stages = nn.ModuleList(stages)
        self.n_mean = n_mean
        self.dim = max(channels[-n_mean:])
        self.stride = 8
        self.frozen = False

    def freeze(self) -> PatchCNN:
        """No gradients and eval mode for good: BatchNorm keeps its statistics."""
        self.requires_grad_(False)
        self.frozen = True
        return self.eval()

    def train(self, mode: bool = True) -> PatchCNN:
        """Train mode, unless frozen."""
        return super().train(mode and not self.frozen)

    def stage_maps(self, images: Tensor) -> list[Tensor]:
        """The four stages' feature maps of images ``(B, 3, H, W)`` in [0, 1]."""
        x = (images - 0.5) / 0.25
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        """Tokens ``(B, G, G, dim)`` of images ``(B, 3, H, W)`` in [0, 1], ``G = H / 8``.

        Runs on the device of the weights (the images are moved there).
        """
        device = self.stages[0][0].weight.device
        feats = self.stage_maps(images.to(device))
        grid = images.shape[-1] // self.stride
        out = feats[-1].new_zeros(images.shape[0], self.dim, grid, grid)
        for f in feats[-self.n_mean :]:
            if f.shape[-1] > grid:
                f = F.adaptive_avg_pool2d(f, grid)
            elif f.shape[-1] < grid:
                f = F.interpolate(f, size=(grid, grid), mode="bilinear", align_corners=False)
            out[:, : f.shape[1]] += f
        return (out / self.n_mean).permute(0, 2, 3, 1).contiguous()


def random_patch_cnn(channels: Sequence[int], n_mean: int, seed: int) -> PatchCNN:
    """The spec's frozen, seeded random-init backbone: Kaiming-normal convs drawn from a
    generator seeded ``seed``, BatchNorm with unit statistics (running mean 0, variance 1,
    affine 1/0), as a pretrained network's BN would after folding."""
    net = PatchCNN(channels, n_mean)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for stage in net.stages:
            conv = stage[0]
            std = (2.0 / (9 * conv.in_channels)) ** 0.5  # Kaiming (fan-in, ReLU)
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * std)
    return net.freeze()


class TextureClassifier(nn.Module):
    """Leave-one-category-out pretraining network: a :class:`PatchCNN` trunk, global average
    pooling of its last stage and a linear classifier over the *other* texture categories
    (the spec's option that mimics a foundation model that never saw the target category)."""

    def __init__(self, trunk: PatchCNN, num_classes: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.fc = nn.Linear(trunk.stages[-1][0].out_channels, num_classes)

    def forward(self, images: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` of images ``(B, 3, H, W)`` in [0, 1]."""
        return self.fc(self.trunk.stage_maps(images)[-1].mean(dim=(2, 3)))


def crop_flip_jitter(images: Tensor, gen: torch.Generator, crop: int, jitter: float) -> Tensor:
    """Pretraining augmentation of a batch ``(B, 3, H, W)``: a random ``crop``×``crop`` window,
    random horizontal and vertical flips, and a random brightness/contrast change (gain in
    ``1 ± jitter``, offset in ``± jitter / 2``) per image, clipped to [0, 1]."""
    b, _, h, w = images.shape
    if not 0 < crop <= min(h, w):
        raise ValueError(f"crop must be in 1..{min(h, w)}, got {crop}")
    top = torch.randint(0, h - crop + 1, (b,), generator=gen).tolist()
    left = torch.randint(0, w - crop + 1, (b,), generator=gen).tolist()
    flips = torch.rand(b, 2, generator=gen) < 0.5
    gain = 1.0 + jitter * (2 * torch.rand(b, 1, 1, 1, generator=gen) - 1)
    offset = 0.5 * jitter * (2 * torch.rand(b, 1, 1, 1, generator=gen) - 1)
    out = []
    for i in range(b):
        x = images[i, :, top[i] : top[i] + crop, left[i] : left[i] + crop]
        if flips[i, 0]:
            x = x.flip(-1)
        if flips[i, 1]:
            x = x.flip(-2)
        out.append(x)
    return ((torch.stack(out) - 0.5) * gain + 0.5 + offset).clamp(0.0, 1.0)


def augment(
    img: np.ndarray,
    mode: str,
    count: int,
    rng: np.random.Generator,
    *,
    rotate_range: tuple[float, float],
    flip_max_deg: float,
    fill: str,
) -> list[np.ndarray]:
    """The image followed by ``count`` augmented copies (float ``(H, W, 3)`` in [0, 1]).

    ``rotate``: a uniform rotation in ``rotate_range`` degrees (the paper's 0…345°; isotropic
    textures and MVTec/VisA). ``flip``: random horizontal and vertical flips and a rotation in
    ±``flip_max_deg`` (oriented textures). ``none``: no copies (the paper's
    ``no_aug_categories``). ``fill`` is the border mode of :func:`rotate_image`.
    """
    if mode not in AUG_MODES:
        raise ValueError(f"unknown augmentation mode {mode!r}; allowed: {AUG_MODES}")
    out = [img]
    if mode == "none":
        return out
    for _ in range(count):
        if mode == "rotate":
            out.append(rotate_image(img, rng.uniform(*rotate_range), fill=fill))
            continue
        aug = img[:, ::-1] if rng.random() < 0.5 else img
        aug = aug[::-1] if rng.random() < 0.5 else aug
        angle = rng.uniform(-flip_max_deg, flip_max_deg)
        out.append(rotate_image(np.ascontiguousarray(aug), angle, fill=fill))
    return out


def to_tensor(images: Sequence[np.ndarray]) -> Tensor:
    """Stack ``(H, W, 3)`` images (uint8, or float in [0, 1]) into float32 ``(B, 3, H, W)``."""
    arr = np.stack([i.astype(np.float32) / 255.0 if i.dtype == np.uint8 else i for i in images])
    return torch.from_numpy(arr.astype(np.float32)).permute(0, 3, 1, 2).contiguous()


def extract_tokens(
    backbone: Callable[[Tensor], Tensor],
    images: Sequence[np.ndarray],
    batch_size: int,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Tokens ``(B, G, G, d)`` (CPU, ``dtype``) of a list of images, ``batch_size`` at a time."""
    out = [
        backbone(to_tensor(images[i : i + batch_size])).to("cpu", dtype)
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out)


def score_tokens(
    scorer: Callable[[Tensor], Tensor], tokens: Tensor, device: torch.device, batch_size: int
) -> Tensor:
    """Per-token scores ``(B, G, G)`` on CPU, ``batch_size`` images at a time on ``device``.

    Bounds the float64 working memory at full scale (48×48 tokens of 1536 dims per image).
    """
    out = [scorer(t.to(device)).cpu() for t in tokens.split(batch_size)]
    return torch.cat(out)


# --------------------------------------------------------------------------- fitted models


class SubspaceAD(nn.Module):
    """Normal subspace of a category: ``mean`` (d), ``components`` (d, k), ``eigenvalues`` (d).

    The anomaly score of a token is its squared distance to the affine subspace
    ``μ + span(P_k)`` (SubspaceAD's ``reconstruction`` score). Fitted state lives in buffers.
    """

    def __init__(self, mean: Tensor, components: Tensor, eigenvalues: Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.to(torch.float64))
        self.register_buffer("components", components.to(torch.float64))
        self.register_buffer("eigenvalues", eigenvalues.to(torch.float64))

    @property
    def k(self) -> int:
        """Number of retained principal directions."""
        return int(self.components.shape[1])

    @classmethod
    def from_moments(cls, moments: StreamingMoments, ev: float) -> SubspaceAD:
        """PCA of float64 streaming moments, keeping the smallest k with cumEV ≥ ``ev``."""
        pca = pca_from_moments(moments, threshold=ev)
        return cls(pca.mean, pca.components, pca.eigenvalues)

    @classmethod
    def from_state(cls, state: dict[str, Tensor]) -> SubspaceAD:
        """Rebuild from a saved state dict."""
        return cls(state["mean"], state["components"], state["eigenvalues"])

    @torch.no_grad()
    def forward(self, tokens: Tensor) -> Tensor:
        """Squared residual per token: ``(..., d)`` -> ``(...)`` (float64)."""
        return projection_residual(tokens.to(torch.float64), self.components, self.mean)


class KNNBank(nn.Module):
    """AnomalyDINO-style memory bank: score = 1 − max cosine similarity to any training patch.

    The bank holds every training token, L2-normalised: ``N·d`` numbers against SubspaceAD's
    ``k·d``.
    """

    def __init__(self, bank: Tensor, chunk: int = 4096) -> None:
        super().__init__()
        self.register_buffer("bank", F.normalize(bank.reshape(-1, bank.shape[-1]).float(), dim=1))
        self.chunk = chunk

    @torch.no_grad()
    def forward(self, tokens: Tensor) -> Tensor:
        """1-NN cosine distance per token: ``(..., d)`` -> ``(...)`` (float32)."""
        flat = F.normalize(tokens.reshape(-1, tokens.shape[-1]).float(), dim=1)
        bank = self.bank.to(flat.device)
        best = [(q @ bank.T).amax(dim=1) for q in flat.split(self.chunk)]
        dist = 1.0 - torch.cat(best) if best else flat.new_zeros(0)
        return dist.reshape(tokens.shape[:-1])


# --------------------------------------------------------------------------- maps


def gaussian_kernel(size: int, sigma: float) -> Tensor:
    """Normalised 2-D Gaussian kernel ``(size, size)`` (float64), as cv2.getGaussianKernel."""
    if size < 1 or size % 2 == 0 or sigma <= 0:
        raise ValueError(f"kernel size must be odd and positive and sigma > 0, got {size}, {sigma}")
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def anomaly_maps(scores: Tensor, size: int, kernel: int, sigma: float) -> Tensor:
    """Patch scores ``(B, G, G)`` -> pixel maps ``(B, size, size)`` (float64).

    Bilinear resize (half-pixel centres, as cv2.INTER_LINEAR) then a ``kernel``×``kernel``
    Gaussian blur with reflected borders (cv2's BORDER_REFLECT_101).
    """
    x = F.interpolate(
        scores.to(torch.float64)[:, None], size=(size, size), mode="bilinear", align_corners=False
    )
    pad = kernel // 2
    if pad:
        x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    x = F.conv2d(x, gaussian_kernel(kernel, sigma)[None, None])
    return x[:, 0]


def top_fraction_mean(maps: Tensor, frac: float) -> Tensor:
    """Image score: mean of the top ``frac`` of each map's values (at least one), ``(B,)``."""
    flat = maps.reshape(maps.shape[0], -1)
    k = max(1, int(flat.shape[1] * frac))
    return flat.topk(k, dim=1).values.mean(dim=1)


# --------------------------------------------------------------------------- metrics


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC (sklearn); NaN when only one class is present."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels).ravel()
    if labels.min() == labels.max():
        return float("nan")
    return float(roc_auc_score(labels, np.asarray(scores).ravel()))


@dataclass(frozen=True)
class PixelCurves:
    """Exact pixel-level curves over all thresholds, one point per distinct score (from 0).

    ``fpr``: fraction of GT-negative pixels (over all images) with score ≥ t; ``tpr``: the same
    for GT-positive pixels; ``pro``: mean over GT regions of the fraction of the region's pixels
    with score ≥ t. All three start at 0 and are non-decreasing.
    """

    fpr: np.ndarray
    tpr: np.ndarray
    pro: np.ndarray

    @property
    def auroc(self) -> float:
        """Pixel ROC AUC: trapezoids on the exact curve (equals sklearn's roc_auc_score)."""
        return float(np.trapezoid(self.tpr, self.fpr))

    def aupro(self, fpr_limit: float) -> float:
        """Area under the PRO curve for FPR in [0, ``fpr_limit``], divided by ``fpr_limit``.

        Trapezoids on the exact curve, the PRO at ``fpr_limit`` linearly interpolated.
        """
        if not 0.0 < fpr_limit <= 1.0:
            raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
        fpr, pro = self.fpr, self.pro
        cut = int(np.searchsorted(fpr, fpr_limit, side="right"))
        if cut < len(fpr):  # fpr[cut - 1] <= limit < fpr[cut]: interpolate on that segment
            y_end = np.interp(fpr_limit, fpr[cut - 1 : cut + 1], pro[cut - 1 : cut + 1])
        else:
            y_end = pro[-1]
        x, y = np.r_[fpr[:cut], fpr_limit], np.r_[pro[:cut], y_end]
        return float(np.trapezoid(y, x) / fpr_limit)


def pixel_curves(maps: np.ndarray, masks: np.ndarray) -> PixelCurves:
    """ROC and per-region-overlap curves of maps ``(n, H, W)`` against GT masks, one sort.

    Regions are the 8-connected components of each GT mask (scipy.ndimage.label), as in the
    MVTec-AD evaluation.
    """
    maps = np.asarray(maps, dtype=np.float64)
    masks = np.asarray(masks).astype(bool)
    if maps.shape != masks.shape:
        raise ValueError(f"maps {maps.shape} and masks {masks.shape} must have the same shape")
    weights = np.zeros(maps.shape, dtype=np.float64)
    n_regions = 0
    structure = np.ones((3, 3), dtype=bool)
    for i in range(masks.shape[0]):
        labelled, n = ndimage.label(masks[i], structure=structure)
        if n == 0:
            continue
        sizes = np.bincount(labelled.ravel())
        inside = labelled > 0
        weights[i][inside] = 1.0 / sizes[labelled[inside]]
        n_regions += n
    negatives = ~masks
    if n_regions == 0 or not negatives.any():
        raise ValueError("pixel metrics need at least one defect region and one normal pixel")
    order = np.argsort(-maps.ravel())  # order within ties is irrelevant: only group ends count
    s = maps.ravel()[order]
    last = np.r_[s[1:] != s[:-1], True]  # last index of each tie group
    fp = np.cumsum(negatives.ravel()[order])[last] / negatives.sum()
    tp = np.cumsum(masks.ravel()[order])[last] / masks.sum()
    pro = np.cumsum(weights.ravel()[order])[last] / n_regions
    return PixelCurves(np.r_[0.0, fp], np.r_[0.0, tp], np.r_[0.0, pro])


def aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = 0.3) -> float:
    """AUPRO up to ``fpr_limit``, normalised by it (a perfect detector scores 1)."""
    return pixel_curves(maps, masks).aupro(fpr_limit)


def category_metrics(
    maps: Tensor, masks: np.ndarray, labels: np.ndarray, top_frac: float, fpr_limit: float
) -> tuple[dict[str, float], np.ndarray]:
    """Image AUROC (``mtop1p`` score), pixel AUROC (raw maps pooled) and AUPRO of one category.

    Returns the metrics and the image scores.
    """
    img = top_fraction_mean(maps, top_frac).numpy()
    curves = pixel_curves(maps.numpy(), masks)
    metrics = {
        "image_auroc": auroc(labels, img),
        "pixel_auroc": curves.auroc,
        "aupro": curves.aupro(fpr_limit),
    }
    return metrics, img
