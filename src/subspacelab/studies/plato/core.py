"""plato (Hadgi et al., CVPR 2025, arXiv:2503.05283): the miniature's world, its 3D encoder
and the subspace alignment; tested in tests/studies/test_plato.py.

* World: procedural point clouds of six primitives with a size (small/large, a continuous
  log-uniform scale within each), an aspect (tall/flat/regular), a random z-rotation and
  Gaussian jitter, each with a templated caption that names class, size and aspect with
  paraphrase variety (never the rotation or the exact scale).
* 3D encoder: a tiny PointNet (shared MLP 3→64→128, max-pool) trained as a Chamfer
  autoencoder, without text.
* Alignment (§3 of the spec): centre with train means, PCA each side to ``pca_dim``, CCA in its
  SVD form (``subspacelab.representation.alignment``), top-k canonical pairs compared with the
  identity map and cosine; full-space baselines are a ridge affine map and orthogonal
  Procrustes on the raw (centred) features; the unsupervised ablation is a ridge affine map
  between the top-k principal subspaces.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from subspacelab.representation import alignment as al

CLASSES = ("box", "sphere", "cylinder", "cone", "torus", "pyramid")
SIZES = ("small", "large")
ASPECTS = ("tall", "flat", "regular")
# (x, y, z) stretch of each aspect before the footprint and the overall scale
ASPECT_SCALE = {"tall": (0.7, 0.7, 1.5), "flat": (1.3, 1.3, 0.5), "regular": (1.0, 1.0, 1.0)}
CLASS_WORDS = {
    "box": ("box", "cuboid", "crate"),
    "sphere": ("sphere", "ball", "orb"),
    "cylinder": ("cylinder", "tube", "drum"),
    "cone": ("cone", "conical shape", "funnel shape"),
    "torus": ("torus", "ring", "donut"),
    "pyramid": ("pyramid", "square pyramid", "pointed block"),
}
SIZE_WORDS = {"small": ("small", "tiny", "little"), "large": ("large", "big", "huge")}
ASPECT_WORDS = {
    "tall": ("tall", "elongated", "high"),
    "flat": ("flat", "squat", "low"),
    "regular": ("regular", "evenly proportioned", "plain"),
}
LABELS = ("label", "size", "aspect", "scale", "theta")  # what the data step saves per shape
TEMPLATES = (
    "a {size} {aspect} {cls}",
    "{size} {aspect} {cls}",
    "a {aspect} {cls} that is {size}",
    "3d model of a {size} {aspect} {cls}",
    "a {cls}, {size} and {aspect}",
    "this is a {size}, {aspect} {cls}",
)


def _disc(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` uniform points of the unit disc, (n, 2)."""
    r, a = np.sqrt(rng.random(n)), rng.uniform(0, 2 * np.pi, n)
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


def _choose(
    parts: list[tuple[float, Callable[[int], np.ndarray]]], n: int, rng: np.random.Generator
) -> np.ndarray:
    """Area-weighted sampling: ``n`` points split over surface parts ``(area, sampler)``."""
    areas = np.array([a for a, _ in parts])
    counts = rng.multinomial(n, areas / areas.sum())
    pts = np.concatenate([f(c) for (_, f), c in zip(parts, counts, strict=True) if c])
    return pts[rng.permutation(n)]


