"""clustering_compare: every method of the subspace-clustering group and every baseline on the
same embedded inputs, ACC/NMI/ARI and time.

* inputs — (1) load_digits, 60 images per class, embedded by a lab backbone: an MLP autoencoder
  trained here without labels (its code is the input of every method); (2) a union of linear
  subspaces in R^64. Fixed data seed; seeds vary the methods' randomness.
* cluster — per input and seed: k-means, spectral (kNN graph), LSR, SSC, LRR (fixed λ, same
  post-processing), MLC, LIHF-DSC (the code read as a √d×√d image), S2CAG (NSR on the kNN graph
  of the inputs) and geo_sae's stacked AE + k-means.
* report — the comparison table.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.neighbors import kneighbors_graph
from torch import nn

from subspacelab.clustering import (
    cluster_accuracy,
    evaluate,
    kmeans_baseline,
    lrr,
    lsr,
    postprocess_coefficients,
    spectral_baseline,
    spectral_clustering,
    ssc,
    union_of_subspaces,
)
from subspacelab.clustering.plots import score_bars
from subspacelab.io import load_tensors, read_json, save_tensors, write_json
from subspacelab.nets.training import state_dict_cpu
from subspacelab.registry import Report, Step, StepContext, StepOutput, Study
from subspacelab.runner import seed_all
from subspacelab.studies.clustering_compare.config import CompareConfig
from subspacelab.studies.geo_sae import core as geo
from subspacelab.studies.lihf_dsc import core as lihf
from subspacelab.studies.lihf_dsc.study import digits_subset
from subspacelab.studies.mlc import core as mlc
from subspacelab.studies.mlc.study import schedule
from subspacelab.studies.s2cag import core as s2c

SLUG = "clustering_compare"
INPUTS = ("digits_ae", "subspaces")
METHODS = ("kmeans", "spectral", "lsr", "ssc", "lrr", "mlc", "lihf_dsc", "s2cag", "geo_sae")


def train_backbone(
    x: np.ndarray, hidden: int, code: int, epochs: int, lr: float, seed: int
) -> tuple[nn.Module, np.ndarray]:
    """Full-batch MLP autoencoder (in→hidden→code→hidden→in), MSE, Adam; returns the encoder
    and the codes."""
    torch.manual_seed(seed)
    d = x.shape[1]
    enc = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, code))
    dec = nn.Sequential(nn.Linear(code, hidden), nn.ReLU(), nn.Linear(hidden, d))
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=lr)
    xt = torch.from_numpy(x)
    for _ in range(epochs):
        loss = ((dec(enc(xt)) - xt) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return enc, enc(xt).numpy()


def _inputs(ctx: StepContext) -> StepOutput:
    d, b = ctx.cfg.data, ctx.cfg.backbone
    images, y_digits = digits_subset(d.digits_per_class, d.data_seed)
    enc, codes = train_backbone(
        images.reshape(len(images), -1), b.hidden, b.code_dim, b.epochs, b.lr, d.data_seed
    )
    save_tensors(
        ctx.out / "backbone.safetensors", state_dict_cpu(enc), study=SLUG, kind="model/backbone"
    )
    x_syn, y_syn = union_of_subspaces(
        d.syn_per_subspace, d.syn_subspaces, d.syn_dim, 64, d.syn_noise, d.data_seed
    )
    for name, x, y in (("digits_ae", codes, y_digits), ("subspaces", x_syn, y_syn)):
        save_tensors(
            ctx.out / f"{name}.safetensors",
            {"x": x.astype(np.float32), "y": y},
            study=SLUG,
            kind="data",
        )
    return StepOutput()


def _as_images(x: np.ndarray) -> torch.Tensor:
    side = math.isqrt(x.shape[1])
    if side * side != x.shape[1]:
        raise ValueError(f"LIHF reads inputs as square images; dimension {x.shape[1]} is not")
    scaled = (x - x.min()) / max(float(x.max() - x.min()), 1e-12)
    return torch.from_numpy(scaled.reshape(-1, 1, side, side).astype(np.float32))


def methods(
    cfg: CompareConfig, x: np.ndarray, y: np.ndarray, k: int, seed: int
) -> dict[str, Callable[[], np.ndarray]]:
    """Each method as a zero-argument function returning labels."""
    b, top = cfg.baselines, cfg.lihf.top_k

    def selfexpr(coef_fn: Callable[[], np.ndarray]) -> Callable[[], np.ndarray]:
        return lambda: spectral_clustering(postprocess_coefficients(coef_fn(), top), k, seed)

    def run_mlc() -> np.ndarray:
        net = mlc.MLCNet(x.shape[1], cfg.mlc_model.hidden, cfg.mlc_model.z_dim)
        xt, sched = torch.from_numpy(x), schedule(cfg.mlc)
        mlc.warmup(net, xt, None, sched, seed)
        mlc.copy_subspace_to_cluster(net)
        mlc.fit_mlc(net, xt, None, sched, seed)
        _, c = mlc.embed(net, xt)
        gamma = mlc.membership(c.double(), sched.eta, sched.sinkhorn_iters).numpy()
        return spectral_clustering(0.5 * (gamma + gamma.T), k, seed)

    def run_lihf() -> np.ndarray:
        m = cfg.lihf
        r = lihf.fit_lihf(
            _as_images(x),
            k,
            channels=m.channels,
            kernel=m.kernel,
            lr=m.lr,
            pretrain_epochs=m.pretrain_epochs,
            max_epochs=m.max_epochs,
            stage2_epochs=m.stage2_epochs,
            stage2_weight=m.stage2_weight,
            eps=m.eps,
            check_every=m.check_every,
            top_k=m.top_k,
            layers="all",
            seed=seed,
            acc_of=lambda p: cluster_accuracy(y, p),
        )
        return lihf.cluster_coefficients(r.coef_stage2, k, m.top_k, seed)

    def run_s2cag() -> np.ndarray:
        adj = kneighbors_graph(x, b.knn, include_self=False)
        adj = sp.csr_matrix(((adj + adj.T) > 0).astype(np.float64))
        z = s2c.nsr(s2c.propagation(adj), x.astype(np.float64), b.s2cag_steps, b.s2cag_alpha)
        return s2c.s2cag(z, k, b.s2cag_power_iters, seed)

    def run_sae() -> np.ndarray:
        s = cfg.sae
        xs = geo.minmax(x)
        d = xs.shape[1]
        ae, _ = geo.train_autoencoder(
            xs, [d, *s.ae_widths[1:]], s.ae_epochs, s.ae_batch, s.lr, s.l1, seed
        )
        recon, _ = geo.encode(ae, xs)
        x2 = np.concatenate([recon, xs], axis=1)
        ae2, _ = geo.train_autoencoder(
            x2,
            [2 * d, *s.sae2_widths[1:]],
            s.sae_epochs,
            s.sae_batch,
            s.lr,
            s.l1,
            seed + 1,
            code_layer=-2,
        )
        _, code2 = geo.encode(ae2, x2)
        x3 = np.concatenate([code2, x2], axis=1)
        ae3, _ = geo.train_autoencoder(
            x3, [x3.shape[1], *s.sae3_widths[1:]], s.sae_epochs, s.sae_batch, s.lr, s.l1, seed + 2
        )
        return kmeans_baseline(geo.encode(ae3, x3)[1], k, seed)

    return {
        "kmeans": lambda: kmeans_baseline(x, k, seed),
        "spectral": lambda: spectral_baseline(x, k, seed, b.knn),
        "lsr": selfexpr(lambda: lsr(x, b.lsr_lambda)),
        "ssc": selfexpr(lambda: ssc(x, b.ssc_alpha)),
        "lrr": selfexpr(lambda: lrr(x, b.lrr_tau)),
        "mlc": run_mlc,
        "lihf_dsc": run_lihf,
        "s2cag": run_s2cag,
        "geo_sae": run_sae,
    }


def _cluster(ctx: StepContext) -> StepOutput:
    results: dict[str, dict[str, float]] = {}
    for name in INPUTS:
        t, _ = load_tensors(ctx.inputs["inputs"] / f"{name}.safetensors", study=SLUG, kind="data")
        x, y = t["x"].numpy(), t["y"].numpy()
        k = int(y.max()) + 1
        for seed in ctx.seeds:
            for method, run in methods(ctx.cfg, x, y, k, seed).items():
                seed_all(seed)
                t0 = time.perf_counter()
                pred = run()
                secs = time.perf_counter() - t0
                row = results.setdefault(f"{name}_{method}_seed{seed}", {})
                row.update(evaluate(y, pred), time=secs)
            ctx.progress(
                f"{name} seed {seed}: "
                + ", ".join(f"{m} {results[f'{name}_{m}_seed{seed}']['acc']:.3f}" for m in METHODS)
            )
    write_json(ctx.out / "results.json", results)
    return StepOutput()


def _report(ctx: StepContext) -> Report:
    res = read_json(ctx.inputs["cluster"] / "results.json")
    metrics: dict[str, list[float]] = {}
    for name in INPUTS:
        for m in METHODS:
            for key in ("acc", "nmi", "ari", "time"):
                metrics[f"{name}_{m}_{key}"] = [
                    float(res[f"{name}_{m}_seed{s}"][key]) for s in ctx.seeds
                ]
    tables = {}
    for name, label in zip(
        INPUTS,
        ("load_digits, lab AE backbone codes", "union of linear subspaces in R^64"),
        strict=True,
    ):
        rows = ["| method | ACC | NMI | ARI | time (s) |", "|---|---|---|---|---|"]
        for m in METHODS:
            cells = []
            for key in ("acc", "nmi", "ari"):
                v = metrics[f"{name}_{m}_{key}"]
                sd = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
                cells.append(f"{np.mean(v):.3f} ± {sd:.3f}")
            cells.append(f"{np.mean(metrics[f'{name}_{m}_time']):.2f}")
            rows.append(f"| {m} | " + " | ".join(cells) + " |")
        tables[f"{label} (mean ± std over {len(ctx.seeds)} seeds)"] = "\n".join(rows)
    figures = {
        "acc": score_bars(metrics, "_acc", "Every clustering method on the same inputs: ACC")
    }
    return Report(metrics=metrics, tables=tables, figures=figures)


STUDY = Study(
    slug=SLUG,
    title="Subspace clustering group: MLC, LIHF-DSC, S2CAG, stacked AE and baselines",
    arxiv="2301.01805, 2504.18179, 2411.11074",
    group="subspace clustering",
    config=CompareConfig,
    kind="comparison",
    steps=(
        Step(
            "inputs",
            _inputs,
            reads=("data", "backbone"),
            kind="models",
            description="AE backbone codes of digits + union of subspaces",
        ),
        Step(
            "cluster",
            _cluster,
            needs=("inputs",),
            reads=("baselines", "mlc_model", "mlc", "lihf", "sae"),
            description="every method and baseline on both inputs, per seed",
        ),
        Step(
            "report",
            _report,
            needs=("cluster",),
            kind="report",
            description="the comparison tables",
        ),
    ),
    claims=(),
)
