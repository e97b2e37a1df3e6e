"""DiffuMatch's zero-shot matching of one shape pair (arXiv 2507.23715, spec section 3), on
top of the shapes toolkit (:mod:`subspacelab.shapes.spectral_prior`, ``fmaps``, ``laplacian``).

A pair is X (shape 1) and Y (shape 2) with their Laplacian eigenbases. A randomly initialised
:class:`~subspacelab.shapes.spectral_prior.FeatureNet` gives per-vertex features F_X, F_Y; their
spectral coefficients A = Φ_X⁺F_X, B = Φ_Y⁺F_Y give C₁₂ and C₂₁ by the regularised solver, and the
net is optimised per pair on the arm's loss:

* ``diffumatch``: the proper-map loss (C against ZoomOut(C) truncated back) + score distillation
  through the spectral diffusion prior, both directions;
* ``axiomatic``: the proper-map loss + orthogonality + bijectivity + Laplacian commutativity;
* ``none``: the proper-map loss alone (no regulariser).

The output point map T: Y → X is read by nearest neighbours from C₁₂ and refined by ZoomOut.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from subspacelab.shapes import spectral_prior as sprior
from subspacelab.shapes.laplacian import cotan_laplacian, eigenbasis

ARMS = ("diffumatch", "axiomatic", "none")


@dataclass(frozen=True)
class Spectra:
    """One shape's vertices (n, 3), eigenvalues (K,), M-orthonormal eigenvectors (n, K) and
    lumped mass (n,), as float32 tensors; ``sub``: the vertex subset the proper-map target's
    ZoomOut maps when this shape is the target Y (``None``: all vertices)."""

    verts: Tensor
    evals: Tensor
    phi: Tensor
    mass: Tensor
    sub: Tensor | None = None

    def subsampled(self, n: int) -> Spectra:
        """This shape with ``sub`` = ``n`` farthest points (all vertices if n = 0 or >= size)."""
        if n == 0 or n >= len(self.verts):
            return Spectra(self.verts, self.evals, self.phi, self.mass)
        sub = sprior.farthest_points(self.verts, n)
        return Spectra(self.verts, self.evals, self.phi, self.mass, sub)

    def features(self, net: sprior.FeatureNet) -> Tensor:
        """The net's per-vertex features on this shape."""
        return net(self.verts, self.phi, self.evals, self.mass)


def unit_area(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """The mesh rescaled to total area 1 (so eigenvalues and geodesics are comparable)."""
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1).sum()
    return verts / np.sqrt(area)


def spectra(verts: np.ndarray, faces: np.ndarray, k: int) -> Spectra:
    """The shape's first ``k`` eigenpairs of the cotangent Laplacian with lumped mass."""
    lap, mass = cotan_laplacian(verts, faces)
    evals, phi = eigenbasis(lap, mass, k)
    evals = np.maximum(evals, 0.0)
    return Spectra(
        *(torch.tensor(x, dtype=torch.float32) for x in (verts, evals, phi, mass.diagonal()))
    )


@dataclass(frozen=True)
class MatchSettings:
    """The per-pair objective: basis size k, solver weight λ, SDS draws and noise scale,
    ZoomOut size of the proper-map target, and the loss weights."""

    k: int
    lam: float
    sds_draws: int
    sds_scale: float
    zoomout_to: int
    zoomout_step: int
    w_proper: float
    w_sds: float
    w_ortho: float
    w_bij: float
    w_lap: float


def fmaps(
    net: sprior.FeatureNet, x: Spectra, y: Spectra, s: MatchSettings
) -> tuple[Tensor, Tensor]:
    """(C₁₂, C₂₁) from the net's features on X and Y."""
    fx, fy = x.features(net), y.features(net)
    px, py = x.phi[:, : s.k], y.phi[:, : s.k]
    a = px.T @ (x.mass[:, None] * fx)
    b = py.T @ (y.mass[:, None] * fy)
    ex, ey = x.evals[: s.k], y.evals[: s.k]
    return sprior.solve_fmap(a, b, ex, ey, s.lam), sprior.solve_fmap(b, a, ey, ex, s.lam)


def proper_target(c: Tensor, x: Spectra, y: Spectra, k_end: int, step: int) -> Tensor:
    """ZoomOut(C) up to ``k_end`` eigenfunctions (mapping Y's ``sub`` vertices when it has
    one), truncated back to C's size (no gradient)."""
    k = c.shape[0]
    up, _ = sprior.zoomout(c.detach(), x.phi, y.phi, y.mass, k_end, step, y.sub)
    return up[:k, :k]


def pair_loss(
    net: sprior.FeatureNet,
    x: Spectra,
    y: Spectra,
    arm: str,
    s: MatchSettings,
    denoiser: sprior.Denoiser | None,
) -> Tensor:
    """The arm's per-pair loss (both directions) as the module docstring says."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; allowed: {', '.join(ARMS)}")
    c12, c21 = fmaps(net, x, y, s)
    loss = s.w_proper * (
        ((c12 - proper_target(c12, x, y, s.zoomout_to, s.zoomout_step)) ** 2).mean()
        + ((c21 - proper_target(c21, y, x, s.zoomout_to, s.zoomout_step)) ** 2).mean()
    )
    if arm == "diffumatch":
        if denoiser is None:
            raise ValueError("the diffumatch arm needs the spectral prior's denoiser")
        loss = loss + s.w_sds * (
            sprior.sds_loss(denoiser, c12, s.sds_draws, s.sds_scale)
            + sprior.sds_loss(denoiser, c21, s.sds_draws, s.sds_scale)
        )
    elif arm == "axiomatic":
        ax = sprior.axiomatic_losses(c12, c21, x.evals[: s.k], y.evals[: s.k])
        loss = loss + s.w_ortho * ax["ortho"] + s.w_bij * ax["bij"] + s.w_lap * ax["lap"]
    return loss


def predict(
    net: sprior.FeatureNet, x: Spectra, y: Spectra, s: MatchSettings, refine_to: int
) -> tuple[np.ndarray, np.ndarray]:
    """T: Y → X read from C₁₂ (raw) and after ZoomOut to ``refine_to`` (refined)."""
    with torch.no_grad():
        c12, _ = fmaps(net, x, y, s)
        raw = sprior.nearest_map(c12, x.phi[:, : s.k], y.phi[:, : s.k])
        _, refined = sprior.zoomout(c12, x.phi, y.phi, y.mass, refine_to)
    return raw.numpy(), refined.numpy()


def prior_maps(bases: list[Spectra], n: int, rng: np.random.Generator) -> Tensor:
    """|C| (n, k, k) of ``n`` random ordered pairs (i ≠ j) of shapes with shared connectivity
    (ground truth: the identity map)."""
    if len(bases) < 2:
        raise ValueError("the prior's maps need at least two shapes")
    out = []
    for _ in range(n):
        i, j = rng.choice(len(bases), size=2, replace=False)
        x, y = bases[i], bases[j]
        out.append((y.phi.T @ (y.mass[:, None] * x.phi)).abs())
    return torch.stack(out)
