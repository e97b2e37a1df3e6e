"""Core of ``convergent`` (Li et al., arXiv:1511.07543): the 1-D CNN, joint Lightning training
of the nets, per-position unit activations, and the matching / sparse-prediction / clustering
analysis of one net pair."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import SpectralClustering
from torch import Tensor, nn
from torch.utils.data import DataLoader

from subspacelab.nets.training import TrainEnv, fit
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


class JointClassifiers(L.LightningModule):
    """Several independent classifiers trained in one run on the sum of their cross-entropies,
    with one Adam (with L2 weight decay) over all of them.

    The nets share no parameters and Adam's state and weight decay are per element, so each
    net's update sequence is the one it would get alone on the same mini-batches (the pattern
    of ``intrinsic_dim``'s JointTraining); one Lightning step serves all of them.
    """

    def __init__(self, nets: Mapping[str, nn.Module], *, lr: float, weight_decay: float) -> None:
        super().__init__()
        if not nets:
            raise ValueError("JointClassifiers needs at least one net")
        self.nets = nn.ModuleDict(dict(nets))
        self.lr, self.weight_decay = lr, weight_decay

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """The sum of every net's loss on this batch (logged as their mean)."""
        x, y = batch
        total = torch.stack([F.cross_entropy(net(x), y) for net in self.nets.values()]).sum()
        self.log("loss", total.detach() / len(self.nets), on_step=False, on_epoch=True)
        return total

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam with weight decay over every net."""
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


def train_jointly(
    env: TrainEnv,
    nets: Mapping[str, nn.Module],
    loader: DataLoader[Any],
    *,
    lr: float,
    wd: float,
    epochs: int,
) -> list[dict[str, float]]:
    """Adam with weight decay on cross-entropy for every net, on the same mini-batches of
    ``loader`` (the nets differ by their initialisation only, as in the paper); per-epoch
    metrics."""
    module = JointClassifiers(nets, lr=lr, weight_decay=wd)
    return fit(env, module, loader, epochs=epochs, label="nets", every=max(1, epochs // 3))


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
