"""Figures of the SubspaceAD study (arXiv:2602.23013): maps beside GT, ROC curves, ev ablation."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure


@dataclass(frozen=True)
class MapExample:
    """One test image for the map grid: thumbnail, SubspaceAD and kNN maps, GT mask."""

    image: np.ndarray
    subspacead: np.ndarray
    knn: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True)
class RocCurves:
    """Image-level ROC curves of one category: method -> (fpr, tpr, auroc)."""

    category: str
    curves: dict[str, tuple[np.ndarray, np.ndarray, float]]


def maps_grid(examples: Mapping[str, Sequence[MapExample]]) -> Figure:
    """Rows = categories; per example four panels: image, SubspaceAD map, kNN map, GT mask."""
    rows = len(examples)
    cols = max(len(v) for v in examples.values()) * 4
    fig = Figure(figsize=(1.4 * cols, 1.5 * rows + 0.4))
    axes = fig.subplots(rows, cols, squeeze=False)
    for r, (cat, exs) in enumerate(examples.items()):
        for j, ex in enumerate(exs):
            panels = (
                (ex.image, None, "image"),
                (ex.subspacead, "inferno", "SubspaceAD"),
                (ex.knn, "inferno", "kNN"),
                (ex.mask, "gray", "GT"),
            )
            for p, (data, cmap, title) in enumerate(panels):
                ax = axes[r, 4 * j + p]
                ax.imshow(data, cmap=cmap, interpolation="nearest")
                if r == 0:
                    ax.set_title(title, fontsize=8)
        axes[r, 0].set_ylabel(cat, fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Anomaly maps (each map on its own colour scale) beside ground truth")
    return fig


def roc_figure(rocs: Sequence[RocCurves], seed: int) -> Figure:
    """One panel per category: image-level ROC of SubspaceAD and the kNN baseline."""
    n = len(rocs)
    cols = min(n, 5)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(3.0 * cols, 3.0 * rows + 0.4))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, roc in zip(axes.flat, rocs, strict=False):
        for name, (fpr, tpr, auc) in roc.curves.items():
            ax.plot(fpr, tpr, label=f"{name} ({auc:.3f})")
        ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
        ax.set_title(roc.category, fontsize=9)
        ax.set_xlabel("FPR")
        ax.set_ylabel("TPR")
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(f"Image-level ROC, seed {seed}")
    fig.tight_layout()
    return fig


def ablation_figure(
    evs: Sequence[float],
    metrics: Mapping[str, Sequence[Sequence[float]]],
    ks: Sequence[Sequence[float]],
) -> Figure:
    """Mean ± std over seeds of each metric (and k/d, the fraction of the feature dimension
    kept) against the explained-variance threshold.

    ``metrics[name][i]`` and ``ks[i]`` hold the per-seed values (``ks``: k/d) at ``evs[i]``.
    """
    fig = Figure(figsize=(9, 3.4))
    ax, ax_k = fig.subplots(1, 2)
    x = np.arange(len(evs))
    labels = [f"{ev:g}" for ev in evs]
    for name, vals in metrics.items():
        mean = [float(np.mean(v)) for v in vals]
        std = [float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for v in vals]
        ax.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=name)
    ax.set_xticks(x, labels)
    ax.set_xlabel("pca_ev (explained variance kept)")
    ax.set_ylabel("metric (mean ± std over seeds)")
    ax.legend(fontsize=8)
    k_mean = [float(np.mean(v)) for v in ks]
    ax_k.bar(x, k_mean, color="tab:gray")
    ax_k.set_xticks(x, labels)
    ax_k.set_ylim(0.0, 1.0)
    ax_k.set_xlabel("pca_ev")
    ax_k.set_ylabel("k / d (mean over categories and seeds)")
    fig.suptitle("SubspaceAD explained-variance ablation")
    fig.tight_layout()
    return fig


def spectrum_figure(spectra: Mapping[str, np.ndarray], seed: int) -> Figure:
    """Cumulative explained variance of each category's training tokens against k/d: how fast
    the spectrum decays (a flat spectrum is the diagonal)."""
    fig = Figure(figsize=(5.0, 3.8))
    ax = fig.subplots()
    for name, eig in spectra.items():
        eig = np.clip(np.asarray(eig, dtype=np.float64), 0.0, None)
        cum = np.cumsum(eig) / max(float(eig.sum()), 1e-300)
        ax.plot(np.arange(1, eig.size + 1) / eig.size, cum, label=name)
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--", label="flat spectrum")
    for level in (0.9, 0.99):
        ax.axhline(level, color="0.85", lw=0.8)
    ax.set_xlabel("k / d")
    ax.set_ylabel("cumulative explained variance")
    ax.set_title(f"Token spectra (train tokens, seed {seed})", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
