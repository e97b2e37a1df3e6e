"""LIHF-DSC study: data -> baselines -> fit -> evaluate (Sindičić & Kopriva, arXiv:2504.18179).

* data — mini: 600 load_digits images (60 per class) and a tanh-warped union of affine
  subspaces as 8×8 images (fixed data seed; hard enough that raw k-means and the LSR grid's
  median are far from 1, issue 12); full: COIL20 / ORL .mat files with pinned SHA-256. Each
  dataset's subspace-dimension prior (the post-processing's top-k) comes from the data: the
  generator's dimension for the synthetic set, the TwoNN estimate otherwise (``top_k: 0``), or
  the configured prior.
* baselines — LSR, SSC, LRR over their λ grids, same post-processing and spectral step; the
  label-oracle grid is kept whole so the claims can take its median and its best, per seed.
* fit — per dataset and seed: one pre-trained AE, then from it LIHF (all layers; stage 1 then
  stage 2, each self-stopped, 700 epochs between them) and the last-layer-only ablation (stage
  1, ended at its stop); the ACC curve of LIHF's stage 1 is logged to the cap, never used for
  control.
* evaluate — metrics over seeds and the claims R1–R4 on paired per-seed differences.
"""

from __future__ import annotations

import functools
import time

import numpy as np
import torch

from subspacelab.api import (
    Claim,
    ClaimResult,
    Curve,
    Metrics,
    Report,
    Step,
    StepContext,
    StepOutput,
    Study,
    decide,
    every,
    gap,
    on_mean,
    read_json,
    write_json,
)
from subspacelab.clustering import (
    cluster_accuracy,
    dimension_prior,
    evaluate,
    kmeans_baseline,
    lrr,
    lsr,
    postprocess_coefficients,
    ssc,
    union_of_subspaces,
)
from subspacelab.clustering.datasets import digits_subset, load_mat_images
from subspacelab.clustering.plots import score_bars
from subspacelab.clustering.spectral import spectral_embedding
from subspacelab.data.download import Resource, fetch
from subspacelab.studies.lihf_dsc import core
from subspacelab.studies.lihf_dsc.config import LIHFConfig

SLUG = "lihf_dsc"
BASELINES = ("lsr", "ssc", "lrr")
# the fit step's per-seed results -> their metric names below the dataset's level
RESULT_METRICS = {
    "lihf_acc": "lihf/acc",
    "lihf_nmi": "lihf/nmi",
    "lihf_ari": "lihf/ari",
    "lihf_time": "lihf/wall_time",
    "stop_stage1": "lihf/stop_stage1",
    "stop_stage2": "lihf/stop_stage2",
    "self_stopped": "lihf/self_stopped",
    "self_stopped2": "lihf/self_stopped2",
    "stage1_acc": "stage1/acc",
    "last_layer_acc": "last_layer/acc",
    "last_layer_stop": "last_layer/stop",
}


def _data(ctx: StepContext[LIHFConfig]) -> StepOutput:
    d = ctx.cfg.data
    priors: dict[str, dict[str, object]] = {}
    for name in d.datasets:
        if name == "digits":
            images, labels = digits_subset(d.digits_per_class, d.data_seed)
        elif name == "synthetic":
            x, labels = union_of_subspaces(
                d.syn_per_subspace,
                d.syn_subspaces,
                d.syn_dim,
                64,
                d.syn_noise,
                d.data_seed,
                warp="tanh",
                offset=d.syn_offset,
            )
            x = (x - x.min()) / (x.max() - x.min())
            images = x.reshape(-1, 1, 8, 8)
        else:
            fname = d.mat_files[name]
            path = fetch(
                Resource(f"{d.mat_url}/{fname}", fname, sha256=d.mat_sha256.get(fname)),
                ctx.root / d.mat_dir,
                ctx.progress,
            )
            images, labels = load_mat_images(path, d.image_side)
        ctx.save(name, {"images": images, "labels": labels})
        top_k, source = dimension_prior(
            images, ctx.cfg.model.top_k, d.syn_dim if name == "synthetic" else None
        )
        priors[name] = {"top_k": top_k, "source": source}
        ctx.progress(
            f"{name}: {images.shape[0]} images, {int(labels.max()) + 1} clusters, "
            f"top-k prior {top_k} ({source})"
        )
    write_json(ctx.out / "datasets.json", {"datasets": list(d.datasets), "priors": priors})
    return StepOutput()


def _load(ctx: StepContext[LIHFConfig], name: str) -> tuple[np.ndarray, np.ndarray]:
    t = ctx.load(name, step="data", kind="data")
    return t["images"].numpy(), t["labels"].numpy()


