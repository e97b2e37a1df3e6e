"""Gaussian splats from point clouds, for ShapeSplat's miniature (Ma et al., arXiv 2408.10906).

Real 3D Gaussian Splatting optimises Gaussians against rendered views; offline, a Gaussian
mixture fitted to an object's surface samples stands in for it (spec §6). This module holds:

* labelled procedural primitives: the five of :mod:`~subspacelab.shapes.clouds` with per-point
  part labels derived from their geometry, and three more (capsule, plane-slab, L-bracket);
* a batched, seeded EM for full-covariance Gaussian mixtures (float64 matmuls over many objects
  at once; the same updates as scikit-learn's ``GaussianMixture``, checked in the tests);
* the mixture -> splat conversion: centroid = mean, scale = sqrt of the covariance's
  eigenvalues, rotation = its eigenvectors as a canonical unit quaternion (w >= 0), opacity =
  mixture weight over the largest weight, colour = responsibility-weighted point colour;
* the 3DGS ``.ply`` field conventions (``f_dc`` = SH DC, ``opacity`` a logit, ``scale_*`` log
  scales, ``rot_*`` a (w, x, y, z) quaternion): :func:`decode_3dgs` / :func:`encode_3dgs`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from subspacelab.shapes import clouds
from subspacelab.shapes.pointmae import fps

SH_C0 = 0.28209479177387814  # the degree-0 real spherical harmonic: rgb = 0.5 + C0 · f_dc
PARTS: dict[str, tuple[str, ...]] = {
    "sphere": ("upper", "lower"),
    "box": ("x_faces", "y_faces", "z_faces"),
    "cylinder": ("side", "caps"),
    "cone": ("lateral", "base"),
    "torus": ("outer", "inner"),
    "capsule": ("side", "caps"),
    "plane_slab": ("faces", "rim"),
    "l_bracket": ("arm_a", "arm_b"),
}
FIELDS_3DGS = (
    "x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
    "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3",
)  # fmt: skip


# ---------------------------------------------------------------- labelled primitives


def capsule(
    n: int, rng: np.random.Generator, radius: float = 0.4, length: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points uniform on a capsule (a cylinder of ``length`` along z closed by two
    hemispheres of ``radius``) and their parts (0 side, 1 caps)."""
    side, caps = 2 * np.pi * radius * length, 4 * np.pi * radius**2
    on_cap = rng.uniform(0, side + caps, n) >= side
    theta = rng.uniform(0, 2 * np.pi, n)
    z = rng.uniform(-length / 2, length / 2, n)
    p = np.stack([radius * np.cos(theta), radius * np.sin(theta), z], 1)
    s = clouds.sphere(n, rng) * radius
    s[:, 2] += np.sign(s[:, 2]) * length / 2
    return np.where(on_cap[:, None], s, p), on_cap.astype(np.int64)


