"""Merging comparison: one table of every merge on the task zoo and one of every adapter with
its exact trainable-parameter budget, read from the dc_merge, concrete_merge and flora steps (no
new compute).

The merge table takes dc_merge's rows (its regimes) and concrete_merge's (its regime, full
fine-tuning in the miniature), so Task Arithmetic appears for both LoRA and FFT task vectors. The
adapter table says which arms share a budget level and whether their parameter counts are
actually matched (within :data:`MATCH_TOLERANCE`); it claims a match only where the counts show
one."""

from __future__ import annotations

import numpy as np

from subspacelab.api import Curve, Report, Stat, Step, StepContext, Study, read_json
from subspacelab.merging.plots import bar_figure
from subspacelab.studies.merging_compare.config import MergingCompareConfig

SLUG = "merging_compare"
MATCH_TOLERANCE = 0.10  # arms of one budget level are "matched" if max/min params <= 1.10
FIELDS = ("abs", "norm", "alpha", "time_s")


def _cell(values: list[float], digits: int = 3) -> str:
    return Stat(tuple(values)).fmt(digits) if values else "—"


def merge_rows(dc: dict, concrete: dict, heads: list[str], regimes: list[str]) -> list[str]:
    """Markdown rows: method, head, regime, abs acc, normalised acc, α (λ for concrete_merge's
    arms), merge/adaptation time; over seeds. Both results files are keyed
    ``"<seed>/<head>/<regime>"``; concrete_merge's TA row is kept unless dc_merge has the same
    (head, regime)."""
    rows = [
        "| method | head | regime | accuracy | normalised | α / λ | time (s) | from |",
        "|---|---|---|---|---|---|---|---|",
    ]
    table: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    source: dict[tuple[str, str, str], str] = {}
    for study, results in (("dc_merge", dc), ("concrete_merge", concrete)):
        for key, methods in results.items():
            _, h, r = key.split("/")
            for method, row in methods.items():
                if source.setdefault((method, h, r), study) != study:
                    continue  # the same method on the same zoo slice: dc_merge's row
                cell = table.setdefault((method, h, r), {})
                for f in FIELDS:
                    value = row.get("lam" if f == "alpha" and "lam" in row else f)
                    if value is not None:
                        cell.setdefault(f, []).append(value)
    for (method, h, r), cell in sorted(table.items(), key=lambda kv: (kv[0][1], kv[0][2])):
        if h in heads and r in regimes:
            rows.append(
                f"| {method} | {h} | {r} | {_cell(cell['abs'])} | {_cell(cell['norm'])} | "
                f"{_cell(cell.get('alpha', []), 2)} | {_cell(cell['time_s'], 3)} | "
                f"{source[(method, h, r)]} |"
            )
    return rows


def budget_level(arm: str) -> float | None:
    """The target budget fraction in an adapter arm's name (``lora_0.02`` -> 0.02), if any."""
    _, _, tail = arm.rpartition("_")
    try:
        return float(tail)
    except ValueError:
        return None


def adapter_rows(flora: dict) -> list[str]:
    """Markdown rows: adapter arm, accuracy over tasks and seeds, exact trainable conv params,
    their fraction, and whether the arms of its budget level are matched: the largest over the
    smallest parameter count of the level, "yes" only within :data:`MATCH_TOLERANCE`."""
    rows = [
        "| adapter | accuracy | trainable conv params | fraction of conv params | budget level | "
        "matched (max / min params of the level) |",
        "|---|---|---|---|---|---|",
    ]
    arms: dict[str, dict[str, list[float]]] = {}
    for row in flora.values():
        for arm, vals in row.items():
            for f in ("acc", "params", "budget_frac"):
                arms.setdefault(arm, {}).setdefault(f, []).append(vals[f])
    levels: dict[float, list[float]] = {}
    for arm, vals in arms.items():
        level = budget_level(arm)
        if level is not None:
            levels.setdefault(level, []).append(float(np.mean(vals["params"])))
    for arm, vals in sorted(arms.items(), key=lambda kv: np.mean(kv[1]["params"])):
        level = budget_level(arm)
        if level is None:
            matched, shown = "—", "—"
        else:
            counts = levels[level]
            spread = max(counts) / max(min(counts), 1.0)
            ok = len(counts) > 1 and spread <= 1 + MATCH_TOLERANCE
            matched = f"{'yes' if ok else 'no'} ({spread:.2f})" if len(counts) > 1 else "—"
            shown = f"{level:g}"
        rows.append(
            f"| {arm} | {_cell(vals['acc'])} | {np.mean(vals['params']):.0f} | "
            f"{np.mean(vals['budget_frac']):.4f} | {shown} | {matched} |"
        )
    return rows


ADAPTERS = ("lora", "flora")  # the budgeted adapter families (arms ``<family>_<level>``)
REFERENCES = ("linear_probe", "full_ft")  # the unbudgeted arms, flat lines beside them


def adapter_curve(flora: dict) -> list[dict[str, float]]:
    """Accuracy (mean over seeds) against the budget level: one column per adapter family, the
    linear probe and full fine-tuning repeated on every row; empty where an arm is missing."""
    acc: dict[str, list[float]] = {}
    for row in flora.values():
        for arm, vals in row.items():
            acc.setdefault(arm, []).append(vals["acc"])
    levels = sorted({lv for arm in acc if (lv := budget_level(arm)) is not None})

    def mean(arm: str) -> float:
        return float(np.mean(acc[arm])) if arm in acc else float("nan")

    return [
        {"budget": level}
        | {f: mean(f"{f}_{level:g}") for f in ADAPTERS}
        | {r: mean(r) for r in REFERENCES}
        for level in levels
    ]


def _report(ctx: StepContext[MergingCompareConfig]) -> Report:
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
            "adapters_and_their_budgets": "\n".join(adapter_rows(flora)),
        },
        curves={"adapter_accuracy_vs_budget": adapter_curve(flora)},
    )


STUDY = Study(
    slug=SLUG,
    title="Merging and adaptation: every merge on one task zoo, every adapter with its budget",
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
    curves=(
        Curve(
            "adapter_accuracy_vs_budget",
            x="budget",
            y=(*ADAPTERS, *REFERENCES),
            title="adapters: accuracy vs trainable-parameter budget (probe, full FT for scale)",
        ),
    ),
)
