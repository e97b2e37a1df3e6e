"""The maths of shapesplat (arXiv 2408.10906) around the toolkit's splats and Gaussian-MAE:
the miniature's objects, the centroid-vs-uniform distribution check (claim 1), the arms'
inputs, feature normalisation and the segmentation score. Pure and I/O-free."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from subspacelab.shapes import clouds, splats

# arm -> (input, pooling, grouping space); "xyz" inputs are 3 columns, "all" are 14
ARMS: dict[str, tuple[str, str, str]] = {
    "uniform": ("uniform", "max", "xyz"),  # Point-MAE on uniform surface points
    "centroid": ("centroid", "max", "xyz"),  # Gaussian-MAE E(xyz): splat centres only
    "all_xyz": ("all", "max", "xyz"),  # every attribute, grouped in xyz
    "all_feat": ("all", "splats", "feature"),  # the proposal: feature grouping + splats pooling
}


@dataclass
class Objects:
    """Surface samples (n, P, 3) in the unit ball, their global part ids (n, P) and colours
    (n, P, 3), and the objects' classes (n,)."""

    points: np.ndarray
    parts: np.ndarray
    colours: np.ndarray
    labels: np.ndarray


def part_offsets(shapes: list[str]) -> list[list[int]]:
    """Global part ids of each class (the classes' parts numbered one after another)."""
    out, start = [], 0
    for s in shapes:
        out.append(list(range(start, start + len(splats.PARTS[s]))))
        start += len(splats.PARTS[s])
    return out


def make_objects(
    shapes: list[str], per_class: int, points: int, jitter: float, rng: np.random.Generator
) -> Objects:
    """``per_class`` objects of each primitive: random dimensions and rotation, centred and
    scaled into the unit ball, jittered; a uniformly random colour per part of each object."""
    offsets = part_offsets(shapes)
    pts, parts, cols, labels = [], [], [], []
    for label, name in enumerate(shapes):
        for _ in range(per_class):
            p, part = splats.labelled(name, points, rng)
            p = p @ clouds.random_rotation(rng).T
            p = p / np.linalg.norm(p, axis=1).max()
            pts.append(p + jitter * rng.standard_normal(p.shape))
            palette = rng.uniform(0, 1, (len(splats.PARTS[name]), 3))
            cols.append(palette[part])
            parts.append(np.asarray(offsets[label])[part])
            labels.append(label)
    return Objects(np.asarray(pts), np.asarray(parts), np.asarray(cols), np.asarray(labels))


@dataclass
class SplatSet:
    """The inputs of every arm for one split: splat features (n, K, 14) as
    :meth:`~subspacelab.shapes.splats.Splats.features`, their part ids (n, K), ``k`` uniform
    surface points (n, K, 3) with their part ids, and the classes."""

    features: np.ndarray
    parts: np.ndarray
    uniform: np.ndarray
    uniform_parts: np.ndarray
    labels: np.ndarray


def splat_objects(
    obj: Objects, components: int, em_iters: int, n_parts: int, seed: int
) -> SplatSet:
    """Fit the mixtures (the miniature's splats), label each Gaussian by its points' majority
    part and draw ``components`` uniform points of each object (without replacement)."""
    mix = splats.fit_gmm(obj.points, components, em_iters, seed)
    sp = splats.mixture_to_splats(mix, obj.colours)
    rng = np.random.default_rng(seed)
    pick = np.stack(
        [rng.choice(obj.points.shape[1], components, replace=False) for _ in obj.points]
    )
    return SplatSet(
        features=sp.features(),
        parts=splats.component_labels(mix.resp, obj.parts, n_parts),
        uniform=np.take_along_axis(obj.points, pick[..., None], 1),
        uniform_parts=np.take_along_axis(obj.parts, pick, 1),
        labels=obj.labels,
    )


def nn_distances(clouds_: np.ndarray) -> np.ndarray:
    """Every point's distance to its nearest other point in its own cloud, all clouds
    (n, K, 3) pooled -> (n·K,)."""
    d = np.linalg.norm(clouds_[:, :, None] - clouds_[:, None], axis=-1)
    d[:, np.arange(d.shape[1]), np.arange(d.shape[1])] = np.inf
    return d.min(-1).ravel()


def resample(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` of each cloud's points (n, P, 3), drawn without replacement."""
    pick = np.stack([rng.choice(points.shape[1], k, replace=False) for _ in points])
    return np.take_along_axis(points, pick[..., None], 1)


def distribution_check(
    centroids: np.ndarray, points: np.ndarray, rng: np.random.Generator
) -> dict[str, float]:
    """Claim 1's test: two-sample KS between the 1-NN distances of the splat centroids
    (n, K, 3) and of K uniform surface samples of the same objects, and the control, KS
    between two independent uniform draws of K (the same test where no difference exists)."""
    k = centroids.shape[1]
    a, b = nn_distances(resample(points, k, rng)), nn_distances(resample(points, k, rng))
    c = nn_distances(centroids)
    test, control = stats.ks_2samp(c, a), stats.ks_2samp(b, a)
    return {
        "dist/centroid_vs_uniform/ks_d": float(test.statistic),
        "dist/centroid_vs_uniform/ks_p": float(test.pvalue),
        "dist/uniform_vs_uniform/ks_d": float(control.statistic),
        "dist/uniform_vs_uniform/ks_p": float(control.pvalue),
        "dist/centroid/nn_mean": float(c.mean()),
        "dist/uniform/nn_mean": float(a.mean()),
        "dist/centroid/nn_cv": float(c.std() / c.mean()),
        "dist/uniform/nn_cv": float(a.std() / a.mean()),
    }


def normalisers(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column shift and scale of (n, K, C) features: xyz untouched; every attribute column
    standardised to zero mean and the coordinates' pooled standard deviation, so that no
    attribute outweighs position in the feature-space distances by its units alone."""
    flat = train.reshape(-1, train.shape[-1]).astype(np.float64)
    shift, scale = flat.mean(0), flat.std(0)
    shift[:3], scale[:3] = 0.0, 1.0
    scale[3:] = np.where(scale[3:] > 0, scale[3:], 1.0) / flat[:, :3].std()
    return shift, scale


def arm_inputs(s: SplatSet, arm: str, shift: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The (n, K, C) float32 input of ``arm`` (see ``ARMS``)."""
    source = ARMS[arm][0]
    if source == "uniform":
        return s.uniform.astype(np.float32)
    if source == "centroid":
        return s.features[..., :3].astype(np.float32)
    return ((s.features - shift) / scale).astype(np.float32)


def arm_parts(s: SplatSet, arm: str) -> np.ndarray:
    """The per-point part ids ``arm`` segments."""
    return s.uniform_parts if ARMS[arm][0] == "uniform" else s.parts


def instance_miou(
    logits: np.ndarray, parts: np.ndarray, labels: np.ndarray, class_parts: list[list[int]]
) -> float:
    """ShapeNet-Part's instance mIoU: each object's prediction restricted to its class's parts,
    IoU per part (1 where the part is absent from both), averaged per object, then over
    objects."""
    scores = []
    for lg, gt, y in zip(logits, parts, labels, strict=True):
        own = np.asarray(class_parts[int(y)])
        pred = own[lg[:, own].argmax(1)]
        ious = []
        for p in own:
            union = np.sum((pred == p) | (gt == p))
            ious.append(1.0 if union == 0 else np.sum((pred == p) & (gt == p)) / union)
        scores.append(float(np.mean(ious)))
    return float(np.mean(scores))
