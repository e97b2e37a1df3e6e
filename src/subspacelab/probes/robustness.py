"""Corruptions of 1-D signals and the logit geometry of Li et al., "Understanding Robustness
Lottery: A Geometric Visual Comparative Analysis of Neural Network Pruning Approaches"
(arXiv:2206.07918).

Corruptions are in-project 1-D analogues of CIFAR-10-C's (Hendrycks & Dietterich 2019), five
severities each, applied to a batch ``x`` of shape (n, L) with a seeded numpy generator.
The geometry decomposes a logit ``w_cᵀh + b_c = ‖w_c‖‖h‖cos θ_c + b_c``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d
from torch import Tensor

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


def _scale(x: np.ndarray) -> float:
    return float(x.std()) or 1.0


def gaussian_noise(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise, std ∝ severity."""
    return x + rng.normal(0.0, (0.08, 0.12, 0.18, 0.26, 0.38)[s - 1] * _scale(x), x.shape)


def shot_noise(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """Poisson noise on the signal shifted to be non-negative; fewer photons = more noise."""
    lam = (60.0, 25.0, 12.0, 5.0, 3.0)[s - 1]
    lo, span = x.min(), np.ptp(x) or 1.0
    u = (x - lo) / span
    return rng.poisson(u * lam) / lam * span + lo


def impulse_noise(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """Salt-and-pepper: a fraction of positions set to the min or max."""
    frac = (0.03, 0.06, 0.09, 0.17, 0.27)[s - 1]
    out = x.copy()
    hit = rng.random(x.shape) < frac
    out[hit] = np.where(rng.random(int(hit.sum())) < 0.5, x.min(), x.max())
    return out


def blur(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur along the signal."""
    return gaussian_filter1d(x, (0.5, 0.8, 1.1, 1.5, 2.0)[s - 1], axis=-1, mode="nearest")


def contrast(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """Shrink each signal toward its mean."""
    c = (0.6, 0.5, 0.4, 0.3, 0.2)[s - 1]
    mu = x.mean(axis=-1, keepdims=True)
    return (x - mu) * c + mu


def pixelate(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """Average over blocks and repeat (a coarser sampling)."""
    block = (2, 2, 3, 4, 5)[s - 1]
    n, length = x.shape
    pad = (-length) % block
    padded = np.pad(x, ((0, 0), (0, pad)), mode="edge")
    coarse = padded.reshape(n, -1, block).mean(axis=-1)
    return np.repeat(coarse, block, axis=-1)[:, :length]


def brightness(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """A constant offset."""
    return x + (0.1, 0.2, 0.3, 0.4, 0.5)[s - 1] * _scale(x)


def warp(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """Elastic-like warp: a smooth random displacement of the sampling positions."""
    amp = (0.5, 1.0, 1.5, 2.0, 2.5)[s - 1]
    n, length = x.shape
    grid = np.arange(length, dtype=np.float64)
    shift = gaussian_filter1d(rng.normal(0.0, 1.0, (n, length)), 4.0, axis=-1)
    shift *= amp / (np.abs(shift).max(axis=-1, keepdims=True) + 1e-12)
    pos = np.clip(grid + shift, 0, length - 1)
    return np.stack([np.interp(p, grid, row) for p, row in zip(pos, x, strict=True)])


CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "blur": blur,
    "contrast": contrast,
    "pixelate": pixelate,
    "brightness": brightness,
    "warp": warp,
}
NOISES = ("gaussian_noise", "shot_noise", "impulse_noise")


def corrupt(x: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """Apply corruption ``name`` at ``severity`` (1-5) to signals ``x`` (n, L), reproducibly."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; allowed: {', '.join(CORRUPTIONS)}")
    if not 1 <= severity <= 5:
        raise ValueError(f"severity: got {severity}; allowed: 1..5")
    rng = np.random.default_rng(seed)
    return CORRUPTIONS[name](np.asarray(x, np.float64), severity, rng).astype(np.float32)


@dataclass(frozen=True)
class LogitGeometry:
    """Per-sample angle to the true class direction (radians), feature length and signed margin
    to the runner-up class's decision boundary."""

    angle: Tensor
    length: Tensor
    margin: Tensor


def logit_geometry(h: Tensor, weight: Tensor, bias: Tensor | None, y: Tensor) -> LogitGeometry:
    """Decompose the last layer ``W h + b`` for features ``h`` (n, m) and labels ``y``."""
    h, w = h.to(torch.float64), weight.to(torch.float64)
    b = torch.zeros(w.shape[0], dtype=torch.float64) if bias is None else bias.to(torch.float64)
    logits = h @ w.T + b
    wy = w[y]
    length = h.norm(dim=1)
    cos = (h * wy).sum(dim=1) / (length * wy.norm(dim=1)).clamp_min(1e-12)
    others = logits.clone()
    others[torch.arange(len(y)), y] = -torch.inf
    runner = others.argmax(dim=1)
    dw = wy - w[runner]
    margin = ((dw * h).sum(dim=1) + b[y] - b[runner]) / dw.norm(dim=1).clamp_min(1e-12)
    return LogitGeometry(torch.arccos(cos.clamp(-1.0, 1.0)), length, margin)
