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

# Severity 1-5 of each corruption, all sized per signal. Calibrated once (issue 12) on a pilot
# dense SmallCNN (robustness_lottery's recipe, seed 100: not a study seed) to accuracy drops of
# about 2 / 5 / 10 / 20 / 35 points on MNIST-1D, as CIFAR-10-C's severity 1 is a small drop.
# Pixelate cannot be milder than resampling 40 positions at 38 (about 9 points).
GAUSSIAN = (0.15, 0.23, 0.3, 0.4, 0.52)  # noise std / signal std
SHOT = (350.0, 160.0, 95.0, 55.0, 33.0)  # photons at the signal's maximum
IMPULSE = (0.0027, 0.007, 0.015, 0.033, 0.065)  # fraction of positions hit
BLUR = (0.44, 0.5, 0.56, 0.66, 0.86)  # Gaussian sigma, in samples
CONTRAST = (0.875, 0.835, 0.78, 0.72, 0.65)  # factor toward the signal's mean
PIXELATE = (1.05, 1.2, 1.5, 2.0, 2.5)  # L / number of samples kept
BRIGHTNESS = (0.21, 0.27, 0.36, 0.5, 0.68)  # offset / signal std
WARP = (0.27, 0.45, 1.6, 3.2, 5.0)  # largest displacement, in samples


def _scale(x: np.ndarray) -> np.ndarray:
    """Each signal's own standard deviation, (n, 1) (1 for a flat signal): noise and offsets
    are sized per signal, never by the range of the whole batch (issue 12)."""
    sd = x.std(axis=-1, keepdims=True)
    return np.where(sd > 0, sd, 1.0)


def gaussian_noise(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise, std ∝ severity × the signal's std."""
    return x + rng.normal(0.0, 1.0, x.shape) * GAUSSIAN[s - 1] * _scale(x)


def shot_noise(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """Poisson noise on each signal shifted and scaled to [0, 1]; fewer photons = more noise."""
    lam = SHOT[s - 1]
    lo = x.min(axis=-1, keepdims=True)
    span = x.max(axis=-1, keepdims=True) - lo
    span = np.where(span > 0, span, 1.0)
    return rng.poisson((x - lo) / span * lam) / lam * span + lo


def impulse_noise(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """Salt-and-pepper: a fraction of positions set to their signal's min or max."""
    hit = rng.random(x.shape) < IMPULSE[s - 1]
    salt = rng.random(x.shape) < 0.5
    lo, hi = x.min(axis=-1, keepdims=True), x.max(axis=-1, keepdims=True)
    return np.where(hit, np.where(salt, hi, lo), x)


def blur(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur along the signal."""
    return gaussian_filter1d(x, BLUR[s - 1], axis=-1, mode="nearest")


def contrast(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """Shrink each signal toward its mean."""
    mu = x.mean(axis=-1, keepdims=True)
    return (x - mu) * CONTRAST[s - 1] + mu


def pixelate(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """A coarser sampling: the signal read at ``L / factor`` evenly spaced positions and held
    piecewise constant (nearest) back on the L positions (fractional factors allowed)."""
    length = x.shape[-1]
    m = max(2, round(length / PIXELATE[s - 1]))
    grid = np.arange(length, dtype=np.float64)
    coarse_at = np.linspace(0.0, length - 1, m)
    coarse = np.stack([np.interp(coarse_at, grid, row) for row in x.reshape(-1, length)])
    nearest = np.rint(grid / (length - 1) * (m - 1)).astype(int)
    return coarse[:, nearest].reshape(x.shape)


def brightness(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """A constant offset, in units of the signal's std."""
    return x + BRIGHTNESS[s - 1] * _scale(x)


def warp(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """Elastic-like warp: a smooth random displacement of the sampling positions."""
    amp = WARP[s - 1]
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
