"""Procedural "texture-AD" generator: the offline miniature of MVTec-AD for SubspaceAD.

Lendering, Akdag & Bondarev, "SubspaceAD: Training-Free Few-Shot Anomaly Detection via Subspace
Modeling", CVPR 2026, arXiv:2602.23013 (spec section 6).

Five texture categories, each a random process (every call draws fresh nuisance parameters, so
no two good images are identical), and four defect types, each returning its ground-truth mask:

* ``gratings`` — vertical sinusoidal stripes (oriented);
* ``checker`` — an axis-aligned checker grid (oriented);
* ``dots`` — randomly placed discs (isotropic);
* ``fabric`` — band-passed isotropic noise (isotropic);
* ``wood`` — rings around a centre far left or right of the image (oriented).

Defects: ``scratch`` (a thin bright or dark line), ``stain`` (a colour ellipse), ``hole`` (a dark
disc) and ``rotate`` (a square patch whose texture is rotated by 35-55°). A rotated patch of an
isotropic texture is statistically a normal patch, so which defects a category gets is set in
params.yaml. Pure numpy/scipy, no IO; everything is driven by a ``numpy.random.Generator``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

TEXTURE_CATEGORIES = ("gratings", "checker", "dots", "fabric", "wood")
DEFECT_TYPES = ("scratch", "stain", "hole", "rotate")

# Fixed per-category palettes (RGB in [0, 1]): the "product" being inspected.
_PALETTE: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "gratings": ((0.20, 0.30, 0.55), (0.75, 0.80, 0.90)),
    "checker": ((0.15, 0.15, 0.15), (0.80, 0.78, 0.70)),
    "dots": ((0.85, 0.85, 0.80), (0.30, 0.45, 0.30)),
    "fabric": ((0.55, 0.35, 0.30), (0.80, 0.65, 0.55)),
    "wood": ((0.45, 0.28, 0.12), (0.75, 0.55, 0.30)),
}


@dataclass(frozen=True)
class TextureSet:
    """One category of a generated dataset (the MVTec split of one category).

    Attributes:
        train: ``(k, H, W, 3)`` uint8 good training images.
        test: ``(n, H, W, 3)`` uint8 test images, good ones first.
        masks: ``(n, H, W)`` uint8 ground truth (1 = defect).
        labels: ``(n,)`` int64, 1 for defective images.
        defect: ``(n,)`` int64 index into :data:`DEFECT_TYPES`, -1 for good images.
    """

    train: np.ndarray
    test: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    defect: np.ndarray


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    return yy, xx


def _colourise(t: np.ndarray, category: str, rng: np.random.Generator) -> np.ndarray:
    """Map a [0, 1] intensity field to RGB between the category's two colours, plus noise."""
    lo, hi = (np.asarray(c) for c in _PALETTE[category])
    gain = 1.0 + rng.normal(0.0, 0.03)  # mild illumination change per image
    img = (lo + (hi - lo) * t[..., None]) * gain
    img = img + rng.normal(0.0, 0.02, size=img.shape)
    return np.clip(img, 0.0, 1.0)