def _baselines(ctx: StepContext[LIHFConfig]) -> StepOutput:
    b = ctx.cfg.baselines
    meta = read_json(ctx.inputs["data"] / "datasets.json")
    names = meta["datasets"]
    out: dict[str, dict[str, list[float]]] = {}
    solvers = {
        "lsr": (b.lsr_lambdas, lambda x, v: lsr(x, v)),
        "ssc": (b.ssc_alphas, lambda x, v: ssc(x, v)),
        "lrr": (b.lrr_taus, lambda x, v: lrr(x, v)),
    }
    for name in names:
        images, labels = _load(ctx, name)
        x = images.reshape(images.shape[0], -1).astype(np.float64)
        k, top_k = int(labels.max()) + 1, int(meta["priors"][name]["top_k"])
        for method, (grid, solve) in solvers.items():
            for value in grid:
                t0 = time.perf_counter()
                coef = solve(x, value)
                secs = time.perf_counter() - t0
                # the spectral embedding is seed-free: once per λ, k-means per seed
                emb = spectral_embedding(postprocess_coefficients(coef, top_k), k)
                accs = [cluster_accuracy(labels, kmeans_baseline(emb, k, s)) for s in ctx.seeds]
                out.setdefault(f"{name}_{method}", {"grid": [], "acc": [], "time": []})
                out[f"{name}_{method}"]["grid"].append(value)
                out[f"{name}_{method}"]["acc"].append(accs)
                out[f"{name}_{method}"]["time"].append(secs)
            best = max(np.mean(a) for a in out[f"{name}_{method}"]["acc"])
            ctx.progress(f"{name} {method}: best grid ACC {best:.3f}")
    write_json(ctx.out / "baselines.json", out)
    return StepOutput()


def _fit(ctx: StepContext[LIHFConfig]) -> StepOutput:
    from subspacelab.studies.lihf_dsc import training

    m = ctx.cfg.model
    meta = read_json(ctx.inputs["data"] / "datasets.json")
    results: dict[str, dict[str, object]] = {}
    for name in meta["datasets"]:
        images, labels = _load(ctx, name)
        k, top_k = int(labels.max()) + 1, int(meta["priors"][name]["top_k"])
        x = torch.from_numpy(images)
        acc = functools.partial(cluster_accuracy, labels)
        for seed in ctx.seeded():
            row: dict[str, object] = {}
            t0 = time.perf_counter()
            # both variants start from the same pre-trained AE (same seed, same loss)
            ae = training.pretrain(ctx, x, m.channels, m.kernel, m.lr, m.pretrain_epochs, seed)
            pretrain_secs = time.perf_counter() - t0
            for layers in ("all", "last"):
                t0 = time.perf_counter()
                r = training.fit_lihf(
                    ctx,
                    ae,
                    x,
                    k,
                    lr=m.lr,
                    max_epochs=m.max_epochs,
                    stage2_weight=m.stage2_weight,
                    eps=m.eps,
                    ema=m.ema,
                    check_every=m.check_every,
                    labels_every=m.labels_every,
                    top_k=top_k,
                    layers=layers,
                    seed=seed,
                    stage2=layers == "all",
                    # the ACC curve is logged for the full model only (claim R4), never used
                    acc_of=acc if layers == "all" else None,
                )
                secs = time.perf_counter() - t0
                stage1 = evaluate(labels, core.cluster_coefficients(r.coef_stage1, k, top_k, seed))
                if layers == "all":
                    final = evaluate(
                        labels, core.cluster_coefficients(r.coef_stage2, k, top_k, seed)
                    )
                    row.update({f"lihf_{key}": v for key, v in final.items()})
                    row.update({f"stage1_{key}": v for key, v in stage1.items()})
                    row.update(
                        lihf_time=pretrain_secs + secs,
                        stop_stage1=r.stop_stage1,
                        stop_stage2=r.stop_stage2,
                        self_stopped=float(r.stopped),
                        self_stopped2=float(r.stopped2),
                        curve_epochs=r.curve_epochs,
                        curve_acc=r.curve_acc,
                    )
                else:
                    row["last_layer_acc"] = stage1["acc"]
                    row["last_layer_stop"] = r.stop_stage1
            results[f"{name}_seed{seed}"] = row
            ctx.progress(
                f"{name} seed {seed}: LIHF {row['lihf_acc']:.3f} (stage 1 {row['stage1_acc']:.3f},"
                f" stops {row['stop_stage1']} + {row['stop_stage2']}), last-layer "
                f"{row['last_layer_acc']:.3f}"
            )
    write_json(
        ctx.out / "results.json",
        {"datasets": meta["datasets"], "priors": meta["priors"], "results": results},
    )
    return StepOutput()


