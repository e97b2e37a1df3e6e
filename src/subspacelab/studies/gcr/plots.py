"""Figures and tables of the GCR report (Wang, Li & Zhang, ICCV 2023, arXiv:2308.01547)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from subspacelab.api import Stat

PANELS = (
    ("source_err", "source top-1 error (%)"),
    ("transfer_acc", "transfer probe accuracy (%)"),
    ("r2", "class separation R²"),
)


def head_panels(
    metrics: Mapping[str, Sequence[float]],
    tasks: Sequence[str],
    heads: Sequence[str],
    prefixes: Sequence[str],
) -> Figure:
    """One row per task, one panel per metric: the mean per head (bar) and every seed (dots)."""
    fig = Figure(figsize=(4.2 * len(PANELS), 3.2 * len(tasks)), layout="constrained")
    axes = fig.subplots(len(tasks), len(PANELS), squeeze=False)
    pos = np.arange(len(heads))
    for row, (task, pre) in enumerate(zip(tasks, prefixes, strict=True)):
        for col, (metric, label) in enumerate(PANELS):
            ax = axes[row, col]
            values = [np.asarray(metrics[f"{pre}{metric}/{h}"], dtype=float) for h in heads]
            ax.bar(pos, [v.mean() for v in values], color="0.8", edgecolor="0.3")
            for i, v in enumerate(values):
                jitter = np.linspace(-0.15, 0.15, len(v)) if len(v) > 1 else np.zeros(1)
                ax.plot(pos[i] + jitter, v, "o", color="C0", ms=4)
            low = min(v.min() for v in values)
            high = max(v.max() for v in values)
            pad = 0.15 * (high - low) + 1e-9
            ax.set_ylim(max(0.0, low - pad), high + pad)
            ax.set_xticks(pos, heads)
            ax.set_title(f"{task}: {label}", fontsize=9)
    return fig


def angle_histogram(angles: Mapping[str, Mapping[str, np.ndarray]]) -> Figure:
    """Principal angles (degrees) between pairs of class subspaces, per task and GCR head."""
    fig = Figure(figsize=(5.0 * max(1, len(angles)), 3.4), layout="constrained")
    axes = fig.subplots(1, max(1, len(angles)), squeeze=False)[0]
    bins = np.linspace(0.0, 90.0, 19)  # 5-degree bins
    for ax, (task, per_head) in zip(axes, angles.items(), strict=False):
        for head, deg in sorted(per_head.items()):
            ax.hist(deg, bins=bins, histtype="step", density=True, label=head, linewidth=1.5)
        ax.set_xlabel("principal angle between class subspaces (degrees)")
        ax.set_title(f"{task}: all class pairs, all seeds", fontsize=9)
        ax.legend(fontsize=8)
    if not angles:
        axes[0].set_axis_off()
        axes[0].text(0.5, 0.5, "no GCR head", ha="center")
    return fig


def results_table(
    metrics: Mapping[str, Sequence[float]],
    tasks: Sequence[str],
    heads: Sequence[str],
    prefixes: Sequence[str],
    chosen_c: Mapping[str, Sequence[float]],
) -> str:
    """Markdown: mean ± std over seeds per task and head, the mean spread of the transfer
    accuracy over one model's probe draws, and the C values the probe chose most often.

    ``chosen_c`` maps ``"<task>/<head>"`` to every C chosen (per seed, draw and target set).
    """

    def cell(key: str, digits: int) -> str:
        return Stat(tuple(float(v) for v in metrics[key])).fmt(digits)

    def common(values: Sequence[float]) -> str:
        counts = Counter(values).most_common(3)
        return ", ".join(f"{c:g} ({100 * k / len(values):.0f}%)" for c, k in counts)

    lines = [
        "| task | head | source err (%) | transfer acc (%) | draw-to-draw sd (pt) | R² | "
        "probe C chosen most |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, pre in zip(tasks, prefixes, strict=True):
        for h in heads:
            lines.append(
                f"| {task} | {h} | {cell(f'{pre}source_err/{h}', 2)} | "
                f"{cell(f'{pre}transfer_acc/{h}', 2)} | "
                f"{np.mean(metrics[f'{pre}transfer_draw_sd/{h}']):.2f} | "
                f"{cell(f'{pre}r2/{h}', 3)} | {common(chosen_c.get(f'{task}/{h}', []))} |"
            )
    return "\n".join(lines)
