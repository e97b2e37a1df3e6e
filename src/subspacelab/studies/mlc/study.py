"""MLC study: data -> fit -> evaluate (Ding et al., ICCV 2023, arXiv:2301.01805).

* data — mini: the union of curved manifolds (interpenetrating in a shared latent space, so
  raw k-means and kNN spectral clustering are far from perfect; issue 12) and load_digits
  (pixels in [0, 1]); full: CIFAR-10/100 via :mod:`subspacelab.data.cifar` (md5-pinned
  archives, restricted unpickler).
* fit — per dataset and seed: TCR warm-up, one-shot cluster-head init, MLC; the warm-up and the
  final networks are saved (safetensors); baselines on the same samples.
* evaluate — spectral clustering of Γ, ACC/NMI/ARI, Γ marginals, per-cluster numerical rank of
  Z; claims (a)–(d), each decided on per-seed values (paired differences for comparisons).
"""

from __future__ import annotations

import math
import time

import numpy as np

from subspacelab.api import (
    Claim,
    ClaimResult,
    Curve,
    Metrics,
    Report,
    SeedMetrics,
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
    MLCSchedule,
    evaluate,
    kmeans_baseline,
    spectral_baseline,
    spectral_clustering,
    union_of_manifolds,
)
from subspacelab.clustering.plots import score_bars
from subspacelab.data.cifar import fetch_cifar, load_cifar
from subspacelab.studies.mlc import core
from subspacelab.studies.mlc.config import MLCConfig

SLUG = "mlc"
METHODS = ("mlc", "warm_kmeans", "raw_kmeans", "raw_spectral")
SPECTRUM_ARMS = ("mlc", "warmup")  # Z after MLC, and after the warm-up alone


def _data(ctx: StepContext[MLCConfig]) -> StepOutput:
    d = ctx.cfg.data
    sides: dict[str, int | None] = {}
    for name in d.datasets:
        if name == "manifolds":
            x, y = union_of_manifolds(
                d.n_per,
                d.n_clusters,
                d.manifold_dim,
                d.ambient,
                d.mlp_hidden,
                d.noise,
                d.data_seed,
                latent=d.latent_dim,
                offset=d.offset,
            )
            sides[name] = None
        elif name == "digits":
            from sklearn.datasets import load_digits

            x, y = load_digits(return_X_y=True)
            x, y = (x / 16.0).astype(np.float32), y.astype(np.int64)
            sides[name] = 8
        else:
            split = load_cifar(fetch_cifar(name, ctx.root / d.cifar_dir, ctx.progress), name)
            x, y = split.x_train, split.y_train
            sides[name] = 32
        if x.shape[0] > d.max_samples:
            keep = np.random.default_rng(d.data_seed).choice(x.shape[0], d.max_samples, False)
            x, y = x[np.sort(keep)], y[np.sort(keep)]
        ctx.save(name, {"x": x, "y": y})
        ctx.progress(f"{name}: {x.shape[0]} samples, {int(y.max()) + 1} classes")
    write_json(ctx.out / "datasets.json", {"datasets": list(d.datasets), "sides": sides})
    return StepOutput()


def _fit(ctx: StepContext[MLCConfig]) -> StepOutput:
    from subspacelab.api import state_dict_cpu

    meta = read_json(ctx.inputs["data"] / "datasets.json")
    m, sched = ctx.cfg.model, MLCSchedule.of(ctx.cfg.train)
    results: dict[str, dict[str, float]] = {}
    spectra: dict[str, dict[str, list[float]]] = {}
    for name in meta["datasets"]:
        t = ctx.load(name, kind="data")
        x, y = t["x"], t["y"].numpy()
        side = meta["sides"][name]
        k = int(y.max()) + 1
        flat = x.reshape(x.shape[0], -1).numpy()
        for seed in ctx.seeded():
            net = core.MLCNet(flat.shape[1], m.hidden, m.z_dim, m.backbone)
            t0 = time.perf_counter()
            core.warmup(ctx, net, x, side, sched, seed)
            warm_z, _ = core.embed(net, x)
            ctx.save(f"{name}_seed{seed}_warmup", state_dict_cpu(net), kind="model/warmup")
            core.copy_subspace_to_cluster(net)
            terms = core.fit_mlc(ctx, net, x, side, sched, seed)
            z, c = core.embed(net, x)
            gamma = core.membership(
                c.double(),
                sched.eta,
                sched.sinkhorn_iters,
                sched.sinkhorn_tol,
                sched.sinkhorn_max_iters,
            ).numpy()
            pred = spectral_clustering(0.5 * (gamma + gamma.T), k, seed)
            secs = time.perf_counter() - t0
            ctx.save(f"{name}_seed{seed}_mlc", state_dict_cpu(net), kind="model/mlc")
            zn = z.double().numpy()
            spectra[f"{name}_seed{seed}"] = {
                "mlc": class_spectrum(zn, y),
                "warmup": class_spectrum(warm_z.double().numpy(), y),
            }
            ranks = [
                core.numerical_rank(zn[pred == j], ctx.cfg.eval.rank_rel)
                for j in np.unique(pred)
                if (pred == j).sum() > 1
            ]
            # metric names below the dataset's level: <method>/<quantity>
            r = {f"mlc/{key}": v for key, v in evaluate(y, pred).items()}
            r.update(
                {
                    "mlc/wall_time": secs,
                    "mlc/rank_max": float(max(ranks)),
                    "mlc/rank_mean": float(np.mean(ranks)),
                    "mlc/row_dev": float(np.abs(gamma.sum(axis=1) - 1).max()),
                    "mlc/col_dev": float(np.abs(gamma.sum(axis=0) - 1).max()),
                    "mlc/final_R": terms["R"],
                    "mlc/final_Rc": terms["Rc"],
                    "n": float(x.shape[0]),
                }
            )
            for base, feats, fn in (
                ("raw_kmeans", flat, kmeans_baseline),
                ("raw_spectral", flat, spectral_baseline),
                ("warm_kmeans", warm_z.numpy(), kmeans_baseline),
            ):
                t0 = time.perf_counter()
                r.update({f"{base}/{key}": v for key, v in evaluate(y, fn(feats, k, seed)).items()})
                r[f"{base}/wall_time"] = time.perf_counter() - t0
            results[f"{name}_seed{seed}"] = r
            ctx.progress(
                f"{name} seed {seed}: MLC {r['mlc/acc']:.3f}, warm-up k-means "
                f"{r['warm_kmeans/acc']:.3f}, raw k-means {r['raw_kmeans/acc']:.3f}, "
                f"raw spectral {r['raw_spectral/acc']:.3f}, rank ≤ {r['mlc/rank_max']:g}"
            )
    write_json(
        ctx.out / "results.json",
        {"datasets": meta["datasets"], "results": results, "z_dim": m.z_dim, "spectra": spectra},
    )
    return StepOutput()


