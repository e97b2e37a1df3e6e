"""Cluttered digits: sklearn's ``load_digits`` glyphs on a larger canvas among clutter.

The miniature of ULSAM (Saini et al., arXiv:2006.15102, spec §6): each 8×8 digit is upsampled
``scale``× and pasted at a uniformly random location of a ``canvas``×``canvas`` image, then
``n_clutter`` ``fragment``×``fragment`` crops of *other* digits of the same source pool are
pasted at random places (pixel-wise max), and Gaussian noise is added. Train and test canvases
are drawn from disjoint source digits, so a test canvas never shows a training glyph.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClutterSpec:
    """The generator's sizes: canvas side, glyph upsampling, clutter count and side, noise std
    (on images scaled to [0, 1]) and the fraction of source digits kept for test canvases."""

    canvas: int
    scale: int
    n_clutter: int
    fragment: int
    noise: float
    test_fraction: float

    def check(self) -> None:
        """Raise ``ValueError`` naming the first size that cannot make a canvas."""
        glyph = 8 * self.scale
        if self.scale < 1 or glyph > self.canvas:
            raise ValueError(
                f"an 8x{self.scale} glyph ({glyph} px) must fit the canvas {self.canvas}"
            )
        if not 1 <= self.fragment <= glyph:
            raise ValueError(f"fragment must be in [1, {glyph}], got {self.fragment}")
        if self.n_clutter < 0 or self.noise < 0:
            raise ValueError("n_clutter and noise must be >= 0")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")


def source_digits() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's 1,797 digits as float32 images in [0, 1], shape (n, 8, 8), and their labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


def split_sources(
    n: int, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint index sets (train, test) of ``n`` source digits, the test set
    ``round(test_fraction * n)`` long."""
    perm = rng.permutation(n)
    n_test = round(test_fraction * n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def render(
    images: np.ndarray, labels: np.ndarray, n: int, spec: ClutterSpec, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` cluttered canvases (n, 1, canvas, canvas) float32 and their labels, drawn from the
    source ``images`` (k, 8, 8) only: the glyph and the clutter's donors come from this pool."""
    spec.check()
    if len(images) < 2:
        raise ValueError("cluttered digits need at least two source digits")
    big = np.kron(images, np.ones((spec.scale, spec.scale), dtype=np.float32))
    glyph, side, frag = big.shape[1], spec.canvas, spec.fragment
    out = np.zeros((n, 1, side, side), dtype=np.float32)
    picks = rng.integers(0, len(images), size=n)
    for i, k in enumerate(picks):
        canvas = out[i, 0]
        for _ in range(spec.n_clutter):
            donor = int(rng.integers(0, len(images) - 1))
            donor += donor >= k  # another digit than the glyph's
            r, c = rng.integers(0, glyph - frag + 1, size=2)
            piece = big[donor, r : r + frag, c : c + frag]
            y, x = rng.integers(0, side - frag + 1, size=2)
            np.maximum(
                canvas[y : y + frag, x : x + frag], piece, out=canvas[y : y + frag, x : x + frag]
            )
        y, x = rng.integers(0, side - glyph + 1, size=2)
        np.maximum(
            canvas[y : y + glyph, x : x + glyph], big[k], out=canvas[y : y + glyph, x : x + glyph]
        )
    out += spec.noise * rng.standard_normal(out.shape).astype(np.float32)
    return out, labels[picks].copy()


def cluttered_digits(
    n_train: int, n_test: int, spec: ClutterSpec, seed: int
) -> dict[str, np.ndarray]:
    """Train and test canvases from source-disjoint digits, all drawn from ``seed``:
    ``x_train``, ``y_train``, ``x_test``, ``y_test``, and the source indices of each split."""
    spec.check()
    images, labels = source_digits()
    rng = np.random.default_rng(seed)
    train_idx, test_idx = split_sources(len(images), spec.test_fraction, rng)
    x_tr, y_tr = render(images[train_idx], labels[train_idx], n_train, spec, rng)
    x_te, y_te = render(images[test_idx], labels[test_idx], n_test, spec, rng)
    return {
        "x_train": x_tr,
        "y_train": y_tr,
        "x_test": x_te,
        "y_test": y_te,
        "src_train": train_idx,
        "src_test": test_idx,
    }
