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

import time

import numpy as np

from subspacelab.clustering import (
    evaluate,
    kmeans_baseline,
    spectral_baseline,
    spectral_clustering,
    union_of_manifolds,
)
from subspacelab.clustering.plots import score_bars
from subspacelab.data.cifar import fetch_cifar, load_cifar
from subspacelab.io import load_tensors, read_json, save_tensors, write_json
from subspacelab.nets.training import state_dict_cpu
from subspacelab.registry import (
    Claim,
    Metrics,
    Report,
    Step,
    StepContext,
    StepOutput,
    Study,
)
from subspacelab.runner import seed_all
from subspacelab.studies.mlc import core
from subspacelab.studies.mlc.config import MLCConfig, TrainConfig
from subspacelab.verdicts import ClaimResult, decide, every, gap, on_mean

SLUG = "mlc"


def _data(ctx: StepContext) -> StepOutput:
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
        save_tensors(ctx.out / f"{name}.safetensors", {"x": x, "y": y}, study=SLUG, kind="data")
        ctx.progress(f"{name}: {x.shape[0]} samples, {int(y.max()) + 1} classes")
    write_json(ctx.out / "datasets.json", {"datasets": list(d.datasets), "sides": sides})
    return StepOutput()


def schedule(t: TrainConfig) -> core.MLCSchedule:
    """The core's schedule from the ``train`` section."""
    fields = core.MLCSchedule.__dataclass_fields__
    return core.MLCSchedule(**{f: getattr(t, f) for f in fields})


def _fit(ctx: StepContext) -> StepOutput:
    meta = read_json(ctx.inputs["data"] / "datasets.json")
    m, sched = ctx.cfg.model, schedule(ctx.cfg.train)
    results: dict[str, dict[str, float]] = {}
    for name in meta["datasets"]:
        t, _ = load_tensors(ctx.inputs["data"] / f"{name}.safetensors", study=SLUG, kind="data")
        x, y = t["x"], t["y"].numpy()
        side = meta["sides"][name]
        k = int(y.max()) + 1
        flat = x.reshape(x.shape[0], -1).numpy()
        for seed in ctx.seeds:
            seed_all(seed)
            net = core.MLCNet(flat.shape[1], m.hidden, m.z_dim, m.backbone)
            t0 = time.perf_counter()
            core.warmup(ctx, net, x, side, sched, seed)
            warm_z, _ = core.embed(net, x)
            save_tensors(
                ctx.out / f"{name}_seed{seed}_warmup.safetensors",
                state_dict_cpu(net),
                study=SLUG,
                kind="model/warmup",
            )
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
            save_tensors(
                ctx.out / f"{name}_seed{seed}_mlc.safetensors",
                state_dict_cpu(net),
                study=SLUG,
                kind="model/mlc",
            )
            zn = z.double().numpy()
            ranks = [
                core.numerical_rank(zn[pred == j], ctx.cfg.eval.rank_rel)
                for j in np.unique(pred)
                if (pred == j).sum() > 1
            ]
            r = {f"mlc_{key}": v for key, v in evaluate(y, pred).items()}
            r.update(
                mlc_time=secs,
                rank_max=float(max(ranks)),
                rank_mean=float(np.mean(ranks)),
                n=float(x.shape[0]),
                row_dev=float(np.abs(gamma.sum(axis=1) - 1).max()),
                col_dev=float(np.abs(gamma.sum(axis=0) - 1).max()),
                final_R=terms["R"],
                final_Rc=terms["Rc"],
            )
            for base, feats, fn in (
                ("raw_kmeans", flat, kmeans_baseline),
                ("raw_spectral", flat, spectral_baseline),
                ("warm_kmeans", warm_z.numpy(), kmeans_baseline),
            ):
                t0 = time.perf_counter()
                r.update({f"{base}_{key}": v for key, v in evaluate(y, fn(feats, k, seed)).items()})
                r[f"{base}_time"] = time.perf_counter() - t0
            results[f"{name}_seed{seed}"] = r
            ctx.progress(
                f"{name} seed {seed}: MLC {r['mlc_acc']:.3f}, warm-up k-means "
                f"{r['warm_kmeans_acc']:.3f}, raw k-means {r['raw_kmeans_acc']:.3f}, "
                f"raw spectral {r['raw_spectral_acc']:.3f}, rank ≤ {r['rank_max']:g}"
            )
    write_json(
        ctx.out / "results.json",
        {"datasets": meta["datasets"], "results": results, "z_dim": m.z_dim},
    )
    return StepOutput()