def canonical_surface(cls: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniform on the surface of the canonical primitive (within [-1, 1]³)."""

    def z_at(z: float) -> Callable[[np.ndarray], np.ndarray]:
        return lambda xy: np.column_stack([xy, np.full(len(xy), z)])

    if cls == "box":

        def face(c: int) -> np.ndarray:
            p = rng.uniform(-1, 1, (c, 3))
            axis, side = rng.integers(0, 3, c), rng.choice([-1.0, 1.0], c)
            p[np.arange(c), axis] = side
            return p

        return face(n)
    if cls == "sphere":
        v = rng.standard_normal((n, 3))
        return v / np.linalg.norm(v, axis=1, keepdims=True)
    if cls == "cylinder":

        def side(c: int) -> np.ndarray:
            a = rng.uniform(0, 2 * np.pi, c)
            return np.column_stack([np.cos(a), np.sin(a), rng.uniform(-1, 1, c)])

        def caps(c: int) -> np.ndarray:
            return np.column_stack([_disc(c, rng), rng.choice([-1.0, 1.0], c)])

        return _choose([(4 * np.pi, side), (2 * np.pi, caps)], n, rng)
    if cls == "cone":

        def lateral(c: int) -> np.ndarray:
            s, a = np.sqrt(rng.random(c)), rng.uniform(0, 2 * np.pi, c)  # s: 0 apex, 1 base
            return np.column_stack([s * np.cos(a), s * np.sin(a), 1 - 2 * s])

        return _choose(
            [(np.pi * np.sqrt(5), lateral), (np.pi, lambda c: z_at(-1.0)(_disc(c, rng)))], n, rng
        )
    if cls == "torus":
        big, small = 0.7, 0.3
        out = np.empty((0, 3))
        while len(out) < n:  # rejection on the area element (R + r cos v)
            u, v = rng.uniform(0, 2 * np.pi, (2, 2 * n))
            keep = rng.random(2 * n) < (big + small * np.cos(v)) / (big + small)
            u, v = u[keep], v[keep]
            ring = big + small * np.cos(v)
            pts = np.column_stack([ring * np.cos(u), ring * np.sin(u), small * np.sin(v)])
            out = np.concatenate([out, pts / (big + small)])
        return out[:n]
    if cls == "pyramid":
        corners = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=np.float64)

        def faces(c: int) -> np.ndarray:
            f = rng.integers(0, 4, c)
            a, b = corners[f], corners[(f + 1) % 4]
            r1, r2 = rng.random(c), rng.random(c)
            flip = r1 + r2 > 1
            r1[flip], r2[flip] = 1 - r1[flip], 1 - r2[flip]
            base_a = np.column_stack([a, -np.ones(c)])
            base_b = np.column_stack([b, -np.ones(c)])
            apex = np.array([0.0, 0.0, 1.0])
            return base_a + r1[:, None] * (base_b - base_a) + r2[:, None] * (apex - base_a)

        base = lambda c: z_at(-1.0)(rng.uniform(-1, 1, (c, 2)))  # noqa: E731
        return _choose([(4 * np.sqrt(5), faces), (4.0, base)], n, rng)
    raise ValueError(f"unknown class {cls!r}; allowed: {', '.join(CLASSES)}")


@dataclass(frozen=True)
class Shapes:
    """A procedural dataset: points (n, p, 3) float32, class/size/aspect ids, the continuous
    scale and z-rotation θ, and one caption per shape."""

    points: np.ndarray
    label: np.ndarray
    size: np.ndarray
    aspect: np.ndarray
    scale: np.ndarray
    theta: np.ndarray
    captions: list[str]


def caption(cls: str, size: str, aspect: str, rng: np.random.Generator) -> str:
    """A templated caption naming class, size and aspect with random paraphrases."""
    pick = lambda words: words[rng.integers(len(words))]  # noqa: E731
    return pick(TEMPLATES).format(
        cls=pick(CLASS_WORDS[cls]), size=pick(SIZE_WORDS[size]), aspect=pick(ASPECT_WORDS[aspect])
    )


def make_shapes(
    n: int,
    n_points: int,
    small_scale: tuple[float, float],
    large_scale: tuple[float, float],
    footprint: float,
    jitter: float,
    rng: np.random.Generator,
) -> Shapes:
    """``n`` shapes with uniform class, size and aspect; x stretched by ``footprint`` (so the
    z-rotation is visible modulo π for every class), scaled, rotated about z, jittered."""
    label = rng.integers(0, len(CLASSES), n)
    size = rng.integers(0, len(SIZES), n)
    aspect = rng.integers(0, len(ASPECTS), n)
    spans = np.log(np.array([small_scale, large_scale]))
    scale = np.exp(rng.uniform(spans[size, 0], spans[size, 1]))
    theta = rng.uniform(0, 2 * np.pi, n)
    points = np.empty((n, n_points, 3), dtype=np.float32)
    captions = []
    for i in range(n):
        cls, sz, asp = CLASSES[label[i]], SIZES[size[i]], ASPECTS[aspect[i]]
        p = canonical_surface(cls, n_points, rng) * np.array(ASPECT_SCALE[asp])
        p = p * np.array([footprint, 1.0, 1.0]) * scale[i]
        c, s = np.cos(theta[i]), np.sin(theta[i])
        p = p @ np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
        points[i] = p + jitter * rng.standard_normal(p.shape)
        captions.append(caption(cls, sz, asp, rng))
    return Shapes(points, label, size, aspect, scale, theta, captions)


class PointAE(nn.Module):
    """Tiny PointNet encoder (shared MLP 3→hidden→dim, max-pool) and an MLP decoder
    (dim→decoder_hidden→n_points·3), trained with the Chamfer distance."""

    def __init__(self, hidden: int, dim: int, decoder_hidden: int, n_points: int) -> None:
        super().__init__()
        self.n_points = n_points
        # the shared per-point MLP (PointNet's 1×1 convolutions) as Linear layers on the last
        # axis: the same map, one matmul each
        self.mlp = nn.Sequential(nn.Linear(3, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.decoder = nn.Sequential(
            nn.Linear(dim, decoder_hidden), nn.ReLU(), nn.Linear(decoder_hidden, n_points * 3)
        )

    def encode(self, points: Tensor) -> Tensor:
        """(b, p, 3) points → (b, dim) max-pooled features (order-invariant)."""
        return self.mlp(points).max(dim=1).values

    def forward(self, points: Tensor) -> Tensor:
        """The reconstruction, (b, n_points, 3)."""
        return self.decoder(self.encode(points)).view(-1, self.n_points, 3)

    def loss(self, points: Tensor) -> Tensor:
        """Chamfer distance between the input and its reconstruction."""
        return chamfer(self(points), points)


def chamfer(a: Tensor, b: Tensor) -> Tensor:
    """Symmetric Chamfer distance: mean squared distance of each point to the nearest of the
    other cloud, both ways, averaged over the batch. (b, p, 3) and (b, q, 3).

    The nearest neighbours are found without gradient, then the matched squared distances are
    recomputed with it: the same value and gradient as a min over the distance matrix (ties
    aside), without back-propagating through the whole (p, q) matrix."""
    with torch.no_grad():  # ‖a‖² − 2ab (‖b‖² does not change a's nearest b) and vice versa
        near_b = torch.baddbmm(b.square().sum(-1).unsqueeze(1), a, b.transpose(1, 2), alpha=-2)
        near_a = torch.baddbmm(a.square().sum(-1).unsqueeze(1), b, a.transpose(1, 2), alpha=-2)
        near_b, near_a = near_b.argmin(dim=2), near_a.argmin(dim=2)

    def matched(src: Tensor, dst: Tensor, idx: Tensor) -> Tensor:
        return (src - dst.gather(1, idx.unsqueeze(-1).expand(-1, -1, 3))).square().sum(-1).mean()

    return matched(a, b, near_b) + matched(b, a, near_a)


@torch.no_grad()
def encode_points(model: PointAE, points: Tensor, batch: int = 512) -> np.ndarray:
    """Features (n, dim) of every cloud, float64."""
    model.eval()
    return torch.cat([model.encode(p) for p in points.split(batch)]).double().numpy()


# ------------------------------------------------------------------------- alignment


@dataclass(frozen=True)
class Reduced:
    """Train-centred features projected on their top principal directions."""

    mean: np.ndarray
    basis: np.ndarray

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return (z - self.mean) @ self.basis


def reduce(z_train: np.ndarray, dim: int) -> Reduced:
    """PCA to ``min(dim, d)`` directions, fitted on the train split only."""
    mean, basis = al.principal_directions(z_train, min(dim, z_train.shape[1], len(z_train)))
    return Reduced(mean, basis)


def pool_scores(fx: np.ndarray, ft: np.ndarray, pool: int) -> dict[str, float]:
    """Retrieval (top-1/top-5, 3D→text and text→3D; ``top1`` their mean) and Hungarian
    matching accuracy, averaged over consecutive disjoint pools of ``pool`` pairs (a remainder
    smaller than a pool is left out)."""
    rows: list[dict[str, float]] = []
    for start in range(0, len(fx) - pool + 1, pool):
        s = al.cosine_similarity(fx[start : start + pool], ft[start : start + pool])
        x2t, t2x = al.retrieval_recall(s, (1, 5)), al.retrieval_recall(s.T, (1, 5))
        rows.append(
            {
                "top1_x2t": x2t[1],
                "top5_x2t": x2t[5],
                "top1_t2x": t2x[1],
                "top5_t2x": t2x[5],
                "top1": (x2t[1] + t2x[1]) / 2,
                "match": al.matching_accuracy(s),
            }
        )
    if not rows:
        raise ValueError(f"no pool of {pool} pairs in {len(fx)} samples")
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


@dataclass(frozen=True)
class Split:
    """Paired 3D (x) and text (t) features of a fit split and an evaluation split."""

    x_fit: np.ndarray
    t_fit: np.ndarray
    x_eval: np.ndarray
    t_eval: np.ndarray


def full_affine(s: Split, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """Full-space baseline (a): ridge affine map from the centred 3D to the centred text space."""
    xm, tm = s.x_fit.mean(axis=0), s.t_fit.mean(axis=0)
    w, b = al.ridge_affine(s.x_fit - xm, s.t_fit - tm, ridge)
    return (s.x_eval - xm) @ w + b, s.t_eval - tm


def full_procrustes(s: Split) -> tuple[np.ndarray, np.ndarray]:
    """Full-space baseline (b): orthogonal Procrustes between the centred spaces, each scaled
    to unit Frobenius norm on the fit split (the map's scale does not change cosines)."""
    xm, tm = s.x_fit.mean(axis=0), s.t_fit.mean(axis=0)
    xc, tc = s.x_fit - xm, s.t_fit - tm
    w = al.procrustes(xc / np.linalg.norm(xc), tc / np.linalg.norm(tc))
    return (s.x_eval - xm) @ w, s.t_eval - tm


def cca_spaces(s: Split, pca_dim: int, ridge: float) -> tuple[al.CCA, Reduced, Reduced]:
    """The CCA (all pairs) between the PCA-reduced spaces of the fit split, and the reductions."""
    rx, rt = reduce(s.x_fit, pca_dim), reduce(s.t_fit, pca_dim)
    return al.cca(rx(s.x_fit), rt(s.t_fit), ridge=ridge), rx, rt


def cca_identity(
    s: Split, fit: al.CCA, rx: Reduced, rt: Reduced, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The top-k canonical variates of the evaluation split, compared by the identity map."""
    top = fit.top(k)
    return top.project_x(rx(s.x_eval)), top.project_t(rt(s.t_eval))


def cca_affine(
    s: Split, fit: al.CCA, rx: Reduced, rt: Reduced, k: int, ridge: float
) -> tuple[np.ndarray, np.ndarray]:
    """Alignment (a) inside the CCA subspace: a ridge affine map between the variates."""
    top = fit.top(k)
    w, b = al.ridge_affine(top.project_x(rx(s.x_fit)), top.project_t(rt(s.t_fit)), ridge)
    return top.project_x(rx(s.x_eval)) @ w + b, top.project_t(rt(s.t_eval))


def pca_affine(s: Split, k: int, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """The unsupervised-subspace ablation: top-k principal directions of each side, then a
    ridge affine map between them."""
    rx, rt = reduce(s.x_fit, k), reduce(s.t_fit, k)
    w, b = al.ridge_affine(rx(s.x_fit), rt(s.t_fit), ridge)
    return rx(s.x_eval) @ w + b, rt(s.t_eval)


def complement_basis(directions: np.ndarray) -> np.ndarray:
    """An orthonormal basis (d, d − k) of the orthogonal complement of span(directions)."""
    q, _ = np.linalg.qr(directions, mode="complete")
    return q[:, directions.shape[1] :]


def unimodal_dip(curve: list[float]) -> float:
    """How far a curve is from unimodal: the deepest point lying below the best values on both
    of its sides (0 for a curve that rises then falls)."""
    c = np.asarray(curve, dtype=np.float64)
    return max([0.0] + [min(c[:j].max(), c[j + 1 :].max()) - c[j] for j in range(1, len(c) - 1)])


def probe_scores(
    z_train: np.ndarray,
    z_test: np.ndarray,
    train: dict[str, np.ndarray],
    test: dict[str, np.ndarray],
    ridge: float,
) -> dict[str, float]:
    """Linear probes fitted on train features, scored on test: ``category`` (multinomial
    logistic regression, accuracy; L2 strength 1/``ridge``), ``size`` (ridge regression of the
    log scale, R²) and ``pose`` (ridge regression of (cos 2θ, sin 2θ), the z-rotation modulo
    the footprint's π symmetry, mean R²). Features are standardised with train statistics. A
    view with no feature (the complement of a subspace that fills the space) gets the
    intercept-only probes: the majority class, R² ≈ 0."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.metrics import r2_score
    from sklearn.preprocessing import StandardScaler

    if z_train.shape[1] == 0:
        z_train, z_test = np.zeros((len(z_train), 1)), np.zeros((len(z_test), 1))
    scaler = StandardScaler().fit(z_train)
    a, b = scaler.transform(z_train), scaler.transform(z_test)

    def pose(theta: np.ndarray) -> np.ndarray:
        return np.column_stack([np.cos(2 * theta), np.sin(2 * theta)])

    cat = LogisticRegression(C=1.0 / ridge, max_iter=2000).fit(a, train["label"])
    size = Ridge(alpha=ridge).fit(a, np.log(train["scale"]))
    rot = Ridge(alpha=ridge).fit(a, pose(train["theta"]))
    return {
        "category": float(np.mean(cat.predict(b) == test["label"])),
        "size": float(r2_score(np.log(test["scale"]), size.predict(b))),
        "pose": float(r2_score(pose(test["theta"]), rot.predict(b))),
    }
