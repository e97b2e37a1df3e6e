"""dSprites-like factor images drawn procedurally, and disentanglement scores against them.

Built for xfactors ("XFACTORS: Disentangled Information Bottleneck via Contrastive
Supervision", anonymous ICML 2026 submission, no arXiv id): its miniature replaces dSprites
(Matthey et al. 2017) by an exhaustive grid of binary images whose generating factors are known:
shape {square, ellipse, triangle} × scale × rotation × position x × position y.

* :func:`dsprites_like` — every combination of the factor values, rendered by a numpy rasteriser
  (pixel centres inside the shape), with the integer factor codes;
* :func:`factorvae_score` — Kim & Mnih (2018): majority-vote classifier from the least-variant
  normalised code dimension (with one factor fixed) to that factor;
* :func:`dci` / :func:`dci_from_importance` — Eastwood & Williams (2018): disentanglement,
  completeness and informativeness from an importance matrix (Lasso or gradient boosting);
* :func:`mig` — Chen et al. (2018): mutual information gap over discretised codes.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

SHAPES = ("square", "ellipse", "triangle")
FACTOR_NAMES = ("shape", "scale", "rotation", "pos_x", "pos_y")


@dataclass(frozen=True)
class FactorImages:
    """Images (N, size, size) in {0, 1} (float32) with their factor codes (N, K) (int64):
    ``factors[n, k]`` is the index of image n's value of factor ``names[k]`` among
    ``sizes[k]`` values."""

    images: np.ndarray
    factors: np.ndarray
    sizes: tuple[int, ...]
    names: tuple[str, ...]


def render(shape: str, scale: float, angle: float, cx: float, cy: float, size: int) -> np.ndarray:
    """One binary image (size, size): pixel (row i, col j) is on when its centre
    (x = j + ½, y = i + ½) lies in the shape of half-extent ``scale`` (pixels), rotated by
    ``angle`` (radians) about its centre (cx, cy). The ellipse has semi-axes scale and
    0.6·scale; the triangle is equilateral with circumradius scale."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; allowed: {', '.join(SHAPES)}")
    if size < 4 or scale <= 0:
        raise ValueError(f"need size >= 4 and scale > 0, got {size}, {scale}")
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    dx, dy = xs - cx, ys - cy
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy  # coordinates in the shape's own frame
    if shape == "square":
        on = (np.abs(u) <= scale) & (np.abs(v) <= scale)
    elif shape == "ellipse":
        on = (u / scale) ** 2 + (v / (0.6 * scale)) ** 2 <= 1.0
    else:
        on = np.ones_like(u, dtype=bool)
        for k in range(3):  # three half-planes, outward normals at 90° + 120°·k
            a = math.pi / 2 + 2 * math.pi * k / 3
            on &= u * math.cos(a) + v * math.sin(a) <= scale / 2
        # circumradius scale: the inradius is scale / 2
    return on.astype(np.float32)


def dsprites_like(
    size: int = 32, n_scale: int = 4, n_rotation: int = 8, n_pos: int = 8
) -> FactorImages:
    """Every combination of shape (3) × scale × rotation × pos_x × pos_y (the §6 grid: 3 × 4 ×
    8 × 8 × 8 = 6144 images at 32 × 32). Scales run from 0.12 to 0.24 of the image; rotations
    over [0, 2π/3) (a full period of the triangle; the square repeats after π/2); positions
    keep every shape whole inside the image."""
    if min(n_scale, n_rotation, n_pos) < 1:
        raise ValueError(f"need >= 1 value per factor, got {n_scale}, {n_rotation}, {n_pos}")
    scales = np.linspace(0.12, 0.24, n_scale) * size
    angles = np.arange(n_rotation) * (2 * math.pi / 3) / n_rotation
    # the farthest a shape reaches from its centre: a square at angle θ reaches
    # scale·(|cos θ| + |sin θ|); ellipse and triangle stay within scale
    reach = max(max(abs(math.cos(a)) + abs(math.sin(a)) for a in angles), 1.0)
    margin = reach * scales.max() + 0.5
    pos = np.linspace(margin, size - margin, n_pos)
    sizes = (len(SHAPES), n_scale, n_rotation, n_pos, n_pos)
    codes = np.array(list(itertools.product(*(range(n) for n in sizes))), dtype=np.int64)
    images = np.stack(
        [
            render(SHAPES[sh], scales[sc], angles[ro], pos[px], pos[py], size)
            for sh, sc, ro, px, py in codes
        ]
    )
    return FactorImages(images, codes, sizes, FACTOR_NAMES)


def factorvae_score(
    codes: np.ndarray,
    factors: np.ndarray,
    *,
    n_train: int,
    n_eval: int,
    batch: int,
    seed: int,
    prune: float = 0.05,
) -> float:
    """The FactorVAE disentanglement score (Kim & Mnih 2018) on codes of a factor grid.

    Each vote: pick a factor k and one of its values at random, take ``batch`` items with that
    value, divide their codes by the codes' global standard deviation, and vote (argmin of the
    per-dimension variance, k). Dimensions whose global std is below ``prune`` × the largest
    (collapsed) are never chosen. A majority-vote classifier (dimension -> its most frequent
    factor) is fitted on ``n_train`` votes and scored on ``n_eval`` others."""
    codes, factors = np.asarray(codes, np.float64), np.asarray(factors)
    _check_pair(codes, factors)
    std = codes.std(axis=0)
    if not std.max() > 0:
        raise ValueError("factorvae_score: every code dimension is constant")
    active = std >= prune * std.max()
    scaled = codes / np.where(std > 0, std, 1.0)
    rng = np.random.default_rng(seed)
    n_dims, n_factors = codes.shape[1], factors.shape[1]
    values = [np.unique(factors[:, k]) for k in range(n_factors)]

    def votes(n: int) -> np.ndarray:
        out = np.zeros((n_dims, n_factors), dtype=np.int64)
        for _ in range(n):
            k = int(rng.integers(n_factors))
            pool = np.flatnonzero(factors[:, k] == rng.choice(values[k]))
            pick = rng.choice(pool, size=batch, replace=len(pool) < batch)
            var = scaled[pick].var(axis=0)
            var[~active] = np.inf
            out[int(np.argmin(var)), k] += 1
        return out

    train, test = votes(n_train), votes(n_eval)
    return float(test[np.arange(n_dims), train.argmax(axis=1)].sum() / n_eval)