def _gratings(size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = _grid(size)
    theta = np.deg2rad(rng.normal(0.0, 2.0))
    period = rng.uniform(7.5, 8.5)
    u = xx * np.cos(theta) + yy * np.sin(theta)
    return 0.5 + 0.5 * np.sin(2 * np.pi * u / period + rng.uniform(0, 2 * np.pi))


def _checker(size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = _grid(size)
    cell = rng.uniform(11.0, 13.0)
    oy, ox = rng.uniform(0, 2 * cell, size=2)
    sq = (np.floor((yy + oy) / cell) + np.floor((xx + ox) / cell)) % 2
    return ndimage.gaussian_filter(sq, 0.7)


def _dots(size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = _grid(size)
    n = rng.poisson(size * size / 110.0)
    field = np.zeros((size, size))
    for cy, cx, r in zip(
        rng.uniform(-3, size + 3, n),
        rng.uniform(-3, size + 3, n),
        rng.uniform(1.8, 2.8, n),
        strict=True,
    ):
        field = np.maximum(field, np.clip(r + 0.5 - np.hypot(yy - cy, xx - cx), 0.0, 1.0))
    return 1.0 - field


def _fabric(size: int, rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(size=(size, size))
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij"))
    band = np.exp(-0.5 * ((f - 0.12) / 0.03) ** 2)
    t = np.real(np.fft.ifft2(np.fft.fft2(noise) * band))
    return np.clip(0.5 + t / (4 * t.std() + 1e-12), 0.0, 1.0)


def _wood(size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = _grid(size)
    side = rng.choice([-1.0, 1.0])
    cx = size / 2 + side * rng.uniform(70, 110)
    cy = size / 2 + rng.normal(0, 10)
    warp = ndimage.gaussian_filter(rng.normal(size=(size, size)), 6.0)
    warp = warp / (warp.std() + 1e-12)
    r = np.hypot(yy - cy, xx - cx) + 1.2 * warp
    period = rng.uniform(6.5, 7.5)
    return 0.5 + 0.5 * np.sin(2 * np.pi * r / period + rng.uniform(0, 2 * np.pi))


_GENERATORS: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "gratings": _gratings,
    "checker": _checker,
    "dots": _dots,
    "fabric": _fabric,
    "wood": _wood,
}


def good_image(category: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One defect-free float RGB image ``(size, size, 3)`` in [0, 1] of a texture category."""
    if category not in _GENERATORS:
        raise ValueError(f"unknown texture category {category!r}; known: {TEXTURE_CATEGORIES}")
    return _colourise(_GENERATORS[category](size, rng), category, rng)


def _centre(size: int, margin: float, rng: np.random.Generator) -> tuple[float, float]:
    """A defect centre at least ``margin`` from the border (less on images too small for it)."""
    margin = min(margin, size / 2 - 1)
    cy, cx = rng.uniform(margin, size - margin, size=2)
    return float(cy), float(cx)


def _scratch(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    size = img.shape[0]
    yy, xx = _grid(size)
    length, width = rng.uniform(25, 45), rng.uniform(1.5, 2.5)
    angle = rng.uniform(0, np.pi)
    cy, cx = _centre(size, length / 2 + 4, rng)
    dy, dx = np.sin(angle), np.cos(angle)
    along = (yy - cy) * dy + (xx - cx) * dx
    across = np.abs(-(yy - cy) * dx + (xx - cx) * dy)
    alpha = np.clip(width / 2 + 0.5 - across, 0.0, 1.0) * (np.abs(along) <= length / 2)
    colour = np.full(3, 1.0 if img.mean() < 0.5 else 0.0)
    out = img * (1 - 0.85 * alpha[..., None]) + 0.85 * alpha[..., None] * colour
    return out, alpha > 0.5


def _ellipse(size: int, rng: np.random.Generator, a: tuple[float, float]) -> np.ndarray:
    yy, xx = _grid(size)
    ax, ay = rng.uniform(*a), rng.uniform(*a)
    cy, cx = _centre(size, max(ax, ay) + 3, rng)
    phi = rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(phi) + (yy - cy) * np.sin(phi)
    v = -(xx - cx) * np.sin(phi) + (yy - cy) * np.cos(phi)
    return (u / ax) ** 2 + (v / ay) ** 2


def _stain(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    rho = _ellipse(img.shape[0], rng, (6.0, 13.0))
    alpha = np.clip((1.0 - rho) * 4.0, 0.0, 1.0) * rng.uniform(0.5, 0.7)
    colour = rng.uniform(0.0, 1.0, size=3)
    colour[rng.integers(3)] = rng.choice([0.05, 0.95])  # a saturated, off-palette hue
    out = img * (1 - alpha[..., None]) + alpha[..., None] * colour
    return out, rho <= 1.0


def _hole(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    size = img.shape[0]
    yy, xx = _grid(size)
    r = rng.uniform(4.0, 7.5)
    cy, cx = _centre(size, r + 3, rng)
    dist = np.hypot(yy - cy, xx - cx)
    alpha = np.clip(r + 0.5 - dist, 0.0, 1.0)
    out = img * (1 - alpha[..., None]) + alpha[..., None] * 0.04
    return out, dist <= r


def _rotate(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    size = img.shape[0]
    half = int(rng.integers(10, 15))
    cy, cx = (round(c) for c in _centre(size, half + 1, rng))
    angle = rng.uniform(35, 55) * rng.choice([-1.0, 1.0])
    rotated = rotate_image(img, angle, centre=(cy, cx))
    mask = np.zeros((size, size), dtype=bool)
    mask[cy - half : cy + half, cx - half : cx + half] = True
    out = np.where(mask[..., None], rotated, img)
    return out, mask


_DEFECTS: dict[str, Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]] = {
    "scratch": _scratch,
    "stain": _stain,
    "hole": _hole,
    "rotate": _rotate,
}


def add_defect(
    img: np.ndarray, defect: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Apply one defect to a float RGB image; returns the image and its boolean GT mask."""
    if defect not in _DEFECTS:
        raise ValueError(f"unknown defect {defect!r}; known: {DEFECT_TYPES}")
    out, mask = _DEFECTS[defect](img, rng)
    return np.clip(out, 0.0, 1.0), mask


def rotate_image(
    img: np.ndarray,
    angle: float,
    centre: tuple[float, float] | None = None,
    fill: str = "mirror",
) -> np.ndarray:
    """Rotate an ``(H, W, C)`` image by ``angle`` degrees about ``centre`` (default: middle).

    Bilinear. ``fill="mirror"`` reflects the texture into the corners a rotation uncovers (a
    texture has no background; black corners would teach the normal model that dark blobs, i.e.
    holes, are normal); ``fill="constant"`` paints them black, as torchvision's RandomRotation in
    the official code does.
    """
    if fill not in ("mirror", "constant"):
        raise ValueError(f"fill must be 'mirror' or 'constant', got {fill!r}")
    h, w = img.shape[:2]
    cy, cx = centre if centre is not None else ((h - 1) / 2, (w - 1) / 2)
    t = np.deg2rad(angle)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    offset = np.array([cy, cx]) - rot @ np.array([cy, cx])
    return np.stack(
        [
            ndimage.affine_transform(img[..., c], rot, offset=offset, order=1, mode=fill)
            for c in range(img.shape[2])
        ],
        axis=-1,
    )


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float [0, 1] image to uint8."""
    return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)


def make_category(
    category: str,
    defects: Sequence[str],
    *,
    size: int,
    k_shot: int,
    n_good: int,
    n_defect: int,
    rng: np.random.Generator,
) -> TextureSet:
    """Generate one category: ``k_shot`` train images, ``n_good`` + ``n_defect`` test images.

    Defect types cycle through ``defects`` so each appears equally often.
    """
    if not defects:
        raise ValueError(f"category {category!r}: at least one defect type is needed")
    train = np.stack([to_uint8(good_image(category, size, rng)) for _ in range(k_shot)])
    imgs, masks, kinds = [], [], []
    for i in range(n_good + n_defect):
        img = good_image(category, size, rng)
        mask = np.zeros((size, size), dtype=bool)
        kind = -1
        if i >= n_good:
            name = defects[(i - n_good) % len(defects)]
            img, mask = add_defect(img, name, rng)
            kind = DEFECT_TYPES.index(name)
        imgs.append(to_uint8(img))
        masks.append(mask.astype(np.uint8))
        kinds.append(kind)
    labels = np.array([0] * n_good + [1] * n_defect, dtype=np.int64)
    return TextureSet(train, np.stack(imgs), np.stack(masks), labels, np.array(kinds))


def make_dataset(
    defects: Mapping[str, Sequence[str]],
    *,
    size: int,
    k_shot: int,
    n_good: int,
    n_defect: int,
    seed: int,
) -> dict[str, TextureSet]:
    """One texture-AD dataset (one per generator seed): category -> :class:`TextureSet`.

    Each category draws from its own child stream of ``seed``, so adding or removing a category
    does not change the others.
    """
    out = {}
    for category, kinds in defects.items():
        idx = TEXTURE_CATEGORIES.index(category) if category in TEXTURE_CATEGORIES else -1
        if idx < 0:
            raise ValueError(f"unknown texture category {category!r}; known: {TEXTURE_CATEGORIES}")
        rng = np.random.default_rng([seed, idx])
        out[category] = make_category(
            category, kinds, size=size, k_shot=k_shot, n_good=n_good, n_defect=n_defect, rng=rng
        )
    return out
