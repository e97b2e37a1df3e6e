"""S2CAG study: graphs -> fit -> evaluate (Lin et al., KDD 2025, arXiv:2411.11074).

* graphs — mini: one contextual SBM per regime and seed; full: Planetoid Cora/Citeseer/PubMed
  downloaded with pinned SHA-256 (every pin is checked before the first download; an unpinned
  file is refused) and read by :func:`subspacelab.clustering.datasets.load_planetoid`.
* fit — per graph and seed: S2CAG and M-S2CAG over the (T, α) grid, the label-free choice
  (highest modularity of the clustering on A) and, marked as such, the label-oracle choice;
  the baselines (k-means on TF-IDF, spectral clustering of A, SGC + k-means, SAGSC-style);
  conductance on the ZZᵀ graph of S2CAG's clusters, of k-means on the same Z and of a random
  partition of the same sizes (the scale: the ZZᵀ graph is dense, so every partition's
  conductance sits within ~0.01 of a random one's).
* evaluate — metrics over seeds and the claims R1–R4 on paired per-seed differences.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from subspacelab.api import (
    Claim,
    ClaimResult,
    Curve,
    Metrics,
    Report,
    SeedMetrics,
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
from subspacelab.clustering import (
    AttributedGraph,
    conductance,
    csbm,
    evaluate,
    kmeans_baseline,
    modularity,
)
from subspacelab.clustering.datasets import PLANETOID_PARTS, load_planetoid
from subspacelab.clustering.plots import score_bars
from subspacelab.data.download import Resource, fetch
from subspacelab.studies.s2cag import core
from subspacelab.studies.s2cag.config import ModelConfig, S2CAGConfig

SLUG = "s2cag"
MODES = ("s2cag", "m_s2cag")  # the paper's two variants, each over the (T, α) grid
METHODS = ("s2cag", "m_s2cag", "feature_kmeans", "graph_spectral", "sgc_kmeans", "sagsc")


def _save_graph(ctx: StepContext[S2CAGConfig], name: str, g: AttributedGraph) -> None:
    a, x = g.adjacency.tocoo(), g.features.tocoo()
    ctx.save(
        name,
        {
            "adj_row": a.row.astype(np.int64),
            "adj_col": a.col.astype(np.int64),
            "x_row": x.row.astype(np.int64),
            "x_col": x.col.astype(np.int64),
            "x_val": x.data.astype(np.float64),
            "shape": np.array([g.n_nodes, x.shape[1]], dtype=np.int64),
            "labels": g.labels,
        },
        kind="graph",
    )


def _load_graph(ctx: StepContext[S2CAGConfig], name: str) -> AttributedGraph:
    t = {k: v.numpy() for k, v in ctx.load(name, kind="graph").items()}
    n, m = (int(v) for v in t["shape"])
    adj = sp.coo_matrix((np.ones(t["adj_row"].size), (t["adj_row"], t["adj_col"])), (n, n))
    x = sp.coo_matrix((t["x_val"], (t["x_row"], t["x_col"])), (n, m))
    return AttributedGraph(adj.tocsr(), x.tocsr(), t["labels"])


def planetoid_resources(url: str, name: str, sha256: dict[str, str]) -> list[Resource]:
    """The eight ``ind.<name>.*`` files of one Planetoid graph under ``url`` with their pinned
    SHA-256; raises DownloadError naming the first file that has no pin."""
    files = [f"ind.{name}.{part}" for part in (*PLANETOID_PARTS, "test.index")]
    return [Resource(f"{url}/{f}", f, sha256=sha256.get(f) or None) for f in files]


def _graphs(ctx: StepContext[S2CAGConfig]) -> StepOutput:
    d = ctx.cfg.data
    names = []
    if d.source == "csbm":
        for regime, ratio, topic in zip(d.regimes, d.ratios, d.topic_weights, strict=True):
            for seed in ctx.seeds:
                g = csbm(
                    d.n_nodes,
                    d.n_clusters,
                    d.mean_degree,
                    ratio,
                    d.n_words,
                    d.words_per_node,
                    topic,
                    seed,
                )
                _save_graph(ctx, f"{regime}_seed{seed}", g)
                names.append(regime)
            ctx.progress(f"csbm {regime}: ratio {ratio}, topic weight {topic}")
    else:
        root = ctx.root / d.planetoid_dir
        # every file's pin is checked before anything is downloaded (Resource refuses a missing one)
        resources = {
            name: planetoid_resources(d.planetoid_url, name, d.planetoid_sha256)
            for name in d.planetoid
        }
        for name, files in resources.items():
            for resource in files:
                fetch(resource, root, ctx.progress)
            g = load_planetoid(root, name)
            for seed in ctx.seeds:  # the same graph; seeds vary the solvers' randomness
                _save_graph(ctx, f"{name}_seed{seed}", g)
            names.append(name)
    write_json(ctx.out / "graphs.json", {"graphs": sorted(set(names))})
    return StepOutput()


def _timed(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def fit_graph(
    g: AttributedGraph, model: ModelConfig, seed: int
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """All methods on one graph: metrics (acc/nmi/ari/wall_time) per method, the selected
    (T, α), the oracle choice's ACC and the conductances behind R4, named
    ``<method>/<quantity>``; and the sweep: per grid point (T, α), both modes' ACC (reported,
    never used to select)."""
    k = int(g.labels.max()) + 1
    x_tfidf = core.tfidf(g.features)
    x_hat = core.attribute_degree_normalise(x_tfidf)
    p = core.propagation(g.adjacency)
    out: dict[str, float] = {}
    grid = [(t, a) for a in model.alpha_grid for t in model.steps_grid]
    zs: dict[tuple[int, float], np.ndarray] = {}
    t0 = time.perf_counter()
    for alpha in model.alpha_grid:
        for steps, z in core.nsr_path(p, x_hat, list(model.steps_grid), alpha).items():
            zs[(steps, alpha)] = z
    nsr_time = (time.perf_counter() - t0) / len(grid)
    z_s2cag = zs[grid[0]]
    sweep = {key: {"T": float(key[0]), "alpha": float(key[1])} for key in grid}
    for mode in MODES:
        best_q, oracle_acc, chosen = -np.inf, -np.inf, grid[0]
        preds: dict[tuple[int, float], np.ndarray] = {}
        t0 = time.perf_counter()
        for key in grid:
            if mode == "s2cag":
                pred = core.s2cag(zs[key], k, model.power_iters_sub, seed)
            else:
                pred = core.m_s2cag(zs[key], k, model.gamma, model.power_iters_mod, seed)
            preds[key] = pred
            sweep[key][mode] = evaluate(g.labels, pred)["acc"]
            q = modularity(pred, g.adjacency)  # label-free selection
            oracle_acc = max(oracle_acc, evaluate(g.labels, pred)["acc"])  # reported only
            if q > best_q:
                best_q, chosen = q, key
        out[f"{mode}/wall_time"] = nsr_time + (time.perf_counter() - t0) / len(grid)
        out.update({f"{mode}/{m}": v for m, v in evaluate(g.labels, preds[chosen]).items()})
        out[f"{mode}_oracle/acc"] = oracle_acc
        out[f"{mode}/T"], out[f"{mode}/alpha"] = float(chosen[0]), float(chosen[1])
        if mode == "s2cag":
            z_s2cag = zs[chosen]
            out["s2cag/conductance_zz"] = conductance(preds[chosen], factor=z_s2cag)
            km_z = kmeans_baseline(z_s2cag, k, seed)
            out["kmeans_z/acc"] = evaluate(g.labels, km_z)["acc"]
            out["kmeans_z/conductance_zz"] = conductance(km_z, factor=z_s2cag)
            shuffled = np.random.default_rng(seed).permutation(km_z)
            out["random/conductance_zz"] = conductance(shuffled, factor=z_s2cag)
    baselines = {
        "feature_kmeans": lambda: core.feature_kmeans(x_tfidf, k, seed),
        "graph_spectral": lambda: core.graph_spectral(g.adjacency, k, seed),
        "sgc_kmeans": lambda: kmeans_baseline(
            core.sgc_features(g.adjacency, x_tfidf, model.sgc_steps), k, seed
        ),
        "sagsc": lambda: core.sagsc_style(
            g.adjacency, x_tfidf, k, model.sgc_steps, model.sagsc_lam, seed
        ),
    }
    for name, fn in baselines.items():
        pred, secs = _timed(fn)
        out.update({f"{name}/{key}": v for key, v in evaluate(g.labels, pred).items()})
        out[f"{name}/wall_time"] = secs
    return out, list(sweep.values())


def _fit(ctx: StepContext[S2CAGConfig]) -> StepOutput:
    graphs = read_json(ctx.inputs["graphs"] / "graphs.json")["graphs"]
    results: dict[str, dict[str, float]] = {}
    sweeps: dict[str, list[dict[str, float]]] = {}
    for name in graphs:
        for seed in ctx.seeds:
            g = _load_graph(ctx, f"{name}_seed{seed}")
            r, sweeps[f"{name}_seed{seed}"] = fit_graph(g, ctx.cfg.model, seed)
            results[f"{name}_seed{seed}"] = r
            ctx.progress(
                f"{name} seed {seed}: S2CAG {r['s2cag/acc']:.3f} (T={r['s2cag/T']:g}, "
                f"α={r['s2cag/alpha']:g}; oracle {r['s2cag_oracle/acc']:.3f}), "
                f"M-S2CAG {r['m_s2cag/acc']:.3f}, SGC {r['sgc_kmeans/acc']:.3f}, "
                f"k-means {r['feature_kmeans/acc']:.3f}, graph {r['graph_spectral/acc']:.3f}"
            )
    write_json(ctx.out / "results.json", {"graphs": graphs, "results": results, "sweeps": sweeps})
    return StepOutput()


def _evaluate(ctx: StepContext[S2CAGConfig]) -> Report:
    doc = read_json(ctx.inputs["fit"] / "results.json")
    per_seed = SeedMetrics()
    for seed in ctx.seeds:
        per_seed.record(
            {
                f"{name}/{key}": value
                for name in doc["graphs"]
                for key, value in doc["results"][f"{name}_seed{seed}"].items()
            }
        )
    metrics = per_seed.as_dict()
    columns = (*METHODS, "kmeans_z", "s2cag_oracle")
    header = "| graph | " + " | ".join(columns) + " |"
    rows = [header, "|" + "---|" * (len(columns) + 1)]
    for name in doc["graphs"]:
        cells = [f"{np.mean(metrics[f'{name}/{m}/acc']):.3f}" for m in columns]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    cond = ["| graph | S2CAG | k-means on Z | random partition |", "|---|---|---|---|"]
    for name in doc["graphs"]:
        cells = [
            f"{np.mean(metrics[f'{name}/{m}/conductance_zz']):.5f}"
            for m in ("s2cag", "kmeans_z", "random")
        ]
        cond.append(f"| {name} | " + " | ".join(cells) + " |")
    tables = {
        "ACC (mean over seeds; label-free (T, α); kmeans_z: k-means on S2CAG's Z; "
        "s2cag_oracle: the label-oracle (T, α))": "\n".join(rows),
        "Conductance on the ZZᵀ graph (mean over seeds)": "\n".join(cond),
    }
    if ctx.cfg.data.source == "csbm":
        tables["Regimes (CSBM)"] = _regimes(ctx, metrics)
    return Report(
        metrics=metrics,
        tables=tables,
        figures={"acc": score_bars(metrics, "/acc", "S2CAG and baselines: clustering accuracy")},
        curves={"acc_vs_steps": steps_curve(list(doc["sweeps"].values()))},
    )


def steps_curve(sweeps: list[list[dict[str, float]]]) -> list[dict[str, float]]:
    """The DVC curve: both modes' ACC against the propagation steps T (mean over the α grid,
    graphs and seeds): the sensitivity to T that label-free selection has to handle."""
    points = [p for sweep in sweeps for p in sweep]
    return [
        {"T": t} | {m: float(np.mean([p[m] for p in points if p["T"] == t])) for m in MODES}
        for t in sorted({p["T"] for p in points})
    ]


def _regimes(ctx: StepContext[S2CAGConfig], metrics: dict[str, list[float]]) -> str:
    """The CSBM regimes with their single-source baselines, and how they were set (issue 12)."""
    d = ctx.cfg.data
    rows = [
        "| regime | p_in / p_out | edges inside blocks | topic weight | feature-only ACC "
        "| graph-only ACC |",
        "|---|---|---|---|---|---|",
    ]
    for regime, ratio, topic in zip(d.regimes, d.ratios, d.topic_weights, strict=True):
        inside = ratio / (ratio + d.n_clusters - 1)
        rows.append(
            f"| {regime} | {ratio:g} | {inside:.2f} (chance {1 / d.n_clusters:.2f}) | {topic:g} "
            f"| {np.mean(metrics[f'{regime}/feature_kmeans/acc']):.3f} "
            f"| {np.mean(metrics[f'{regime}/graph_spectral/acc']):.3f} |"
        )
    rows.append(
        "\nThe regimes' graph strength and topic weight are set on the single-source baselines "
        "alone, never on S2CAG: issue 12 asks the feature regime for an informative graph and "
        "feature-only ACC ≤ ~0.85 (before, feature-only k-means scored 0.97 and R1 needed an "
        "ACC above 1)."
    )
    return "\n".join(rows)


def _graph_names(m: Metrics) -> list[str]:
    return sorted(m.family("{graph}/s2cag/acc"))


def _check_r1(m: Metrics) -> ClaimResult:
    tests = []
    for g in _graph_names(m):
        f, a = m[f"{g}/feature_kmeans/acc"], m[f"{g}/graph_spectral/acc"]
        best_single = Stat(tuple(max(x, y) for x, y in zip(f.values, a.values, strict=True)))
        tests.append(
            on_mean(
                f"{g}: S2CAG - max(feature, graph)",
                gap(m[f"{g}/s2cag/acc"], best_single),
                ">=",
                0.05,
            )
        )
    return decide(*tests)


def _check_r2(m: Metrics) -> ClaimResult:
    tests = [
        on_mean(f"{g}: S2CAG - {b}", gap(m[f"{g}/s2cag/acc"], m[f"{g}/{b}/acc"]), ">=", -0.01)
        for g in _graph_names(m)
        for b in ("sgc_kmeans", "sagsc")
    ]
    return decide(*tests)


def _check_r3(m: Metrics) -> ClaimResult:
    # |paired difference| ≤ 3 pts: both one-sided bounds must hold (an equivalence test)
    tests = []
    for g in _graph_names(m):
        d = gap(m[f"{g}/m_s2cag/acc"], m[f"{g}/s2cag/acc"])
        tests.append(on_mean(f"{g}: M-S2CAG - S2CAG (upper bound)", d, "<=", 0.03))
        tests.append(on_mean(f"{g}: M-S2CAG - S2CAG (lower bound)", d, ">=", -0.03))
    return decide(*tests)


def relative_conductance(ours: Stat, kmeans: Stat, random: Stat) -> Stat:
    """Per seed (φ_S2CAG − φ_k-means) / (φ_random − φ_k-means): the conductance difference in
    units of k-means' own gain over a random partition of the same sizes (negative: S2CAG cuts
    less). On the dense ZZᵀ graph raw differences are ~1e-5; this puts them on a scale."""
    return Stat(
        tuple(
            (o - k) / (r - k)
            for o, k, r in zip(ours.values, kmeans.values, random.values, strict=True)
        )
    )


def _check_r4(m: Metrics) -> ClaimResult:
    tests, measured = [], {}
    for g in _graph_names(m):
        s, k, r = (m[f"{g}/{x}/conductance_zz"] for x in ("s2cag", "kmeans_z", "random"))
        tests.append(
            on_mean(
                f"{g}: (φ S2CAG - φ k-means on Z) / (φ random - φ k-means on Z)",
                relative_conductance(s, k, r),
                "<",
                0.0,
            )
        )
        measured[f"{g}_raw_difference"] = gap(s, k)
    return decide(*tests, **measured)


STUDY = Study(
    slug=SLUG,
    title="Spectral Subspace Clustering for Attributed Graphs (S2CAG, M-S2CAG)",
    arxiv="2411.11074",
    group="subspace clustering",
    config=S2CAGConfig,
    steps=(
        Step(
            "graphs",
            _graphs,
            reads=("data",),
            description="CSBM graphs per regime and seed, or Planetoid graphs",
        ),
        Step(
            "fit",
            _fit,
            needs=("graphs",),
            reads=("model",),
            description="S2CAG/M-S2CAG over the (T, α) grid, label-free choice, baselines",
        ),
        Step(
            "evaluate",
            _evaluate,
            needs=("fit",),
            reads=("data",),  # the regimes table
            kind="report",
            description="ACC/NMI/ARI over seeds, conductance, claims",
        ),
    ),
    claims=(
        Claim(
            "R1",
            "S2CAG ACC ≥ max(feature-only, graph-only) + 5 pts",
            "S2CAG beats 17 competitors on 8 attributed graphs (ACC/NMI/ARI)",
            _check_r1,
        ),
        Claim(
            "R2",
            "S2CAG ≥ SGC-kmeans − 1 pt, and ≥ SAGSC-style baseline − 1 pt",
            "S2CAG beats SAGSC, SSGC and the other scalable baselines",
            _check_r2,
        ),
        Claim(
            "R3",
            "|ACC(M-S2CAG) − ACC(S2CAG)| ≤ 3 pts",
            "M-S2CAG (modularity) performs on par with S2CAG",
            _check_r3,
        ),
        Claim(
            "R4",
            "S2CAG clusters have lower conductance on the ZZᵀ graph than the k-means clusters "
            "(k-means on the same Z; issue 12)",
            "S2CAG is tied to conductance minimisation on the ZZᵀ graph",
            _check_r4,
        ),
    ),
    curves=(
        Curve(
            "acc_vs_steps",
            x="T",
            y=MODES,
            title="ACC vs propagation steps T (mean over the α grid, graphs and seeds)",
        ),
    ),
)