def dci_from_importance(importance: np.ndarray) -> tuple[float, float]:
    """(disentanglement, completeness) of a non-negative importance matrix R (codes × factors):
    D = Σ_i ρ_i (1 − H_K(P_i·)), ρ_i = Σ_j R_ij / Σ R; C = mean_j (1 − H_D(P_·j)), entropies
    in bases K (factors) and D (codes)."""
    r = np.asarray(importance, np.float64)
    if r.ndim != 2 or (r < 0).any() or not r.sum() > 0:
        raise ValueError(f"importance must be a non-negative (codes x factors) matrix, got {r}")
    n_codes, n_factors = r.shape

    def one_minus_entropy(p: np.ndarray, base: int) -> np.ndarray:
        """1 − H_base of each row normalised; a zero row (nothing explains it) counts as
        uniform, i.e. 0."""
        if base == 1:
            return np.ones(p.shape[0])
        total = p.sum(1, keepdims=True)
        p = np.where(total > 0, p / np.where(total > 0, total, 1.0), 1.0 / p.shape[1])
        logs = np.log(np.where(p > 0, p, 1.0)) / math.log(base)
        return 1.0 + (p * logs).sum(1)

    rho = r.sum(1) / r.sum()
    d = float((rho * one_minus_entropy(r, n_factors)).sum())
    c = float(one_minus_entropy(r.T, n_codes).mean())
    return d, c


def dci(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    *,
    model: str = "lasso",
    seed: int = 0,
) -> tuple[float, float, float, np.ndarray]:
    """(D, C, I, R): Eastwood & Williams (2018). Per factor, a predictor from the (train-
    standardised) codes: ``lasso`` — L1 logistic regression, importances |coef| summed over
    classes; ``gbt`` — gradient-boosted trees, their feature importances. I is the mean test
    accuracy."""
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    _check_pair(codes_train, factors_train)
    _check_pair(codes_test, factors_test)
    if model not in ("lasso", "gbt"):
        raise ValueError(f"unknown DCI model {model!r}; allowed: lasso, gbt")
    mean, std = codes_train.mean(0), codes_train.std(0)
    std = np.where(std > 0, std, 1.0)
    xtr, xte = (codes_train - mean) / std, (codes_test - mean) / std
    importance = np.zeros((codes_train.shape[1], factors_train.shape[1]))
    accs = []
    for k in range(factors_train.shape[1]):
        ytr, yte = factors_train[:, k], factors_test[:, k]
        if model == "lasso":
            clf = LogisticRegression(l1_ratio=1.0, C=1.0, solver="saga", max_iter=500, tol=1e-3)
            clf.fit(xtr, ytr)
            importance[:, k] = np.abs(clf.coef_).sum(0)
        else:
            clf = GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=seed)
            clf.fit(xtr, ytr)
            importance[:, k] = clf.feature_importances_
        accs.append(float((clf.predict(xte) == yte).mean()))
    d, c = dci_from_importance(importance)
    return d, c, float(np.mean(accs)), importance


def discrete_mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """I(a; b) in nats of two integer label vectors (plug-in estimate)."""
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    joint = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(joint, (ai, bi), 1.0)
    joint /= joint.sum()
    outer = joint.sum(1, keepdims=True) @ joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / outer[nz])).sum())


def mig(codes: np.ndarray, factors: np.ndarray, n_bins: int = 20) -> float:
    """Mutual information gap (Chen et al. 2018): codes discretised into ``n_bins`` equal-width
    bins per dimension; per factor k, (largest − second largest I(c_i; v_k)) / H(v_k),
    averaged over factors (needs >= 2 code dimensions)."""
    codes = np.asarray(codes, np.float64)
    _check_pair(codes, factors)
    if codes.shape[1] < 2 or n_bins < 2:
        raise ValueError(f"mig needs >= 2 code dimensions and bins, got {codes.shape}, {n_bins}")
    binned = np.stack(
        [np.digitize(c, np.histogram_bin_edges(c, n_bins)[1:-1]) for c in codes.T], axis=1
    )
    gaps = []
    for k in range(factors.shape[1]):
        h = discrete_mutual_information(factors[:, k], factors[:, k])
        if h == 0:
            raise ValueError(f"mig: factor {k} takes a single value")
        mi = np.sort([discrete_mutual_information(b, factors[:, k]) for b in binned.T])[::-1]
        gaps.append((mi[0] - mi[1]) / h)
    return float(np.mean(gaps))


def _check_pair(codes: np.ndarray, factors: np.ndarray) -> None:
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors) or not len(codes):
        raise ValueError(
            f"need codes (N, D) and factors (N, K) with one N >= 1, got {codes.shape} and "
            f"{factors.shape}"
        )
    if not np.isfinite(codes).all():
        raise ValueError("codes are not finite")
