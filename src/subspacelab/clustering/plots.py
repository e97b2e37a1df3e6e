"""Figures shared by the clustering studies: scores per method, mean ± std over seeds."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure


def score_bars(metrics: Mapping[str, Sequence[float] | float], suffix: str, title: str) -> Figure:
    """Horizontal bars of every metric named ``*<suffix>`` (e.g. ``/acc``: ``digits/mlc/acc``
    is the bar ``digits/mlc``), one per method."""
    names = sorted(k for k in metrics if k.endswith(suffix))
    values = [[v] if isinstance(v, int | float) else list(v) for v in (metrics[n] for n in names)]
    means = [statistics.fmean(v) for v in values]
    spreads = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
    fig = Figure(figsize=(6.5, 0.32 * max(len(names), 4) + 1.2))
    ax = fig.subplots()
    ax.barh([n.removesuffix(suffix) for n in names], means, xerr=spreads, color="#457b9d")
    ax.set_xlim(0, 1.05)
    ax.invert_yaxis()
    ax.set_xlabel(suffix.strip("_/").upper() + " (mean ± std over seeds)")
    ax.set_title(title)
    return fig
