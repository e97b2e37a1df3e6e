"""DC-Merge study: merge -> evaluate, on the shared task zoo (arXiv:2603.06242).

* merge — per seed, head variant (H1 probe / H2 shared head) and regime (full FT / LoRA): zero
  shot, simple average, Task Arithmetic, TIES, TSV-M and DC-Merge (avg smoothing with keep = r;
  no smoothing; linear smoothing; the literal top-0.1% keep), each with α chosen on validation;
  test accuracy, normalised accuracy, merge time and our directional-consistency diagnostic.
* evaluate — metrics over seeds, the claims (LoRA regime, keep = r), the method table.

Every merge is evaluated per task, so each claim is decided on the paired per seed x task
differences of normalised accuracy (``<head>/<regime>/<method>/task_norm``, seed-major; the
same α for every task of a merge) with their 95 % interval (issue 12).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from subspacelab.api import (
    Claim,
    ClaimResult,
    Condition,
    Curve,
    Metrics,
    Op,
    Report,
    Stat,
    Step,
    StepContext,
    StepOutput,
    Study,
    decide,
    gap,
    on_mean,
    read_json,
    write_json,
)
from subspacelab.merging import (
    StateDict,
    dc_merge,
    directional_consistency,
    task_arithmetic,
    task_vectors,
    ties_merge,
    tsv_merge,
)
from subspacelab.merging.bench import (
    Zoo,
    accuracies_at,
    best_alpha,
    collect_results,
    individual_accuracies,
    load_zoo,
    normalised,
    tune_and_test,
    validation_curve,
)
from subspacelab.merging.plots import bar_figure
from subspacelab.studies.dc_merge.config import DCMergeConfig, MergeConfig

SLUG = "dc_merge"
HEADS = ("h1", "h2")
METHODS = (
    "zero_shot",
    "average",
    "ta",
    "ties",
    "tsvm",
    "dc",
    "dc_nosmooth",
    "dc_linear",
    "dc_literal",
)
# the merges whose α is chosen on the validation sweep (zero-shot and the average have none)
SWEPT = tuple(m for m in METHODS if m not in ("zero_shot", "average"))
TOLERANCE = 0.005  # "within −0.5 pt"
DEVIATIONS = "\n".join(
    [
        "| what | spec / paper | here | why |",
        "|---|---|---|---|",
        "| α grid | 0.1-3.0 in steps of 0.1 (LoRA code) | the profile's `merge.alpha_grid` "
        "(mini: 0.01 steps below 0.3, then 0.3-5.0) | on the digits bench the chosen α sit at "
        "0.05-0.2, between the paper's steps (issue 12) |",
        "| claims' regime | FFT and LoRA-16 | LoRA rank 4 on the MLP (mini; FFT in the full "
        "profile) | the spec's miniature relations are stated for LoRA with keep = r |",
    ]
)


def _merges(m: MergeConfig, r: int | None) -> dict[str, Callable[[list[StateDict]], StateDict]]:
    return {
        "ta": task_arithmetic,
        "ties": lambda tvs: ties_merge(tvs, m.ties_density),
        "tsvm": lambda tvs: tsv_merge(tvs, r),
        "dc": lambda tvs: dc_merge(tvs, r, "avg", None, m.rho)[0],
        "dc_nosmooth": lambda tvs: dc_merge(tvs, r, "none", None, m.rho)[0],
        "dc_linear": lambda tvs: dc_merge(tvs, r, "linear", None, m.rho)[0],
        "dc_literal": lambda tvs: dc_merge(tvs, r, "avg", m.keep_fraction, m.rho)[0],
    }


def run_merges(zoo: Zoo, head: str, regime: str, m: MergeConfig) -> dict[str, dict[str, Any]]:
    """Every method on one (head, regime) of a zoo seed: abs/norm test accuracy (mean over tasks
    and per task), α, time."""
    individual = individual_accuracies(zoo, head, regime)
    tvs = task_vectors(zoo.base, zoo.finetuned[(head, regime)])
    r = zoo.lora_rank if regime == "lora" else None
    zero = {k: v * 0 for k, v in zoo.base.items()}
    out: dict[str, dict[str, Any]] = {}
    for name in ("zero_shot", "average"):
        tv = zero if name == "zero_shot" else task_arithmetic(tvs)
        alpha = 0.0 if name == "zero_shot" else 1.0 / len(tvs)
        _, accs = tune_and_test(zoo, head, tv, [alpha])
        out[name] = _row(accs, individual, alpha, 0.0)
    for name, fn in _merges(m, r).items():
        t0 = time.perf_counter()
        merged = fn(tvs)
        seconds = time.perf_counter() - t0
        net = zoo.backbone()
        curve = validation_curve(zoo, head, merged, m.alpha_grid, net)
        alpha = best_alpha(m.alpha_grid, curve)
        out[name] = _row(accuracies_at(zoo, head, merged, alpha, net), individual, alpha, seconds)
        out[name]["val_curve"] = curve
        diag = directional_consistency(merged, tvs, r)
        out[name]["dir_energy"] = float(np.mean([e for e, _ in diag.values()]))
        out[name]["dir_cosine"] = float(np.mean([c for _, c in diag.values()]))
    out["individual"] = _row(individual, individual, 0.0, 0.0)
    return out


def _row(
    accs: list[float], individual: list[float], alpha: float, seconds: float
) -> dict[str, Any]:
    return {
        "abs": float(np.mean(accs)),
        "norm": normalised(accs, individual),
        "alpha": alpha,
        "time_s": seconds,
        "task_abs": [float(a) for a in accs],
        "task_norm": [a / max(i, 1e-12) for a, i in zip(accs, individual, strict=True)],
    }


def _merge(ctx: StepContext[DCMergeConfig]) -> StepOutput:
    m = ctx.cfg.merge
    results: dict[str, dict] = {}
    for seed in ctx.seeds:
        zoo = load_zoo(ctx.inputs["task_zoo.data"], ctx.inputs["task_zoo.zoo"], seed)
        for h in m.heads:
            for r in m.regimes:
                if (h, r) not in zoo.finetuned:
                    raise KeyError(f"merge.heads/regimes: the task zoo has no ({h}, {r}) models")
                results[f"{seed}/{h}/{r}"] = run_merges(zoo, h, r, m)
                best = results[f"{seed}/{h}/{r}"]
                ctx.progress(
                    f"seed {seed} {h}/{r}: TA {best['ta']['norm']:.3f} TSV-M "
                    f"{best['tsvm']['norm']:.3f} DC {best['dc']['norm']:.3f}"
                )
    write_json(ctx.out / "results.json", results)
    write_json(ctx.out / "alpha_grid.json", {"alpha_grid": m.alpha_grid})
    return StepOutput(metrics={"runs": float(len(results))})


def _evaluate(ctx: StepContext[DCMergeConfig]) -> Report:
    results = read_json(ctx.inputs["merge"] / "results.json")
    alphas = read_json(ctx.inputs["merge"] / "alpha_grid.json")["alpha_grid"]
    metrics = collect_results(results, ctx.seeds)
    combos = sorted({tuple(k.split("/")[1:]) for k in results})
    rows = [
        "| head | regime | " + " | ".join(METHODS) + " |",
        "|---|---|" + "---|" * len(METHODS),
    ]
    for h, r in combos:
        cells = [f"{np.mean(metrics[f'{h}/{r}/{mt}/norm']):.3f}" for mt in METHODS]
        rows.append(f"| {h} | {r} | " + " | ".join(cells) + " |")
    figures = {
        f"normalised_{h}_{r}": bar_figure(
            f"dc_merge {h}/{r}: normalised accuracy",
            "normalised acc",
            {mt: metrics[f"{h}/{r}/{mt}/norm"] for mt in METHODS},
        )
        for h, r in combos
    }
    return Report(
        metrics=metrics,
        tables={"dc_merge_normalised_accuracy": "\n".join(rows), "Deviations": DEVIATIONS},
        figures=figures,
        curves={f"val_acc_vs_alpha_{h}": alpha_curve(results, ctx.seeds, h, alphas) for h in HEADS},
    )


def alpha_curve(
    results: dict[str, dict], seeds: list[int], head: str, alphas: list[float]
) -> list[dict[str, float]]:
    """Mean validation accuracy over tasks against the merge coefficient α (LoRA regime, the
    claims'; mean over seeds), one column per α-tuned method; empty where the profile has no
    LoRA models under ``head``."""
    rows = []
    for i, alpha in enumerate(alphas):
        row = {"alpha": float(alpha)}
        for method in SWEPT:
            vals = [
                results[key][method]["val_curve"][i]
                for key in (f"{s}/{head}/lora" for s in seeds)
                if key in results
            ]
            row[method] = float(np.mean(vals)) if vals else float("nan")
        rows.append(row)
    return rows


def _tasks(m: Metrics, head: str, method: str) -> Stat:
    """Normalised accuracy per seed x task of ``method`` (LoRA regime)."""
    return m[f"{head}/lora/{method}/task_norm"]


def _beats(m: Metrics, head: str, a: str, b: str, op: Op, margin: float) -> Condition:
    return on_mean(
        f"{a} - {b} (norm., seed x task)", gap(_tasks(m, head, a), _tasks(m, head, b)), op, margin
    )


def _dc_vs_tsvm(head: str) -> Callable[[Metrics], ClaimResult]:
    def check(m: Metrics) -> ClaimResult:
        return decide(
            _beats(m, head, "dc", "tsvm", ">=", -TOLERANCE),
            dc=m[f"{head}/lora/dc/norm"],
            tsvm=m[f"{head}/lora/tsvm/norm"],
        )

    return check


def _svd_beats(head: str) -> Callable[[Metrics], ClaimResult]:
    def check(m: Metrics) -> ClaimResult:
        return decide(
            *(_beats(m, head, a, b, ">", 0.0) for a in ("tsvm", "dc") for b in ("ta", "ties")),
            **{k: m[f"{head}/lora/{k}/norm"] for k in ("tsvm", "dc", "ta", "ties")},
        )

    return check


def _smoothing(head: str) -> Callable[[Metrics], ClaimResult]:
    def check(m: Metrics) -> ClaimResult:
        return decide(
            _beats(m, head, "dc", "dc_nosmooth", ">=", 0.0),
            smoothing_avg=m[f"{head}/lora/dc/norm"],
            no_smoothing=m[f"{head}/lora/dc_nosmooth/norm"],
        )

    return check


def _claims() -> tuple[Claim, ...]:
    out = []
    for h in ("h1", "h2"):
        out += [
            Claim(
                f"dc_ge_tsvm_{h}",
                f"({h}, LoRA, keep = r) DC-Merge ≥ TSV-M, within −0.5 pt or better",
                "DC-Merge above TSV-M by roughly 1-2 pts normalised (reported as the paper's "
                "claim, not reproduced unless observed)",
                _dc_vs_tsvm(h),
            ),
            Claim(
                f"svd_beats_ta_ties_{h}",
                f"({h}, LoRA, keep = r) SVD-based merges (TSV-M, DC) > TA and > TIES",
                "SVD-based merges beat TA and TIES on the 8-task benchmark",
                _svd_beats(h),
            ),
            Claim(
                f"smoothing_{h}",
                f"({h}, LoRA, keep = r) smoothing ≥ no smoothing",
                "energy smoothing (avg) improves over the plain truncated spectrum",
                _smoothing(h),
            ),
        ]
    return tuple(out)


CLAIMS = _claims()
CLAIMS_BY_ID = {c.id: c for c in CLAIMS}

STUDY = Study(
    slug=SLUG,
    title="DC-Merge: Improving Model Merging with Directional Consistency",
    arxiv="2603.06242",
    group="merging",
    config=DCMergeConfig,
    steps=(
        Step(
            "merge",
            _merge,
            reads=("merge",),
            kind="data",
            uses=("task_zoo.data", "task_zoo.zoo"),
            description="every merge on the task zoo, α tuned on validation",
        ),
        Step("evaluate", _evaluate, needs=("merge",), kind="report"),
    ),
    claims=CLAIMS,
    curves=tuple(
        Curve(
            f"val_acc_vs_alpha_{h}",
            x="alpha",
            y=SWEPT,
            title=f"({h}, LoRA) mean validation accuracy of θ₀ + α τ_merged vs α",
        )
        for h in HEADS
    ),
)