def class_spectrum(z: np.ndarray, y: np.ndarray) -> list[float]:
    """Singular values of Z within each true class, each divided by its class's largest, then
    averaged over the classes: how close each class lies to a low-dimensional subspace."""
    dim = min(z.shape[1], *(int((y == j).sum()) for j in np.unique(y)))
    per_class = []
    for j in np.unique(y):
        sv = np.linalg.svd(z[y == j], compute_uv=False)[:dim]
        per_class.append(sv / max(float(sv[0]), 1e-12))
    return np.mean(per_class, axis=0).tolist()


def spectrum_curve(spectra: list[dict[str, list[float]]]) -> list[dict[str, float]]:
    """The DVC curve: the per-class normalised singular values of Z of MLC and of its warm-up
    features against their index (mean over datasets and seeds; NaN past a run's length)."""
    size = max(len(s[arm]) for s in spectra for arm in SPECTRUM_ARMS)

    def at(arm: str, i: int) -> float:
        vals = [s[arm][i] for s in spectra if i < len(s[arm])]
        return float(np.mean(vals)) if vals else math.nan

    return [{"index": float(i + 1)} | {a: at(a, i) for a in SPECTRUM_ARMS} for i in range(size)]


def _evaluate(ctx: StepContext[MLCConfig]) -> Report:
    doc = read_json(ctx.inputs["fit"] / "results.json")
    per_seed = SeedMetrics()
    for seed in ctx.seeds:
        per_seed.record(
            {
                f"{name}/{key}": value
                for name in doc["datasets"]
                for key, value in doc["results"][f"{name}_seed{seed}"].items()
            }
        )
    metrics: dict[str, list[float] | float] = {
        "z_dim": float(doc["z_dim"]),
        **per_seed.as_dict(),
    }
    rows = ["| dataset | " + " | ".join(METHODS) + " |", "|" + "---|" * (len(METHODS) + 1)]
    for name in doc["datasets"]:
        rows.append(
            f"| {name} | "
            + " | ".join(f"{np.mean(metrics[f'{name}/{m}/acc']):.3f}" for m in METHODS)
            + " |"
        )
    return Report(
        metrics=metrics,
        tables={
            "ACC (mean over seeds)": "\n".join(rows),
            "Deviations from the spec's miniature": _deviations(ctx, doc, metrics),
        },
        figures={"acc": score_bars(metrics, "/acc", "MLC and baselines: clustering accuracy")},
        curves={"z_spectrum": spectrum_curve(list(doc["spectra"].values()))},
    )


