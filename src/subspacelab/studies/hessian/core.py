"""Core of the ``hessian`` study (Sagun et al., arXiv:1706.04454): blobs, MLPs, spectra and the
small-batch/large-batch line. Pure and IO-free (training: ``lightning.py``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse.linalg import eigsh
from sklearn.datasets import make_blobs
from torch import Tensor, nn

from subspacelab.probes import hessian as hs


def blobs(
    n: int, dim: int, clusters: int, std: float, box: float, seed: int
) -> tuple[Tensor, Tensor]:
    """Gaussian blobs (labels = cluster), float64 inputs and int64 labels."""
    x, y = make_blobs(
        n_samples=n,
        n_features=dim,
        centers=clusters,
        cluster_std=std,
        center_box=(-box, box),
        random_state=seed,
    )
    return torch.from_numpy(x).double(), torch.from_numpy(y).long()


def mlp(dim: int, width: int, classes: int, seed: int) -> nn.Module:
    """``dim → W → W → k`` with tanh, float64, initialised from ``seed``."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(dim, width),
        nn.Tanh(),
        nn.Linear(width, width),
        nn.Tanh(),
        nn.Linear(width, classes),
    ).double()


@dataclass(frozen=True)
class Spectrum:
    """Exact spectra of H and G at one trained network, and their summaries: the overlap of
    their top-``dim`` eigenspaces, the relative error of G's top eigenvalue and
    ``‖H − G‖_F / ‖H‖_F``."""

    h_eigs: Tensor
    g_eigs: Tensor
    dim: int
    overlap: float
    top_rel_error: float
    residual_ratio: float


def top_eigenvectors(a: Tensor, k: int) -> Tensor:
    """Orthonormal eigenvectors (P, k) of the ``k`` largest eigenvalues of a symmetric matrix,
    by Lanczos on the dense matrix (ARPACK to machine precision; fixed start vector and seeded
    restarts)."""
    v0 = np.ones(a.shape[0]) / np.sqrt(a.shape[0])
    _, vecs = eigsh(a.numpy(), k=k, which="LA", tol=0.0, v0=v0, rng=np.random.default_rng(0))
    return torch.from_numpy(vecs)


def overlap_dim(h_eigs: Tensor, loss: str, k: int) -> int:
    """Dimension of the subspace on which H and G are compared: the top ``k`` (one per class)
    for MSE; for CE the outlier subspace of H, its gap-rule outlier count among the top 3k
    (issue 12: CE's output Hessian has rank k − 1, so its k-th direction can lie in the bulk,
    where H and G need not agree)."""
    return hs.gap_outliers(h_eigs, 3 * k) if loss == "ce" else k


def spectrum(model: nn.Module, x: Tensor, y: Tensor, loss: str, k: int) -> Spectrum:
    """Exact H and G of the full-batch loss (closed form, :func:`~subspacelab.probes.hessian.
    mlp_hessian`); the overlap and top-eigenvalue error of G vs H on
    the top :func:`overlap_dim` eigenspaces, and ``‖H − G‖_F / ‖H‖_F``. ``h_eigs`` holds every
    eigenvalue of H, ``g_eigs`` the top ``dim`` of G (both descending); the eigenvectors come
    from :func:`top_eigenvectors`, much cheaper than a full ``eigh`` for a few of them."""
    h, g = hs.mlp_hessian(model, x, y, loss)
    he = torch.linalg.eigvalsh(h).flip(0)
    dim = overlap_dim(he, loss, k)
    hv, gv = top_eigenvectors(h, dim), top_eigenvectors(g, dim)
    ge = torch.sort(torch.einsum("pk,pq,qk->k", gv, g, gv), descending=True).values
    return Spectrum(
        h_eigs=he,
        g_eigs=ge,
        dim=dim,
        overlap=hs.subspace_overlap(hv, gv),
        top_rel_error=float((he[0] - ge[0]).abs() / he[0].abs()),
        residual_ratio=float(torch.linalg.norm(h - g) / torch.linalg.norm(h)),
    )


def line_losses(
    model: nn.Module, a: Tensor, b: Tensor, x: Tensor, y: Tensor, loss: str, alphas: np.ndarray
) -> np.ndarray:
    """Full-batch loss at ``α b + (1 − α) a`` for each α (flat parameter vectors)."""
    fn, _ = hs.flat_model(model)
    with torch.no_grad():
        return np.array(
            [float(hs.loss_of_outputs(fn(a + al * (b - a), x), y, loss)) for al in alphas]
        )


def barrier(alphas: np.ndarray, losses: np.ndarray) -> float:
    """Height of the line above the higher endpoint, over α ∈ [0, 1] (0 = no barrier)."""
    inside = (alphas >= 0) & (alphas <= 1)
    ends = max(losses[np.argmin(np.abs(alphas))], losses[np.argmin(np.abs(alphas - 1))])
    return float(max(losses[inside].max() - ends, 0.0))
