"""Core of ``convergent`` (Li et al., arXiv:1511.07543): the 1-D CNN, per-position unit
activations, and the matching / sparse-prediction / clustering analysis of one net pair."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.cluster import SpectralClustering
from torch import Tensor, nn

from subspacelab.probes import similarity as sim


class Net1D(nn.Module):
    """conv(1→C, k5, pad 2) → ReLU → conv(C→C, k5) → ReLU → flatten → FC(classes)."""

    def __init__(self, length: int, channels: int, classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(1, channels, 5, padding=2)
        self.conv2 = nn.Conv1d(channels, channels, 5)
        self.fc = nn.Linear(channels * (length - 4), classes)

    def activations(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Post-ReLU conv1 and conv2 maps, shapes (n, C, L) and (n, C, L − 4)."""
        a1 = torch.relu(self.conv1(x.unsqueeze(1)))
        return a1, torch.relu(self.conv2(a1))

    def forward(self, x: Tensor) -> Tensor:
        """Logits (n, classes)."""
        return self.fc(self.activations(x)[1].flatten(1))


def unit_samples(act: Tensor, positions: int | None = None) -> np.ndarray:
    """Every (input, position) pair of maps (n, C, P) as a sample: (n·P', C) float64, ordered
    by input. ``positions``: keep at most that many evenly spaced positions per input."""
    if positions is not None and positions < act.shape[2]:
        keep = torch.linspace(0, act.shape[2] - 1, positions).round().long()
        act = act[:, :, keep]
    return act.permute(0, 2, 1).reshape(-1, act.shape[1]).double().cpu().numpy()


def quartile_means(values: np.ndarray) -> tuple[float, float]:
    """Mean of the top and of the bottom quartile of ``values``."""
    v = np.sort(values)
    q = max(1, v.size // 4)
    return float(v[-q:].mean()), float(v[:q].mean())


def both_nets_fraction(
    corr_aa: np.ndarray, corr_bb: np.ndarray, corr_ab: np.ndarray, clusters: int, seed: int
) -> float:
    """Spectral clustering of |R| over the units of both nets; fraction of clusters holding
    units of both."""
    aff = np.abs(np.block([[corr_aa, corr_ab], [corr_ab.T, corr_bb]]))
    labels = SpectralClustering(clusters, affinity="precomputed", random_state=seed).fit_predict(
        aff
    )
    p = corr_aa.shape[0]
    mixed = set(labels[:p]) & set(labels[p:])
    return len(mixed) / len(set(labels))


def analyse_pair(
    a: np.ndarray, b: np.ndarray, n_half: int, alphas: list[float], clusters: int, seed: int
) -> dict[str, float]:
    """Matching, sparse prediction, clustering, CKA and SVCCA between two (samples, units) sets.

    Samples are ordered by signal; the first ``n_half`` samples fit the predictions and the
    rest score them (held-out signals). Dead units are dropped first.
    """
    a, b = a[:, sim.live_units(a)], b[:, sim.live_units(b)]
    corr = sim.cross_correlation(a, b)
    _, matched = sim.bipartite_match(corr)
    top, bottom = quartile_means(matched)
    out = {
        "bipartite_mean": float(matched.mean()),
        "bipartite_top_quartile": top,
        "bipartite_bottom_quartile": bottom,
        "semi_mean": float(sim.semi_match(corr).mean()),
        "cka": sim.linear_cka(a, b),
        "svcca": sim.svcca(a, b),
        "one_to_one_r2": sim.one_to_one_r2(a[:n_half], b[:n_half], a[n_half:], b[n_half:]),
        "both_nets_cluster_fraction": both_nets_fraction(
            sim.cross_correlation(a, a), sim.cross_correlation(b, b), corr, clusters, seed
        ),
    }
    for alpha in alphas:
        r2, nnz = sim.sparse_prediction_r2(a[:n_half], b[:n_half], a[n_half:], b[n_half:], alpha)
        out[f"lasso_r2/a{alpha:g}"] = r2
        out[f"lasso_nnz/a{alpha:g}"] = nnz
    return out