def plateau_gap(curve_epochs: list[int], curve_acc: list[float], stop: int) -> float:
    """Relative gap |ACC(stop) − plateau| / plateau, the plateau being the mean ACC over the last
    third of the logged curve."""
    acc = np.asarray(curve_acc)
    plateau = float(acc[-max(1, len(acc) // 3) :].mean())
    at_stop = float(acc[list(curve_epochs).index(stop)])
    return abs(at_stop - plateau) / max(plateau, 1e-12)


def _evaluate(ctx: StepContext[LIHFConfig]) -> Report:
    doc = read_json(ctx.inputs["fit"] / "results.json")
    base = read_json(ctx.inputs["baselines"] / "baselines.json")
    metrics: dict[str, list[float] | float] = {}
    rows = [
        "| dataset | top-k prior | LIHF | stage 1 | last layer | "
        + " | ".join(f"{b} median / best (oracle)" for b in BASELINES)
        + " |",
        "|" + "---|" * 8,
    ]
    for name in doc["datasets"]:
        per_seed = [doc["results"][f"{name}_seed{s}"] for s in ctx.seeds]
        for key, metric in RESULT_METRICS.items():
            metrics[f"{name}/{metric}"] = [float(r[key]) for r in per_seed]
        metrics[f"{name}/lihf/plateau_gap"] = [
            plateau_gap(r["curve_epochs"], r["curve_acc"], int(r["stop_stage1"])) for r in per_seed
        ]
        metrics[f"{name}/top_k"] = float(doc["priors"][name]["top_k"])
        cells, best_method = [], (-1.0, "", 0)
        for b in BASELINES:
            accs = np.asarray(base[f"{name}_{b}"]["acc"], dtype=np.float64)  # grid × seeds
            # the grid's median and its label-oracle best (one λ, chosen on the seed mean)
            metrics[f"{name}/{b}_median/acc"] = np.median(accs, axis=0).tolist()
            best = int(np.argmax(accs.mean(axis=1)))
            metrics[f"{name}/{b}_best/acc"] = accs[best].tolist()
            best_method = max(best_method, (float(accs[best].mean()), b, best))
            cells.append(f"{np.median(accs.mean(axis=1)):.3f} / {accs[best].mean():.3f}")
        _, b, best = best_method
        metrics[f"{name}/best_linear/acc"] = list(base[f"{name}_{b}"]["acc"][best])
        means = [np.mean(metrics[f"{name}/{arm}/acc"]) for arm in ("lihf", "stage1", "last_layer")]
        rows.append(
            f"| {name} | {doc['priors'][name]['top_k']} ({doc['priors'][name]['source']}) | "
            + " | ".join(f"{v:.3f}" for v in means)
            + " | "
            + " | ".join(cells)
            + " |"
        )
    return Report(
        metrics=metrics,
        tables={
            "ACC (mean over seeds)": "\n".join(rows),
            "Deviations from the spec and the script": _deviations(ctx),
        },
        figures={"acc": score_bars(metrics, "/acc", "LIHF-DSC and baselines: clustering accuracy")},
        curves={
            "acc_vs_epoch": acc_curve(
                [doc["results"][f"{n}_seed{s}"] for n in doc["datasets"] for s in ctx.seeds]
            )
        },
    )


def acc_curve(runs: list[dict]) -> list[dict[str, float]]:
    """The DVC curve: stage 1's ACC against the epoch (the full model's logged curve, mean
    over datasets and seeds at each logged epoch) and the share of runs that self-stopped by
    then."""
    epochs = sorted({int(e) for r in runs for e in r["curve_epochs"]})
    rows = []
    for e in epochs:
        accs = [
            a
            for r in runs
            for x, a in zip(r["curve_epochs"], r["curve_acc"], strict=True)
            if x == e
        ]
        stopped = [float(bool(r["self_stopped"]) and r["stop_stage1"] <= e) for r in runs]
        rows.append(
            {"epoch": float(e), "acc": float(np.mean(accs)), "stopped": float(np.mean(stopped))}
        )
    return rows


def _deviations(ctx: StepContext[LIHFConfig]) -> str:
    """What differs from the spec's miniature and the authors' script, and why."""
    m, d = ctx.cfg.model, ctx.cfg.data
    rows = [
        "| spec / script | here | why |",
        "|---|---|---|",
        "| pre-training: reconstruction MSE or the distance-preserving loss | summed MSE, "
        f"{m.pretrain_epochs} epochs | the spec allows either; the distance-preserving product "
        "shrinks the activations unless normalised, which the spec leaves open |",
        f"| stage 2 recomputes Q every epoch | every {m.labels_every} epochs | the spec's cost "
        "note: spectral clustering of C every epoch is the cost driver; recompute every m "
        "epochs and log m |",
        f"| self-stop: relative loss change below ε | below ε = {m.eps:g} every "
        f"{m.check_every} epochs on the loss smoothed by an EMA (β = {m.ema:g}) | the script "
        "has no stopping rule (fixed epochs); the spec's pitfall asks for the EMA |",
    ]
    if "synthetic" in d.datasets:
        rows.append(
            f"| synthetic: 5 subspaces of dim 4, tanh warp + noise | + a centre of norm "
            f"{d.syn_offset:g} per subspace, noise {d.syn_noise:g} | as specified, LSR's median "
            "was 1.000 and R1/R2 could not be decided (issue 12) |"
        )
    if m.top_k == 0:
        rows.append(
            "| top-k prior 9 (faces) | per dataset from the data (see the ACC table) | the 9 is "
            "a face prior; the spec asks for each dataset's own |"
        )
    return "\n".join(rows)


def _datasets(m: Metrics) -> list[str]:
    return sorted(m.family("{dataset}/lihf/acc"))


def _check_r1(m: Metrics) -> ClaimResult:
    tests = [
        on_mean(
            f"{d}: LIHF - {b} grid median",
            gap(m[f"{d}/lihf/acc"], m[f"{d}/{b}_median/acc"]),
            ">=",
            0.0,
        )
        for d in _datasets(m)
        for b in BASELINES
    ]
    return decide(*tests)


def _check_r2(m: Metrics) -> ClaimResult:
    tests = [
        on_mean(
            f"{d}: LIHF - best-tuned linear",
            gap(m[f"{d}/lihf/acc"], m[f"{d}/best_linear/acc"]),
            ">=",
            -0.05,
        )
        for d in _datasets(m)
    ]
    return decide(*tests)


def _check_r3(m: Metrics) -> ClaimResult:
    tests = []
    for d in _datasets(m):
        multi, last, final = (m[f"{d}/{arm}/acc"] for arm in ("stage1", "last_layer", "lihf"))
        tests.append(on_mean(f"{d}: multi-layer - last-layer", gap(multi, last), ">=", 0.0))
        tests.append(on_mean(f"{d}: stage 2 - stage 1", gap(final, multi), ">=", 0.0))
        # a stage 2 that never trained (stage 1 used the whole cap) leaves C as it was: the
        # zero difference above would pass by construction
        tests.append(every(f"{d}: stage-2 epochs", m[f"{d}/lihf/stop_stage2"], ">=", 1.0))
    return decide(*tests)


def _check_r4(m: Metrics) -> ClaimResult:
    tests, measured = [], {}
    for d in _datasets(m):
        tests.append(
            on_mean(f"{d}: |ACC(stop) - plateau| / plateau", m[f"{d}/lihf/plateau_gap"], "<=", 0.10)
        )
        # a rule that never fired before the cap has not located the plateau
        tests.append(every(f"{d}: stage 1 stopped itself", m[f"{d}/lihf/self_stopped"], ">=", 1.0))
        measured[f"{d}_stop_epoch"] = m[f"{d}/lihf/stop_stage1"]
    return decide(*tests, **measured)


STUDY = Study(
    slug=SLUG,
    title="Label-independent hyperparameter-free self-supervised single-view deep subspace "
    "clustering (LIHF-DSC)",
    arxiv="2504.18179",
    group="subspace clustering",
    config=LIHFConfig,
    steps=(
        Step(
            "data",
            _data,
            reads=("data", "model"),
            description="digits subset + warped union of subspaces, top-k priors",
        ),
        Step(
            "baselines",
            _baselines,
            needs=("data",),
            reads=("baselines",),
            description="LSR / SSC / LRR over their λ grids, same post-processing",
        ),
        Step(
            "fit",
            _fit,
            needs=("data",),
            reads=("model",),
            kind="models",
            description="LIHF stages 1-2 with self-stop, and the last-layer ablation",
        ),
        Step(
            "evaluate",
            _evaluate,
            needs=("fit", "baselines"),
            reads=("data", "model"),  # for the deviations table
            kind="report",
            description="ACC/NMI/ARI over seeds, baseline grids, claims",
        ),
    ),
    claims=(
        Claim(
            "R1",
            "LIHF ACC ≥ the *median* ACC of each linear baseline over its λ-grid",
            "beats most tuned linear subspace clustering methods with no tuning",
            _check_r1,
        ),
        Claim(
            "R2",
            "LIHF ACC ≥ best-tuned linear − 5 pts",
            "close to the best label-tuned method",
            _check_r2,
        ),
        Claim(
            "R3",
            "multi-layer SE ≥ last-layer-only SE (ablation), and stage 2 does not lower ACC",
            "layer-wise self-expression and the structured norm each help",
            _check_r3,
        ),
        Claim(
            "R4",
            "the self-stop epoch lies within 10% of the plateau of the (logged, unused) ACC curve",
            "relative-change self-stopping needs no labels",
            _check_r4,
        ),
    ),
    curves=(
        Curve(
            "acc_vs_epoch",
            x="epoch",
            y=("acc", "stopped"),
            title="stage-1 ACC per epoch and the share of runs self-stopped by then "
            "(mean over datasets and seeds)",
        ),
    ),
)