def _evaluate(ctx: StepContext) -> Report:
    doc = read_json(ctx.inputs["fit"] / "results.json")
    metrics: dict[str, list[float] | float] = {"z_dim": float(doc["z_dim"])}
    for name in doc["datasets"]:
        for seed in ctx.seeds:
            for key, value in doc["results"][f"{name}_seed{seed}"].items():
                metrics.setdefault(f"{name}_{key}", []).append(float(value))
    methods = ("mlc", "warm_kmeans", "raw_kmeans", "raw_spectral")
    rows = ["| dataset | " + " | ".join(methods) + " |", "|" + "---|" * (len(methods) + 1)]
    for name in doc["datasets"]:
        rows.append(
            f"| {name} | "
            + " | ".join(f"{np.mean(metrics[f'{name}_{m}_acc']):.3f}" for m in methods)
            + " |"
        )
    return Report(
        metrics=metrics,
        tables={
            "ACC (mean over seeds)": "\n".join(rows),
            "Deviations from the spec's miniature": _deviations(ctx, doc, metrics),
        },
        figures={"acc": score_bars(metrics, "_acc", "MLC and baselines: clustering accuracy")},
    )


def _deviations(ctx: StepContext, doc: dict, metrics: dict[str, list[float] | float]) -> str:
    """What differs from the spec's miniature, and why (issue 12: stated, not hidden)."""
    t, d = ctx.cfg.train, ctx.cfg.data
    sizes = ", ".join(
        f"{name} n = {int(np.mean(metrics[f'{name}_n']))}" for name in doc["datasets"]
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
    mlc, raw, warm = (m[f"digits_{x}_acc"] for x in ("mlc", "raw_kmeans", "warm_kmeans"))
    return decide(
        on_mean("MLC - raw k-means", gap(mlc, raw), ">=", 0.05),
        on_mean("MLC - warm-up k-means", gap(mlc, warm), ">=", 0.0),
        mlc_acc=mlc,
        raw_kmeans_acc=raw,
        warm_kmeans_acc=warm,
    )


def _check_b(m: Metrics) -> ClaimResult:
    mlc, km, sc = (m[f"manifolds_{x}_acc"] for x in ("mlc", "raw_kmeans", "raw_spectral"))
    # "clearly lower": at least 5 points below MLC, on the paired per-seed difference
    return decide(
        on_mean("MLC ACC", mlc, ">=", 0.9),
        on_mean("MLC - raw k-means", gap(mlc, km), ">=", 0.05),
        on_mean("MLC - raw spectral", gap(mlc, sc), ">=", 0.05),
        mlc_acc=mlc,
        raw_kmeans_acc=km,
        raw_spectral_acc=sc,
    )


def _datasets(m: Metrics) -> list[str]:
    return sorted(k[: -len("_rank_max")] for k in m if k.endswith("_rank_max"))


def _check_c(m: Metrics) -> ClaimResult:
    d = m["z_dim"].mean
    return decide(
        *(
            on_mean(f"{name}: largest per-cluster rank", m[f"{name}_rank_max"], "<=", d / 3)
            for name in _datasets(m)
        ),
        z_dim=d,
    )


def _check_d(m: Metrics) -> ClaimResult:
    tests = []
    for name in _datasets(m):
        tests.append(every(f"{name}: max |row sum - 1|", m[f"{name}_row_dev"], "<=", 1e-3))
        tests.append(every(f"{name}: max |column sum - 1|", m[f"{name}_col_dev"], "<=", 1e-3))
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
)
