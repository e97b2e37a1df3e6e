"""Merging comparison: one table of every merge on the task zoo and one of every adapter at
matched budgets, read from the dc_merge, concrete_merge and flora steps (no new compute)."""

from __future__ import annotations

import numpy as np

from subspacelab.io import read_json
from subspacelab.merging.plots import bar_figure
from subspacelab.registry import Report, Stat, Step, StepContext, Study
from subspacelab.studies.merging_compare.config import MergingCompareConfig

SLUG = "merging_compare"


def _cell(values: list[float], digits: int = 3) -> str:
    return Stat(tuple(values)).fmt(digits) if values else "—"


def merge_rows(dc: dict, concrete: dict, heads: list[str], regimes: list[str]) -> list[str]:
    """Markdown rows: method, head, regime, abs acc, normalised acc, α, merge/adaptation time."""
    rows = [
        "| method | head | regime | accuracy | normalised | α / λ | time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    table: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    for key, methods in dc.items():
        _, h, r = key.split("/")
        for method, row in methods.items():
            cell = table.setdefault((method, h, r), {})
            for f in ("abs", "norm", "alpha", "time_s"):
                cell.setdefault(f, []).append(row[f])
    for key, methods in concrete.items():
        _, h = key.split("/")
        for method, row in methods.items():
            if method == "ta":
                continue  # the same TA as dc_merge's
            cell = table.setdefault((method, h, "fft"), {})
            for f in ("abs", "norm", "time_s"):
                cell.setdefault(f, []).append(row[f])
    for (method, h, r), cell in sorted(table.items(), key=lambda kv: (kv[0][1], kv[0][2])):
        if h in heads and r in regimes:
            rows.append(
                f"| {method} | {h} | {r} | {_cell(cell['abs'])} | {_cell(cell['norm'])} | "
                f"{_cell(cell.get('alpha', []), 2)} | {_cell(cell['time_s'], 3)} |"
            )
    return rows


def adapter_rows(flora: dict) -> list[str]:
    """Markdown rows: adapter arm, accuracy over tasks and seeds, exact trainable conv params."""
    rows = [
        "| adapter | accuracy | trainable conv params | fraction of conv params |",
        "|---|---|---|---|",
    ]
    arms: dict[str, dict[str, list[float]]] = {}
    for row in flora.values():
        for arm, vals in row.items():
            for f in ("acc", "params", "budget_frac"):
                arms.setdefault(arm, {}).setdefault(f, []).append(vals[f])
    for arm, vals in sorted(arms.items(), key=lambda kv: np.mean(kv[1]["params"])):
        rows.append(
            f"| {arm} | {_cell(vals['acc'])} | {np.mean(vals['params']):.0f} | "
            f"{np.mean(vals['budget_frac']):.4f} |"
        )
    return rows


def _report(ctx: StepContext) -> Report:
    t = ctx.cfg.tables
    dc = read_json(ctx.inputs["dc_merge.merge"] / "results.json")
    concrete = read_json(ctx.inputs["concrete_merge.merge"] / "results.json")
    flora = read_json(ctx.inputs["flora.fit"] / "results.json")
    norms = {
        f"{m}/{key.split('/')[1]}/{key.split('/')[2]}": [row["norm"]]
        for key, methods in dc.items()
        if key.startswith(f"{ctx.seeds[0]}/")
        for m, row in methods.items()
    }
    fig = bar_figure("merges on the task zoo (first seed)", "normalised acc", norms)
    return Report(
        figures={"merges": fig},
        metrics={"merge_runs": float(len(dc) + len(concrete)), "adapter_runs": float(len(flora))},
        tables={
            "merges_on_the_task_zoo": "\n".join(merge_rows(dc, concrete, t.heads, t.regimes)),
            "adapters_at_matched_budgets": "\n".join(adapter_rows(flora)),
        },
    )


STUDY = Study(
    slug=SLUG,
    title="Merging and adaptation: every merge on one task zoo, every adapter at matched budgets",
    arxiv="2603.06242",
    group="merging",
    config=MergingCompareConfig,
    kind="comparison",
    steps=(
        Step(
            "report",
            _report,
            reads=("tables",),
            kind="report",
            uses=("dc_merge.merge", "concrete_merge.merge", "flora.fit"),
        ),
    ),
    claims=(),
)