def plane_slab(
    n: int, rng: np.random.Generator, half: tuple[float, float, float] = (1.0, 0.7, 0.05)
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points on a thin box (``half[2]`` its half-thickness) and their parts (0 the two
    large faces, 1 the rim)."""
    p = clouds.box(n, rng, half)
    return p, (~np.isclose(np.abs(p[:, 2]), half[2])).astype(np.int64)


def l_bracket(
    n: int,
    rng: np.random.Generator,
    arms: tuple[float, float] = (1.2, 0.9),
    width: float = 0.5,
    thickness: float = 0.12,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points on an L-bracket: a slab along x (length ``arms[0]``) and one along z
    (``arms[1]``), both ``width`` deep and ``thickness`` thick, meeting at the origin corner;
    parts 0 (horizontal arm) and 1 (vertical arm), each sampled by its surface area."""
    a, b, w, t = arms[0], arms[1], width, thickness
    area_a = 2 * (a * w + a * t + w * t)
    area_b = 2 * (b * w + b * t + w * t)
    part = (rng.uniform(0, area_a + area_b, n) >= area_a).astype(np.int64)
    pa = clouds.box(n, rng, (a / 2, w / 2, t / 2)) + np.array([a / 2, 0, t / 2])
    pb = clouds.box(n, rng, (t / 2, w / 2, b / 2)) + np.array([t / 2, 0, b / 2])
    return np.where(part[:, None] == 0, pa, pb), part


def labelled(name: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` surface points of primitive ``name`` with random dimensions, and per-point part
    indices into ``PARTS[name]``; the object is centred on its bounding-box centre."""
    if name not in PARTS:
        raise ValueError(f"unknown primitive {name!r}; known: {tuple(PARTS)}")
    u = rng.uniform
    if name == "sphere":
        p = clouds.sphere(n, rng)
        part = (p[:, 2] < 0).astype(np.int64)
    elif name == "box":
        half = (u(0.4, 1.0), u(0.4, 1.0), u(0.4, 1.0))
        p = clouds.box(n, rng, half)
        part = np.argmax(np.isclose(np.abs(p), half), axis=1).astype(np.int64)
    elif name == "cylinder":
        r, h = u(0.3, 0.7), u(0.8, 2.0)
        p = clouds.cylinder(n, rng, r, h)
        part = np.isclose(np.abs(p[:, 2]), h / 2).astype(np.int64)
    elif name == "cone":
        r, h = u(0.4, 0.9), u(0.8, 1.8)
        p = clouds.cone(n, rng, r, h)
        part = np.isclose(p[:, 2], -h / 2).astype(np.int64)
    elif name == "torus":
        p = clouds.torus(n, rng, 1.0, u(0.2, 0.45))
        part = (np.hypot(p[:, 0], p[:, 1]) < 1.0).astype(np.int64)
    elif name == "capsule":
        p, part = capsule(n, rng, u(0.3, 0.6), u(0.6, 1.6))
    elif name == "plane_slab":
        p, part = plane_slab(n, rng, (u(0.7, 1.0), u(0.5, 1.0), u(0.03, 0.1)))
    else:
        p, part = l_bracket(n, rng, (u(0.8, 1.4), u(0.6, 1.2)), u(0.3, 0.6), u(0.08, 0.2))
    return p - (p.max(0) + p.min(0)) / 2, part


# ---------------------------------------------------------------- batched EM


@dataclass
class Mixture:
    """Batched Gaussian mixtures: ``weights`` (B, K), ``means`` (B, K, 3), ``covs`` (B, K, 3, 3)
    and the last E-step's responsibilities ``resp`` (B, N, K), all float64."""

    weights: Tensor
    means: Tensor
    covs: Tensor
    resp: Tensor


def _outer(x: Tensor) -> Tensor:
    """(..., 3) -> (..., 9) flattened outer products x xᵀ."""
    return (x[..., :, None] * x[..., None, :]).flatten(-2)


def m_step(x: Tensor, resp: Tensor, reg: float) -> tuple[Tensor, Tensor, Tensor]:
    """Weights, means and covariances (+ ``reg`` on the diagonal) from responsibilities, as
    scikit-learn's full-covariance M-step (components' mass floored at 10·eps)."""
    nk = resp.sum(1) + 10 * torch.finfo(resp.dtype).eps  # (B, K)
    means = resp.transpose(1, 2) @ x / nk[..., None]
    second = resp.transpose(1, 2) @ _outer(x) / nk[..., None]  # (B, K, 9)
    covs = (second - _outer(means)).unflatten(-1, (3, 3))
    covs = covs + reg * torch.eye(3, dtype=x.dtype)
    return nk / x.shape[1], means, covs


def e_step(x: Tensor, weights: Tensor, means: Tensor, covs: Tensor) -> tuple[Tensor, Tensor]:
    """Responsibilities (B, N, K) and the mean log-likelihood per object (B,). The Mahalanobis
    terms are float64 matmuls (xᵀPx − 2xᵀPμ + μᵀPμ for P = Σ⁻¹); the normalisation runs in
    float32 (torch's float64 ``exp`` is not vectorised), so responsibilities carry ~1e-7
    relative error."""
    prec = torch.linalg.inv(covs)  # (B, K, 3, 3)
    pm = (prec @ means[..., None])[..., 0]  # (B, K, 3)
    maha = _outer(x) @ prec.flatten(-2).transpose(1, 2)
    maha -= 2 * x @ pm.transpose(1, 2)
    maha += (means * pm).sum(-1)[:, None, :]
    logdet = torch.linalg.slogdet(covs).logabsdet  # (B, K)
    maha += logdet[:, None, :] + 3 * np.log(2 * np.pi)
    logp = (weights.log()[:, None] - 0.5 * maha).float()
    top = logp.amax(2, keepdim=True)
    resp = (logp - top).clamp_(min=-80.0).exp_()  # no denormals (slow, and below 1e-34)
    total = resp.sum(2, keepdim=True)
    resp /= total
    return resp.double(), (top + total.log())[..., 0].double().mean(1)


def fit_gmm(
    points: np.ndarray | Tensor,
    k: int,
    iters: int,
    seed: int,
    reg: float = 1e-6,
    chunk: int = 4,
) -> Mixture:
    """``k``-component full-covariance mixtures of every cloud of ``points`` (B, N, 3):
    initialised by hard assignment to ``k`` farthest-point-sampled points of each cloud (from a
    random first point, seeded by ``seed``; spread like k-means++ but deterministic), then
    ``iters`` EM iterations; ``chunk`` clouds at a time (cache-sized work)."""
    x = torch.as_tensor(np.asarray(points), dtype=torch.float64)
    if x.dim() != 3 or x.shape[2] != 3:
        raise ValueError(f"points must be (clouds, points, 3), got {tuple(x.shape)}")
    if not 1 <= k <= x.shape[1] or iters < 0 or reg < 0 or chunk < 1:
        raise ValueError(f"need 1 <= k <= points ({x.shape[1]}), iters >= 0, reg >= 0, chunk >= 1")
    gen = torch.Generator().manual_seed(seed)
    first = torch.randint(x.shape[1], (len(x),), generator=gen)
    start = torch.cat(
        [fps(x[i : i + 64].float(), k, first[i : i + 64]) for i in range(0, len(x), 64)]
    )
    parts = []
    for lo in range(0, len(x), chunk):
        xc = x[lo : lo + chunk]
        centres = torch.gather(xc, 1, start[lo : lo + chunk, :, None].expand(-1, -1, 3))
        nearest = torch.cdist(xc, centres).argmin(2)
        resp = torch.nn.functional.one_hot(nearest, k).to(x.dtype)
        weights, means, covs = m_step(xc, resp, reg)
        for _ in range(iters):
            resp, _ = e_step(xc, weights, means, covs)
            weights, means, covs = m_step(xc, resp, reg)
        resp, _ = e_step(xc, weights, means, covs)
        parts.append((weights, means, covs, resp))
    return Mixture(*(torch.cat(t) for t in zip(*parts, strict=True)))


# ---------------------------------------------------------------- mixtures as splats


@dataclass
class Splats:
    """Gaussian splats: ``xyz`` (…, K, 3) centroids, ``opacity`` (…, K) in (0, 1],
    ``scale`` (…, K, 3) standard deviations along the principal axes (descending),
    ``rotation`` (…, K, 4) unit quaternions (w, x, y, z) with w >= 0 and ``colour`` (…, K, 3)
    RGB."""

    xyz: np.ndarray
    opacity: np.ndarray
    scale: np.ndarray
    rotation: np.ndarray
    colour: np.ndarray

    def features(self) -> np.ndarray:
        """(…, K, 14): xyz, opacity, log-scale, rotation, colour (the attributes Gaussian-MAE
        reads, activated as 3DGS renders them; scales in log as 3DGS stores them)."""
        return np.concatenate(
            [self.xyz, self.opacity[..., None], np.log(self.scale), self.rotation, self.colour],
            axis=-1,
        )


def matrix_to_quaternion(r: np.ndarray) -> np.ndarray:
    """Rotation matrices (…, 3, 3) -> unit quaternions (…, 4) as (w, x, y, z), w >= 0
    (the q ≡ −q ambiguity resolved; Shepperd's method, stable for every angle)."""
    r = np.asarray(r, dtype=np.float64)
    m00, m11, m22 = r[..., 0, 0], r[..., 1, 1], r[..., 2, 2]
    cands = np.stack(
        [
            np.stack(
                [
                    1 + m00 + m11 + m22,
                    r[..., 2, 1] - r[..., 1, 2],
                    r[..., 0, 2] - r[..., 2, 0],
                    r[..., 1, 0] - r[..., 0, 1],
                ],
                -1,
            ),
            np.stack(
                [
                    r[..., 2, 1] - r[..., 1, 2],
                    1 + m00 - m11 - m22,
                    r[..., 0, 1] + r[..., 1, 0],
                    r[..., 0, 2] + r[..., 2, 0],
                ],
                -1,
            ),
            np.stack(
                [
                    r[..., 0, 2] - r[..., 2, 0],
                    r[..., 0, 1] + r[..., 1, 0],
                    1 - m00 + m11 - m22,
                    r[..., 1, 2] + r[..., 2, 1],
                ],
                -1,
            ),
            np.stack(
                [
                    r[..., 1, 0] - r[..., 0, 1],
                    r[..., 0, 2] + r[..., 2, 0],
                    r[..., 1, 2] + r[..., 2, 1],
                    1 - m00 - m11 + m22,
                ],
                -1,
            ),
        ],
        -2,
    )  # (…, 4 candidates, 4): row i is 4·q_i·q
    best = np.argmax(np.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22,
                               1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1), -1)  # fmt: skip
    q = np.take_along_axis(cands, best[..., None, None], -2)[..., 0, :]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Quaternions (…, 4) as (w, x, y, z), normalised first -> rotation matrices (…, 3, 3)."""
    q = np.asarray(q, dtype=np.float64)
    w, x, y, z = np.moveaxis(q / np.linalg.norm(q, axis=-1, keepdims=True), -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def principal_frames(covs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Covariances (…, 3, 3) -> standard deviations (…, 3), descending, and rotations
    (…, 3, 3) whose columns are the matching eigenvectors, signs fixed (each of the first two
    columns' largest entry positive, the third their cross product) so that the frame is a
    deterministic proper rotation."""
    vals, vecs = np.linalg.eigh(np.asarray(covs, dtype=np.float64))
    vals, vecs = vals[..., ::-1], vecs[..., ::-1]
    for j in (0, 1):
        col = vecs[..., :, j]
        big = np.take_along_axis(col, np.argmax(np.abs(col), -1)[..., None], -1)
        vecs[..., :, j] = col * np.where(big < 0, -1.0, 1.0)
    vecs[..., :, 2] = np.cross(vecs[..., :, 0], vecs[..., :, 1])
    return np.sqrt(np.clip(vals, 0, None)), vecs


def mixture_to_splats(mix: Mixture, point_colours: np.ndarray) -> Splats:
    """Splats of fitted mixtures; ``point_colours`` (B, N, 3) are averaged per component with
    the responsibilities as weights."""
    weights = mix.weights.numpy()
    scale, frames = principal_frames(mix.covs.numpy())
    resp = mix.resp.numpy()
    colour = np.einsum("bnk,bnc->bkc", resp, point_colours) / (
        resp.sum(1)[..., None] + np.finfo(np.float64).eps
    )
    return Splats(
        xyz=mix.means.numpy(),
        opacity=weights / weights.max(axis=-1, keepdims=True),
        scale=scale,
        rotation=matrix_to_quaternion(frames),
        colour=colour,
    )


def component_labels(resp: Tensor | np.ndarray, labels: np.ndarray, n_labels: int) -> np.ndarray:
    """(B, K) the label of each component: the argmax of its responsibility-weighted histogram
    of the points' ``labels`` (B, N) in [0, n_labels)."""
    onehot = np.eye(n_labels)[labels]  # (B, N, L)
    return np.einsum("bnk,bnl->bkl", np.asarray(resp), onehot).argmax(-1)


# ---------------------------------------------------------------- 3DGS ply conventions


def decode_3dgs(fields: dict[str, np.ndarray]) -> Splats:
    """Splats from a 3DGS ``.ply``'s vertex fields (``FIELDS_3DGS``; further ``f_rest_*``
    ignored): opacity = sigmoid(logit), scale = exp(log-scale), rotation normalised with
    w >= 0, colour = clip(0.5 + C0 · f_dc, 0, 1)."""
    missing = [f for f in FIELDS_3DGS if f not in fields]
    if missing:
        raise ValueError(f"not a 3DGS ply: missing vertex fields {missing}")

    def stack(names: tuple[str, ...]) -> np.ndarray:
        return np.stack([np.asarray(fields[n], np.float64) for n in names], -1)

    q = stack(("rot_0", "rot_1", "rot_2", "rot_3"))
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    if (norm == 0).any():
        raise ValueError("a 3DGS rotation quaternion is zero")
    q = q / norm
    scale = np.exp(stack(("scale_0", "scale_1", "scale_2")))
    order = np.argsort(-scale, axis=-1)  # principal axes descending, as principal_frames
    frames = np.take_along_axis(quaternion_to_matrix(q), order[..., None, :], -1)
    frames[..., :, 2] *= np.sign(np.linalg.det(frames))[..., None]
    return Splats(
        xyz=stack(("x", "y", "z")),
        opacity=1 / (1 + np.exp(-np.asarray(fields["opacity"], np.float64))),
        scale=np.take_along_axis(scale, order, -1),
        rotation=matrix_to_quaternion(frames),
        colour=np.clip(0.5 + SH_C0 * stack(("f_dc_0", "f_dc_1", "f_dc_2")), 0, 1),
    )


def encode_3dgs(splats: Splats) -> dict[str, np.ndarray]:
    """The inverse of :func:`decode_3dgs` (3DGS's stored fields; opacity clipped into the
    logit's domain)."""
    o = np.clip(splats.opacity, 1e-6, 1 - 1e-6)
    cols = {
        **dict(zip(("x", "y", "z"), np.moveaxis(splats.xyz, -1, 0), strict=True)),
        **{f"f_dc_{i}": (splats.colour[..., i] - 0.5) / SH_C0 for i in range(3)},
        "opacity": np.log(o / (1 - o)),
        **{f"scale_{i}": np.log(splats.scale[..., i]) for i in range(3)},
        **{f"rot_{i}": splats.rotation[..., i] for i in range(4)},
    }
    return {k: np.asarray(cols[k], np.float32) for k in FIELDS_3DGS}
