"""Figures and tables of the intrinsic-dimension report (Li et al., ICLR 2018, arXiv:1804.08838)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure


@dataclass(frozen=True)
class Curve:
    """One accuracy-versus-d curve over seeds (rows of ``acc``: seeds; columns: ``dims``)."""

    title: str
    D: int
    dims: Sequence[int]
    acc: np.ndarray
    base: np.ndarray  # baseline accuracy per seed
    d_int90: np.ndarray  # per seed
    above_grid: np.ndarray  # per seed, bool
    fraction: float
    metric: str  # "test accuracy" or "train accuracy"


def accuracy_panels(curves: Sequence[Curve]) -> Figure:
    """One panel per curve: acc(d) (mean line, seeds as dots), baseline, threshold, d_int90."""
    n = len(curves)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows + 0.4))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, c in zip(axes.flat, curves, strict=False):
        dims = np.asarray(c.dims)
        for row in c.acc:
            ax.plot(dims, row, "o", color="tab:blue", alpha=0.35, ms=4)
        ax.plot(dims, c.acc.mean(axis=0), "-", color="tab:blue", label=f"subspace ({c.metric})")
        base = float(c.base.mean())
        thr = c.fraction * base
        ax.axhline(base, color="k", lw=1, label=f"baseline {base:.3f}")
        ax.axhline(thr, color="k", lw=1, ls="--", label=f"{c.fraction:.0%} of baseline")
        d90 = float(c.d_int90.mean())
        censored = bool(c.above_grid.any())
        label = f"d_int90 {'> ' if censored else '≈ '}{d90:.0f} ({d90 / c.D:.2%} of D)"
        ax.axvline(d90, color="tab:red", lw=1.2, ls=":" if censored else "-", label=label)
        ax.set_title(f"{c.title} (D = {c.D:,})", fontsize=9)
        ax.set_xlabel("subspace dimension d")
        ax.set_ylabel(c.metric)
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle("Accuracy in a random subspace against its dimension (d_int90 interpolated)")
    fig.tight_layout()
    return fig


def toy_figure(
    dims: Sequence[int], loss: np.ndarray, floor: np.ndarray, tol: float, d_int: int
) -> Figure:
    """Toy problem: final Adam loss and the closed-form subspace minimum against d (log scale)."""
    fig = Figure(figsize=(5.0, 3.6))
    ax = fig.subplots()
    tiny = np.finfo(np.float64).tiny
    for row in loss:
        ax.semilogy(dims, np.maximum(row, tiny), "o", color="tab:blue", alpha=0.35, ms=4)
    ax.semilogy(dims, np.maximum(loss.mean(axis=0), tiny), "-", label="Adam, final loss")
    ax.semilogy(
        dims, np.maximum(floor.mean(axis=0), tiny), "s--", ms=4, label="closed-form minimum"
    )
    ax.axhline(tol, color="k", ls="--", lw=1, label=f"solved: loss < {tol:g}")
    ax.axvline(d_int, color="tab:red", lw=1, label=f"codimension {d_int}")
    ax.set_xlabel("subspace dimension d")
    ax.set_ylabel("loss")
    ax.set_title("Toy problem (D = 1000)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def results_table(rows: Mapping[str, Mapping[str, str]]) -> str:
    """A markdown table: one row per curve, columns from the first row's keys."""
    if not rows:
        return ""
    cols = list(next(iter(rows.values())))
    lines = [
        "| run | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    lines += [f"| {name} | " + " | ".join(r[c] for c in cols) + " |" for name, r in rows.items()]
    return "\n".join(lines)
