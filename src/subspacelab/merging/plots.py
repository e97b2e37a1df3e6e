"""One bar chart helper shared by the merging group's reports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure


def bar_figure(title: str, ylabel: str, series: Mapping[str, Sequence[float]]) -> Figure:
    """Bars of the mean of each series with its standard deviation over seeds."""
    fig = Figure(figsize=(max(4.0, 0.6 * len(series) + 1.5), 3.2))
    ax = fig.add_subplot(1, 1, 1)
    names = list(series)
    means = [float(np.mean(series[n])) for n in names]
    stds = [float(np.std(series[n])) for n in names]
    ax.bar(range(len(names)), means, yerr=stds, color="tab:blue", alpha=0.8, capsize=3)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    lo = min(means) - max([*stds, 0.0]) if means else 0.0
    ax.set_ylim(max(0.0, lo - 0.05), None)
    fig.tight_layout()
    return fig
