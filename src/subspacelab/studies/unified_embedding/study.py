"""unified_embedding study: data -> fit -> evaluate (Coleman et al., NeurIPS 2023,
arXiv:2305.12102).

* data — mini: a generated CTR log (10 fields, log-uniform vocabularies in [10, 50k], Zipf 1.1
  values, 2 noise fields, a ground-truth FM), 200k/50k/50k rows in log order; full: the first
  rows of a hand-placed Criteo-format log (integer counts discretised), pinned by SHA-256.
* fit — per seed, every scheme (per-field equal split, per-field ∝ vocabulary, multiplexed,
  Unified Embedding) at every budget, trained jointly (nets.joint.train_joint) on the same
  batches (independent parameters: identical to separate runs); test AUC/log-loss, parameter counts,
  shared-row shares and the decomposition cosine of the multiplexed tables.
* evaluate — the Pareto plot (AUC vs parameters), tables and claims R1–R4.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

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
from subspacelab.recsys import auc, ctr_log, log_loss
from subspacelab.studies.unified_embedding import core
from subspacelab.studies.unified_embedding.config import UnifiedEmbeddingConfig

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SLUG = "unified_embedding"


def _data(ctx: StepContext[UnifiedEmbeddingConfig]) -> StepOutput:
    d = ctx.cfg.data
    n = d.n_train + d.n_val + d.n_test
    if d.source == "synthetic":
        log = ctr_log(
            n,
            d.n_fields,
            (d.vocab_min, d.vocab_max),
            d.zipf_s,
            d.n_noise,
            d.latent_dim,
            d.target_ctr,
            d.data_seed,
        )
        x, y, logits = log.x, log.y, log.logits
        vocab = list(log.vocab)
        bayes = auc(y[-d.n_test :], logits[-d.n_test :])
    else:
        x, y = d.real_log().read(ctx.root, n, ctx.progress)
        vocab = [int(v) + 1 for v in x.max(axis=0)]
        logits, bayes = np.zeros(n), float("nan")
    ctx.save("log", {"x": x, "y": y, "logits": logits}, kind="data")
    meta = {"vocab": vocab, "splits": [d.n_train, d.n_val, d.n_test], "ctr": float(y.mean())}
    if np.isfinite(bayes):
        meta["bayes_auc"] = float(bayes)
    write_json(ctx.out / "log.json", meta)
    ctx.progress(f"{n} rows, {len(vocab)} fields, vocabularies {min(vocab)}..{max(vocab)}")
    return StepOutput(metrics={"ctr": float(y.mean())})


def _fit(ctx: StepContext[UnifiedEmbeddingConfig]) -> StepOutput:
    from subspacelab.api import Member, state_dict_cpu, tensor_loader, train_joint

    m, t = ctx.cfg.model, ctx.cfg.train
    meta = read_json(ctx.inputs["data"] / "log.json")
    tensors = ctx.load("log", kind="data")
    x, y = tensors["x"].numpy(), tensors["y"].float()
    n_train, n_val, n_test = meta["splits"]
    x_train, x_test = x[:n_train], x[n_train + n_val : n_train + n_val + n_test]
    y_train, y_test = y[:n_train], y[n_train + n_val : n_train + n_val + n_test].numpy()
    schemes = {
        f"{name}/{rows}": scheme
        for rows in m.budgets
        for name, scheme in core.build_schemes(
            meta["vocab"], rows, m.dim, m.ue_large_fields, m.ue_chunks, m.ue_tables
        ).items()
    }
    train_rows = [torch.from_numpy(s.lookup_rows(x_train)) for s in schemes.values()]
    test_rows = [torch.from_numpy(s.lookup_rows(x_test)) for s in schemes.values()]

    def member(net: core.CTRModel, rows: torch.Tensor) -> Member:
        def loss(idx: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.binary_cross_entropy_with_logits(
                net(rows[idx]), y_train[idx]
            )

        return Member(net, loss, lr=t.lr)

    results: dict[str, dict[str, float]] = {}
    for seed in ctx.seeded():
        models = torch.nn.ModuleList(
            core.CTRModel(s, m.dim, m.hidden, m.init_std) for s in schemes.values()
        )
        initial = [net.projections() for net in models]
        train_joint(
            ctx,
            [member(net, rows) for net, rows in zip(models, train_rows, strict=True)],
            epochs=t.epochs,
            loader=tensor_loader(torch.arange(n_train), batch_size=t.batch, seed=seed),
            label=f"seed {seed}",
        )
        ctx.save(
            f"seed{seed}",
            state_dict_cpu(models),
            kind="model/ctr",
            meta={"models": ",".join(n.replace("/", "_") for n in schemes)},
        )
        r: dict[str, float] = {}
        with torch.no_grad():
            for (name, scheme), net, rows, init in zip(
                schemes.items(), models, test_rows, initial, strict=True
            ):
                logit = net(rows).numpy()
                r[f"{name}/auc"] = auc(y_test, logit)
                r[f"{name}/logloss"] = log_loss(y_test, 1 / (1 + np.exp(-logit)))
                r[f"{name}/params"] = float(scheme.n_params + net.dense_params())
                r[f"{name}/shared_rows"] = core.shared_row_share(scheme, x_train)
                if name.startswith("multiplexed/"):
                    trained = net.projections()
                    r[f"{name}/cos_trained"] = core.collision_cosine(net, scheme, x_train, trained)
                    r[f"{name}/cos_random"] = core.collision_cosine(net, scheme, x_train, init)
        results[f"seed{seed}"] = r
        best = max(m.budgets)
        ctx.progress(
            f"seed {seed}: AUC at {best} rows: "
            + ", ".join(f"{s} {r[f'{s}/{best}/auc']:.4f}" for s in core.SCHEMES)
        )
    write_json(
        ctx.out / "results.json",
        {"results": results, "budgets": m.budgets, "dim": m.dim, **meta},
    )
    return StepOutput()


def _pareto_figure(metrics: dict[str, list[float] | float], budgets: list[int]) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    for name, marker in zip(core.SCHEMES, "osD^", strict=True):
        xs = [np.mean(metrics[f"{name}/{b}/params"]) for b in budgets]
        ys = [np.mean(metrics[f"{name}/{b}/auc"]) for b in budgets]
        es = [np.std(metrics[f"{name}/{b}/auc"], ddof=1) for b in budgets]
        ax.errorbar(xs, ys, yerr=es, marker=marker, capsize=3, label=name.replace("_", " "))
    ax.set_xscale("log", base=2)
    ax.set_xlabel("parameters (embedding rows x d + dense towers)")
    ax.set_ylabel("test AUC (mean ± std over seeds)")
    ax.set_title("Embedding schemes at equal budgets")
    ax.legend()
    return fig


def _evaluate(ctx: StepContext[UnifiedEmbeddingConfig]) -> Report:
    doc = read_json(ctx.inputs["fit"] / "results.json")
    budgets: list[int] = doc["budgets"]
    per_seed = SeedMetrics()
    for seed in ctx.seeds:
        per_seed.record(doc["results"][f"seed{seed}"])
    metrics: dict[str, list[float] | float] = {**per_seed.as_dict()}
    if "bayes_auc" in doc:
        metrics["bayes/auc"] = float(doc["bayes_auc"])
    header = "| budget (rows x d) | " + " | ".join(core.SCHEMES) + " |"
    rows = [header, "|" + "---|" * (len(core.SCHEMES) + 1)]
    shared = [header, rows[1]]
    for b in budgets:
        cells = [Stat(tuple(metrics[f"{s}/{b}/auc"])).fmt(4) for s in core.SCHEMES]  # type: ignore[arg-type]
        rows.append(f"| {b} x {doc['dim']} | " + " | ".join(cells) + " |")
        shares = [f"{np.mean(metrics[f'{s}/{b}/shared_rows']):.3f}" for s in core.SCHEMES]
        shared.append(f"| {b} | " + " | ".join(shares) + " |")
    deviations = "\n".join(
        [
            "| what | spec | here | why |",
            "|---|---|---|---|",
            "| MLP widths | FM + MLP (widths not given) | [64, 32] | the optfs spec's miniature "
            "tower; one tower for every scheme |",
            "| per-field projection P_f | DCN/DLRM first layer | d x w_f per field, all schemes | "
            "needed for Unified Embedding's variable widths and the R4 decomposition check |",
            "| R3 tolerance | within 1 seed-std | 95 % interval of the paired gap (issue 12) | "
            "verdicts on paired seeds |",
        ]
    )
    return Report(
        metrics=metrics,
        tables={
            "Test AUC (mean ± std over seeds)": "\n".join(rows),
            "Share of seen (field, value) pairs sharing a row": "\n".join(shared),
            "Deviations from the spec": deviations,
        },
        figures={"pareto": _pareto_figure(metrics, budgets)},
        curves=budget_curves(metrics, budgets),
    )


def budget_curves(
    metrics: dict[str, list[float] | float], budgets: list[int]
) -> dict[str, list[dict[str, float]]]:
    """Against the embedding budget (table rows), means over seeds: each scheme's test AUC, and
    the multiplexed table's cross-feature cosine of colliding rows' projections (R4)."""

    def mean(name: str) -> float:
        return float(np.mean(metrics[name]))

    return {
        "auc_vs_budget": [
            {"rows": b} | {s: mean(f"{s}/{b}/auc") for s in core.SCHEMES} for b in budgets
        ],
        "collision_cosine_vs_budget": [
            {
                "rows": b,
                "trained": mean(f"multiplexed/{b}/cos_trained"),
                "random": mean(f"multiplexed/{b}/cos_random"),
            }
            for b in budgets
        ],
    }


def _budgets(m: Metrics) -> list[int]:
    return sorted(int(b) for b in m.family("multiplexed/{budget}/auc"))


def _check_r1(m: Metrics) -> ClaimResult:
    return decide(
        *(
            on_mean(
                f"AUC multiplexed - per-field equal @{b}",
                gap(m[f"multiplexed/{b}/auc"], m[f"per_field_equal/{b}/auc"]),
                ">=",
                0.0,
            )
            for b in _budgets(m)
        )
    )


def _check_r2(m: Metrics) -> ClaimResult:
    return decide(
        *(
            on_mean(
                f"AUC multiplexed - per-field ∝ vocab @{b}",
                gap(m[f"multiplexed/{b}/auc"], m[f"per_field_vocab/{b}/auc"]),
                ">=",
                0.0,
            )
            for b in _budgets(m)[:2]
        )
    )


def _check_r3(m: Metrics) -> ClaimResult:
    """Not dominated: against the strongest other point (by mean AUC) with no more parameters."""
    budgets = _budgets(m)
    points = [(s, b) for s in core.SCHEMES if s != "multiplexed" for b in budgets]
    conditions = []
    for b in budgets:
        own = m[f"multiplexed/{b}/params"].mean
        rivals = [(s, c) for s, c in points if m[f"{s}/{c}/params"].mean <= own]
        if not rivals:
            continue
        s, c = max(rivals, key=lambda p: m[f"{p[0]}/{p[1]}/auc"].mean)
        conditions.append(
            on_mean(
                f"AUC multiplexed@{b} - {s}@{c}",
                gap(m[f"multiplexed/{b}/auc"], m[f"{s}/{c}/auc"]),
                ">=",
                0.0,
            )
        )
    return decide(*conditions)


def _check_r4(m: Metrics) -> ClaimResult:
    budgets = _budgets(m)
    trained = [m[f"multiplexed/{b}/cos_trained"].values for b in budgets]
    random = [m[f"multiplexed/{b}/cos_random"].values for b in budgets]
    mean_trained = Stat(tuple(np.mean(trained, axis=0).tolist()))
    mean_random = Stat(tuple(np.mean(random, axis=0).tolist()))
    return decide(
        on_mean("|cos| trained - random projections", gap(mean_trained, mean_random), "<", 0.0),
        cos_trained=mean_trained,
        cos_random=mean_random,
    )


STUDY = Study(
    slug=SLUG,
    title="Unified Embedding: Battle-Tested Feature Representations for Web-Scale ML Systems",
    arxiv="2305.12102",
    group="recommendation and CTR",
    config=UnifiedEmbeddingConfig,
    steps=(
        Step("data", _data, reads=("data",), description="generated CTR log, or Criteo rows"),
        Step(
            "fit",
            _fit,
            needs=("data",),
            reads=("model", "train"),
            kind="models",
            description="every scheme x budget per seed in one joint run; AUC, params",
        ),
        Step(
            "evaluate",
            _evaluate,
            needs=("fit",),
            kind="report",
            description="Pareto plot, tables, claims R1-R4",
        ),
    ),
    curves=(
        Curve(
            "auc_vs_budget",
            x="rows",
            y=core.SCHEMES,
            title="test AUC vs embedding rows (x d), mean over seeds",
        ),
        Curve(
            "collision_cosine_vs_budget",
            x="rows",
            y=("trained", "random"),
            title="multiplexed: |cos| of colliding features' projections, trained vs random",
        ),
    ),
    claims=(
        Claim(
            "R1",
            "at every budget, AUC(multiplexed) ≥ AUC(per-field equal split) (paired seeds)",
            "feature multiplexing is Pareto-optimal against per-feature hashing tables",
            _check_r1,
        ),
        Claim(
            "R2",
            "at the two smallest budgets, multiplexed ≥ per-field ∝ vocab (paired seeds)",
            "multiplexing beats per-feature tables sized by vocabulary at small budgets",
            _check_r2,
        ),
        Claim(
            "R3",
            "the multiplexed points are on the empirical Pareto frontier: no point with as few "
            "parameters is significantly better (95 % interval of the paired gap; issue 12 "
            "replaces the spec's 1-seed-std tolerance)",
            "Pareto-optimal parameter–accuracy trade-offs on Criteo, Avazu and MovieLens",
            _check_r3,
        ),
        Claim(
            "R4",
            "decomposition: the cross-feature |cos| of learned first-layer projections of "
            "colliding rows is below that of random projections",
            "downstream layers separate features sharing rows by near-orthogonal projections",
            _check_r4,
        ),
    ),
)