def _deviations(
    ctx: StepContext[MLCConfig], doc: dict, metrics: dict[str, list[float] | float]
) -> str:
    """What differs from the spec's miniature, and why (issue 12: stated, not hidden)."""
    t, d = ctx.cfg.train, ctx.cfg.data
    sizes = ", ".join(
        f"{name} n = {int(np.mean(metrics[f'{name}/n']))}" for name in doc["datasets"]
    )
    rows = [
        "| spec | here | why |",
        "|---|---|---|",
        f"| full batch (n ≤ 2000) | a seeded batch of {t.batch} per step ({sizes}); "
        f"{t.warmup_steps} warm-up and {t.steps} MLC steps | R_c costs O(b²d²) per step "
        "(a GEMM of Γ with the n×d² outer products, forward and backward): at b = n ≈ 2000 "
        "0.5-1 s per step on one core, i.e. 30-60 min for 3 seeds × 2 datasets × 700 steps; the "
        "spec's step counts are kept, the batch is not. (γ/2)‖Γ‖²_F is the paper's, not "
        "rescaled, so its pull against Γ = I is that of a batch of this size |",
        f"| Sinkhorn, 5 iterations | converged (columns within {t.sinkhorn_tol:g}, at most "
        f"{t.sinkhorn_max_iters} updates, ending on the row update), then "
        f"{t.sinkhorn_iters} differentiated updates | Γ must be doubly stochastic (claim (d)); "
        "5 updates from scratch leave the marginals a few % off |",
        f"| manifolds: a random 3-D tanh MLP per cluster into R^50 | the MLPs map into a shared "
        f"{d.latent_dim}-d latent space (centres of std {d.offset:g}), embedded in "
        f"R^{d.ambient} | with independent MLPs the manifolds never meet: raw k-means and kNN "
        "spectral clustering score 1.000 and claim (b) cannot be decided (issue 12) |",
    ]
    return "\n".join(rows)


def _check_a(m: Metrics) -> ClaimResult:
    mlc, raw, warm = (m[f"digits/{x}/acc"] for x in ("mlc", "raw_kmeans", "warm_kmeans"))
    return decide(
        on_mean("MLC - raw k-means", gap(mlc, raw), ">=", 0.05),
        on_mean("MLC - warm-up k-means", gap(mlc, warm), ">=", 0.0),
        mlc_acc=mlc,
        raw_kmeans_acc=raw,
        warm_kmeans_acc=warm,
    )


def _check_b(m: Metrics) -> ClaimResult:
    mlc, km, sc = (m[f"manifolds/{x}/acc"] for x in ("mlc", "raw_kmeans", "raw_spectral"))
    # "clearly lower": at least 5 points below MLC, on the paired per-seed difference
    return decide(
        on_mean("MLC ACC", mlc, ">=", 0.9),
        on_mean("MLC - raw k-means", gap(mlc, km), ">=", 0.05),
        on_mean("MLC - raw spectral", gap(mlc, sc), ">=", 0.05),
        mlc_acc=mlc,
        raw_kmeans_acc=km,
        raw_spectral_acc=sc,
    )


def _check_c(m: Metrics) -> ClaimResult:
    d = m["z_dim"].mean
    return decide(
        *(
            on_mean(f"{name}: largest per-cluster rank", rank, "<=", d / 3)
            for name, rank in m.family("{dataset}/mlc/rank_max").items()
        ),
        z_dim=d,
    )


def _check_d(m: Metrics) -> ClaimResult:
    tests = []
    for name, row in m.family("{dataset}/mlc/row_dev").items():
        tests.append(every(f"{name}: max |row sum - 1|", row, "<=", 1e-3))
        tests.append(every(f"{name}: max |column sum - 1|", m[f"{name}/mlc/col_dev"], "<=", 1e-3))
    return decide(*tests)


STUDY = Study(
    slug=SLUG,
    title="Unsupervised Manifold Linearizing and Clustering (MLC)",
    arxiv="2301.01805",
    group="subspace clustering",
    config=MLCConfig,
    steps=(
        Step("data", _data, reads=("data",), description="manifolds + digits, or CIFAR"),
        Step(
            "fit",
            _fit,
            needs=("data",),
            reads=("model", "train", "eval"),
            kind="models",
            description="TCR warm-up, MLC, spectral clustering of Γ, baselines",
        ),
        Step(
            "evaluate",
            _evaluate,
            needs=("fit",),
            reads=("data", "train"),  # for the deviations table
            kind="report",
            description="ACC/NMI/ARI over seeds, Γ marginals, ranks, claims",
        ),
    ),
    claims=(
        Claim(
            "a",
            "digits: MLC ACC > k-means on raw pixels by ≥ 5 pts, and ≥ k-means on the "
            "warm-up features",
            "CIFAR-10 ACC ≈ 86%, above deep-clustering SOTA",
            _check_a,
        ),
        Claim(
            "b",
            "synthetic: MLC ACC ≥ 0.9, while raw-feature k-means and spectral clustering "
            "are clearly lower",
            "MLC linearises and clusters a union of manifolds",
            _check_b,
        ),
        Claim(
            "c",
            "per-cluster numerical rank of Z ≤ 1/3 of d",
            "per cluster, Z has low numerical rank",
            _check_c,
        ),
        Claim(
            "d",
            "Γ row sums = 1 and column sums = 1 ± 1e-3",
            "Γ is doubly stochastic (Sinkhorn projection)",
            _check_d,
        ),
    ),
    curves=(
        Curve(
            "z_spectrum",
            x="index",
            y=SPECTRUM_ARMS,
            title="per-class singular values of Z / the largest (mean over classes, datasets, "
            "seeds)",
        ),
    ),
)
