"""The ``hessian`` study: steps, claims and wiring (Sagun et al., arXiv:1706.04454).

data -> fit -> evaluate. mini: Gaussian blobs for each cluster count k (and a variant with
``cluster_std × std_factor``), tanh MLPs of several widths trained to a matched loss, the exact
Hessian H and Gauss-Newton G of the full-batch loss in float64; a small-batch and a
large-batch run from one init and the loss on the line between them. full: MNIST, a wide FC net,
the top of the spectrum of H and G by Lanczos on HVPs.
"""

from __future__ import annotations

import itertools
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from subspacelab.api import (
    Claim,
    ClaimResult,
    Curve,
    Metrics,
    Report,
    Stat,
    Step,
    StepContext,
    StepOutput,
    Study,
    decide,
    every,
    gap,
    on_mean,
    ratio,
    read_json,
    write_json,
)
from subspacelab.data.download import Resource, fetch
from subspacelab.data.mnist import IMAGES_MAGIC, LABELS_MAGIC, read_idx
from subspacelab.probes import hessian as hs
from subspacelab.studies.hessian import core
from subspacelab.studies.hessian.config import LOSSES, DataConfig, HessianConfig

SLUG = "hessian"
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")


def _datasets(data: DataConfig) -> list[str]:
    """Dataset names: ``k<k>`` for each cluster count, ``k<k>_std2`` for the blurred blobs."""
    names = [f"k{k}" for k in data.clusters]
    return names + ([f"k{k}_std2" for k in data.clusters] if data.blobs is not None else [])


def _cells(cfg: HessianConfig) -> list[tuple[str, str, int]]:
    """(loss, dataset, width) of every trained network."""
    base = [
        (loss, f"k{k}", w)
        for loss, k, w in itertools.product(cfg.train.losses, cfg.data.clusters, cfg.model.widths)
    ]
    sep = [
        (loss, name, cfg.model.sep_width)
        for loss in cfg.train.losses
        for name in _datasets(cfg.data)
        if name.endswith("_std2")
    ]
    return base + sep


def _cell(loss: str, name: str, width: int) -> str:
    return f"{loss}/{name}/w{width}"


# ---------------------------------------------------------------------------------- data


def data(ctx: StepContext[HessianConfig]) -> StepOutput:
    """mini: the blobs of every k (and the std × factor variant); full: an MNIST subset."""
    d = ctx.cfg.data
    arrays: dict[str, torch.Tensor] = {}
    if d.mnist is not None:
        paths = {
            f: fetch(Resource(d.mnist.url + f, f, md5=d.mnist.md5[f]), ctx.out, ctx.progress)
            for f in MNIST_FILES
        }
        images = read_idx(paths[MNIST_FILES[0]], IMAGES_MAGIC).reshape(-1, 784)[: d.mnist.n] / 255.0
        labels = read_idx(paths[MNIST_FILES[1]], LABELS_MAGIC)[: d.mnist.n]
        arrays["k10/x"] = torch.from_numpy((images - images.mean(0)) / (images.std() + 1e-12))
        arrays["k10/y"] = torch.from_numpy(labels.astype(np.int64))
        for p in paths.values():
            p.unlink()
    else:
        b = d.blobs
        for k in d.clusters:
            for name, std in (
                (f"k{k}", b.cluster_std),
                (f"k{k}_std2", b.cluster_std * d.std_factor),
            ):
                x, y = core.blobs(b.n, b.dim, k, std, b.center_box, b.seed)
                arrays[f"{name}/x"], arrays[f"{name}/y"] = x, y
    ctx.save("data", arrays, kind="dataset")
    return StepOutput({"datasets": float(len(arrays) // 2)})


def _load_data(ctx: StepContext[HessianConfig]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    arrays = ctx.load("data", step="data", kind="dataset")
    names = sorted({k.split("/")[0] for k in arrays})
    return {n: (arrays[f"{n}/x"].double(), arrays[f"{n}/y"].long()) for n in names}


# ---------------------------------------------------------------------------------- fit


def fit(ctx: StepContext[HessianConfig]) -> StepOutput:
    """Train every (loss, data, width) cell per seed to the matched loss, and the large-batch
    run, in one full-batch joint run (each cell a member with its own data, frozen at its
    target loss); then the small-batch run of each seed."""
    from subspacelab.api import Member, full_batch_loader, tensor_loader, train_joint
    from subspacelab.api import fit as train
    from subspacelab.studies.hessian.lightning import MiniBatchToTarget, to_target

    cfg = ctx.cfg
    tr = cfg.train
    sets = _load_data(ctx)
    keys: list[str] = []
    members: list[Member] = []
    inits: dict[int, torch.Tensor] = {}
    log: dict[str, dict[str, float]] = {}
    sblb = f"k{max(cfg.data.clusters)}"
    for seed in ctx.seeded():
        for loss, name, width in _cells(cfg):
            x, y = sets[name]
            net = core.mlp(x.shape[1], width, int(y.max()) + 1, seed)
            keys.append(f"{_cell(loss, name, width)}/s{seed}")
            members.append(to_target(net, x, y, loss, tr.target[loss], tr.lr, tr.max_steps))
        x, y = sets[sblb]
        net = core.mlp(x.shape[1], cfg.model.sep_width, int(y.max()) + 1, seed)
        inits[seed] = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
        with torch.no_grad():
            log[f"init/s{seed}"] = {"loss": float(hs.loss_of_outputs(net(x), y, tr.sblb_loss))}
        keys.append(f"lb/s{seed}")
        target = tr.target[tr.sblb_loss]
        members.append(to_target(net, x, y, tr.sblb_loss, target, tr.lr, tr.max_steps))
    run = train_joint(
        ctx,
        members,
        epochs=1,
        loader=full_batch_loader(steps=tr.max_steps + 1),
        label="matched loss",
    )
    for key, member, final, steps in zip(keys, members, run.final, run.steps, strict=True):
        file = "lb_s" + key.split("/s")[-1] if key.startswith("lb/") else key.replace("/", "_")
        ctx.save_model(file, member.model)
        log[key] = {
            "loss": float("nan") if final is None else final,
            "steps": float("nan") if steps is None else float(steps),
        }
        ctx.progress(f"{key}: loss {log[key]['loss']:.4f} after {steps} steps")
    x, y = sets[sblb]
    per_epoch = math.ceil(x.shape[0] / tr.small_batch)
    for seed in ctx.seeds:
        net = core.mlp(x.shape[1], cfg.model.sep_width, int(y.max()) + 1, seed)
        sb = MiniBatchToTarget(net, x, y, tr.sblb_loss, tr.target[tr.sblb_loss], lr=tr.lr)
        history = train(
            ctx,
            sb,
            tensor_loader(x, y, batch_size=tr.small_batch, seed=seed),
            epochs=math.ceil(tr.max_steps / per_epoch),
            label=f"small batch s{seed}",
            every=10,
        )
        ctx.save_model(f"sb_s{seed}", net)
        ctx.save(f"init_s{seed}", {"theta": inits[seed]}, kind="init")
        log[f"sb/s{seed}"] = {"loss": sb.final, "steps": float(len(history) * per_epoch)}
    write_json(ctx.out / "train_log.json", log)
    return StepOutput({f"{k}.loss": v["loss"] for k, v in log.items()})


# ---------------------------------------------------------------------------------- evaluate


def _load_net(
    ctx: StepContext[HessianConfig], file: str, dim: int, width: int, k: int
) -> torch.nn.Module:
    return ctx.load_model(core.mlp(dim, width, k, 0), file, step="fit").eval()


def _lanczos_spectrum(
    net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str, m: int
) -> tuple[torch.Tensor, torch.Tensor]:
    fn, theta = hs.flat_model(net)
    h = hs.lanczos_top(hs.hvp_fn(fn, theta, x, y, loss), theta.numel(), m)
    g = hs.lanczos_top(hs.gnvp_fn(fn, theta, x, loss), theta.numel(), m)
    return torch.from_numpy(h.copy()), torch.from_numpy(g.copy())


def evaluate(ctx: StepContext[HessianConfig]) -> Report:
    """Spectra of every cell, outlier counts, the SB/LB line; claims and plots."""
    cfg = ctx.cfg
    ev = cfg.eval
    sets = _load_data(ctx)
    log = read_json(ctx.inputs["fit"] / "train_log.json")
    metrics: dict[str, list[float]] = {}
    spectra: dict[str, np.ndarray] = {}
    lines: list[np.ndarray] = []

    def put(name: str, value: float) -> None:
        metrics.setdefault(name, []).append(float(value))

    for seed in ctx.seeds:
        for loss, name, width in _cells(cfg):
            x, y = sets[name]
            k = int(y.max()) + 1
            cell = _cell(loss, name, width)
            net = _load_net(ctx, f"{cell.replace('/', '_')}_s{seed}", x.shape[1], width, k)
            if ev.exact:
                sp = core.spectrum(net, x, y, loss, k)
                he = sp.h_eigs
                put(f"bulk/{cell}", hs.bulk_fraction(he, ev.bulk_rel))
                put(f"overlap/{cell}", sp.overlap)
                put(f"overlap_dim/{cell}", sp.dim)
                put(f"top_rel_error/{cell}", sp.top_rel_error)
                put(f"residual_ratio/{cell}", sp.residual_ratio)
                put(f"outliers_thr/{cell}", hs.threshold_outliers(he, ev.quantile, ev.margin))
            else:
                he, _ = _lanczos_spectrum(net, x, y, loss, ev.top_m)
            put(f"lambda1/{cell}", float(he[0]))
            put(f"outliers_gap/{cell}", hs.gap_outliers(he, 3 * k))
            put(f"train_loss/{cell}", log[f"{cell}/s{seed}"]["loss"])
            spectra.setdefault(cell, he.numpy())
            ctx.progress(f"{cell} s{seed}: λ1={float(he[0]):.3g}")
        name = f"k{max(cfg.data.clusters)}"
        x, y = sets[name]
        k = int(y.max()) + 1
        sb = _load_net(ctx, f"sb_s{seed}", x.shape[1], cfg.model.sep_width, k)
        lb = _load_net(ctx, f"lb_s{seed}", x.shape[1], cfg.model.sep_width, k)
        flat = [torch.cat([p.detach().reshape(-1) for p in n.parameters()]) for n in (sb, lb)]
        alphas = np.asarray(ev.alphas)
        line = core.line_losses(sb, flat[0], flat[1], x, y, cfg.train.sblb_loss, alphas)
        put("sblb/barrier", core.barrier(alphas, line))
        put("sblb/init_loss", log[f"init/s{seed}"]["loss"])
        put("sblb/barrier_over_init", core.barrier(alphas, line) / log[f"init/s{seed}"]["loss"])
        spectra.setdefault("sblb_line", line)
        lines.append(np.asarray(line, dtype=np.float64))
    write_json(ctx.out / "spectra.json", {k: v.tolist() for k, v in spectra.items()})
    return Report(
        metrics=metrics,
        figures=_figures(cfg, spectra),
        tables=_tables(cfg, metrics),
        curves=hessian_curves(cfg, metrics, lines),
    )


def hessian_curves(
    cfg: HessianConfig, metrics: dict[str, list[float]], lines: list[np.ndarray]
) -> dict[str, list[dict[str, float]]]:
    """The DVC curves: the bulk fraction of H against the width W per loss (mean over seeds
    and the base grid's k; NaN for a loss not trained, or when the spectra are Lanczos top-m,
    which has no bulk), and the training loss along the SB-LB line (mean over seeds)."""

    def bulk(loss: str, width: int) -> float:
        names = [f"bulk/{_cell(loss, f'k{k}', width)}" for k in cfg.data.clusters]
        vals = [v for n in names if n in metrics for v in metrics[n]]
        return float(np.mean(vals)) if vals else math.nan

    line = np.mean(lines, axis=0)
    return {
        "bulk_vs_width": [
            {"width": float(w)} | {loss: bulk(loss, w) for loss in LOSSES}
            for w in sorted(cfg.model.widths)
        ],
        "sblb_line": [
            {"alpha": float(a), "loss": float(v)}
            for a, v in zip(cfg.eval.alphas, line, strict=True)
        ],
    }


def _tables(cfg: HessianConfig, metrics: dict[str, list[float]]) -> dict[str, str]:
    """Per cell: outlier counts by both rules (measured, not pass/fail: spec §6), the overlap
    and its dimension, bulk fraction, λ₁ and the matched training loss (mean ± std over
    seeds)."""
    cols = ("outliers_gap", "outliers_thr", "overlap_dim", "overlap", "bulk", "lambda1")
    cols = tuple(c for c in cols if any(n.startswith(f"{c}/") for n in metrics))
    cells = [_cell(*c) for c in _cells(cfg)]
    lines = [
        "| cell | " + " | ".join((*cols, "train loss")) + " |",
        "|---" * (len(cols) + 2) + "|",
    ]
    for cell in cells:
        vals = [Stat(tuple(metrics[f"{c}/{cell}"])).fmt(3) for c in (*cols, "train_loss")]
        lines.append(f"| {cell} | " + " | ".join(vals) + " |")
    return {
        "Spectra per cell (outlier counts are measured, not pass/fail)": "\n".join(lines),
        "Notes": NOTES,
    }


NOTES = "\n".join(
    [
        "| what | here | why |",
        "|---|---|---|",
        "| (b) for CE | overlap of the top-m eigenspaces of H and G, m = H's gap-rule outlier "
        "count | CE's output Hessian has rank k − 1: the k-th direction can lie in the bulk, "
        "where H and G need not agree (issue 12) |",
        "| (c) | every comparison (k → k × std factor for each k, smallest → largest k; both "
        "losses) at W = `sep_width`, each on paired per-seed values; 'number' is the gap-rule "
        "count, 'scale' λ₁ changing by > 10 % | issue 12: all comparisons, not any |",
        "| SB-LB | batch 10 vs the full batch (N = 500) from one init | spec §3 (e.g. 10 vs 512) "
        "at the miniature's N |",
        "| H and G | closed form for the tanh MLP (`probes.hessian.mlp_hessian`), equal to "
        "autograd's to 1e-15 | 8-9× faster (benchmarks/results/probes.md) |",
    ]
)


def _figures(cfg: HessianConfig, spectra: dict[str, np.ndarray]) -> dict[str, Figure]:
    figs: dict[str, Figure] = {}
    for loss in cfg.train.losses:
        fig, axes = plt.subplots(
            1, len(cfg.data.clusters), figsize=(5 * len(cfg.data.clusters), 3.5), squeeze=False
        )
        for ax, k in zip(axes[0], cfg.data.clusters, strict=True):
            for w in cfg.model.widths:
                eig = spectra[_cell(loss, f"k{k}", w)]
                ax.semilogy(np.abs(eig) + 1e-16, label=f"W={w} (P={eig.size})")
            ax.set(
                title=f"{loss}, k={k}: sorted |λ| (bulk + outliers)", xlabel="index", ylabel="|λ|"
            )
            ax.set_xscale("symlog")
            ax.legend(fontsize=7)
        fig.tight_layout()
        figs[f"spectrum_{loss}"] = fig
    line = spectra["sblb_line"]
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.plot(cfg.eval.alphas, line, marker="o")
    ax.set(
        xlabel="α (0 = small batch, 1 = large batch)", ylabel="training loss", title="SB-LB line"
    )
    fig.tight_layout()
    figs["sblb_line"] = fig
    return figs


# ---------------------------------------------------------------------------------- claims


def _grid(m: Metrics, prefix: str) -> dict[tuple[str, str], list[tuple[int, Stat]]]:
    """``{(loss, data): [(width, per-seed values), ...]}`` of a metric over the base grid,
    width-sorted."""
    out: dict[tuple[str, str], list[tuple[int, Stat]]] = {}
    for name in m:
        parts = name.split("/")
        if parts[0] == prefix and len(parts) == 4 and "_std2" not in parts[2]:
            out.setdefault((parts[1], parts[2]), []).append((int(parts[3][1:]), m[name]))
    if not out:
        raise KeyError(f"no {prefix}/<loss>/<data>/w<W> metrics")
    return {k: sorted(v, key=lambda t: t[0]) for k, v in sorted(out.items())}


def check_bulk_grows(m: Metrics) -> ClaimResult:
    """(a) the bulk fraction increases with W at every (loss, k): each step to the next width
    is a paired per-seed increase."""
    tests = [
        on_mean(f"bulk {loss}/{data} w{w2} − w{w1}", gap(b, a), ">", 0.0)
        for (loss, data), row in _grid(m, "bulk").items()
        for (w1, a), (w2, b) in itertools.pairwise(row)
    ]
    return decide(*tests)


OVERLAP_MIN = 0.95


def check_overlap(m: Metrics) -> ClaimResult:
    """(b) H-G overlap > 0.95 in every cell (MSE: top-k; CE: the outlier subspace)."""
    cells = sorted(n.removeprefix("overlap/") for n in m if n.startswith("overlap/"))
    if not cells:
        raise KeyError("no overlap/<cell> metrics")
    tests = [on_mean(f"overlap {c}", m[f"overlap/{c}"], ">", OVERLAP_MIN) for c in cells]
    return decide(*tests, **{f"dim {c}": m[f"overlap_dim/{c}"] for c in cells})


def _comparisons(m: Metrics) -> list[tuple[str, str, str]]:
    """(label, cell a, cell b) of claim (c): at the separability width, k → k × std factor for
    each k, and the smallest → the largest k, for each loss."""
    out = []
    for name in sorted(m):
        parts = name.split("/")
        if parts[0] != "bulk" or not parts[2].endswith("_std2"):
            continue
        loss, std2, width = parts[1], parts[2], parts[3]
        out.append((f"{loss} {std2}", f"{loss}/{std2.removesuffix('_std2')}/{width}", name[5:]))
        ks = sorted(
            {
                p.split("/")[2]
                for p in m
                if p.startswith(f"bulk/{loss}/") and "_std2" not in p and p.endswith(f"/{width}")
            },
            key=lambda s: int(s[1:]),
        )
        label = f"{loss} {ks[0]}→{ks[-1]} {width}"
        if len(ks) > 1 and label not in {c[0] for c in out}:
            out.append((label, f"{loss}/{ks[0]}/{width}", f"{loss}/{ks[-1]}/{width}"))
    if not out:
        raise KeyError("no bulk/<loss>/k<k>_std2/w<W> metrics")
    return out


def make_check_outliers(rel: float, bulk_move: float) -> ClaimResult:
    """(c) every comparison at fixed W (k, separability): the outliers change in number (gap
    rule) or scale (λ₁ by more than ``rel``) while the bulk fraction moves < ``bulk_move``,
    each decided on paired per-seed values."""

    def check(m: Metrics) -> ClaimResult:
        tests = []
        for label, a, b in _comparisons(m):
            moved = [abs(v) for v in gap(m[f"bulk/{b}"], m[f"bulk/{a}"]).values]
            scale = [abs(r - 1.0) for r in ratio(m[f"lambda1/{b}"], m[f"lambda1/{a}"]).values]
            count = gap(m[f"outliers_gap/{b}"], m[f"outliers_gap/{a}"]).values
            change = [max(s, 1.0 if c != 0 else 0.0) for s, c in zip(scale, count, strict=True)]
            tests.append(on_mean(f"|Δbulk| {label}", moved, "<", bulk_move))
            tests.append(on_mean(f"outliers changed {label}", change, ">", rel))
        return decide(*tests)

    return check


BARRIER_MAX = 0.05


def check_barrier(m: Metrics) -> ClaimResult:
    """(d) SB-LB line barrier < 0.05 × initial loss on every seed."""
    return decide(
        every("barrier / initial loss", m["sblb/barrier_over_init"], "<", BARRIER_MAX),
        barrier=m["sblb/barrier"],
        initial_loss=m["sblb/init_loss"],
    )


SCALE_CHANGE = 0.1  # claim (c): a relative change of λ₁ above 10% counts as a change of scale
BULK_MOVE = 0.05  # claim (c): "the bulk fraction moves < 5 pts"
CLAIMS = (
    Claim(
        "bulk_grows_with_width",
        "(a) the bulk fraction increases with W at fixed k (all cells)",
        "Sagun et al. claim 2: more parameters only scale the bulk of near-zero eigenvalues",
        check_bulk_grows,
    ),
    Claim(
        "outliers_from_gauss_newton",
        "(b) H–G top-k overlap > 0.95 (for CE on the outlier subspace of H, issue 12)",
        "Sagun et al. claim 3: the outliers come from the Gauss-Newton term",
        check_overlap,
    ),
    Claim(
        "data_moves_outliers_not_bulk",
        "(c) at fixed W, the *number or scale* of outliers changes with k or with separability "
        "(std ×2), while the bulk fraction moves < 5 pts (every comparison, issue 12)",
        "Sagun et al. claim 2: changing the data changes only the outliers",
        make_check_outliers(SCALE_CHANGE, BULK_MOVE),
    ),
    Claim(
        "sb_lb_no_barrier",
        "(d) the SB–LB line barrier < 0.05 × initial loss (every seed, issue 12)",
        "Sagun et al. claim 4: small- and large-batch solutions lie in one flat basin",
        check_barrier,
    ),
)

STUDY = Study(
    slug=SLUG,
    title="Empirical Analysis of the Hessian of Over-Parametrized Neural Networks",
    arxiv="1706.04454",
    group="geometry of trained networks",
    config=HessianConfig,
    steps=(
        Step("data", data, reads=("data",), description="blobs per k (mini); MNIST (full)"),
        Step(
            "fit",
            fit,
            needs=("data",),
            reads=("data", "model", "train"),
            kind="models",
            description="MLPs per loss, k, width and seed to a matched loss; SB and LB runs",
        ),
        Step(
            "evaluate",
            evaluate,
            needs=("data", "fit"),
            reads=("data", "model", "train", "eval"),
            kind="report",
            description="exact H and G (mini) or Lanczos (full); outliers; SB-LB line",
        ),
    ),
    claims=CLAIMS,
    curves=(
        Curve(
            "bulk_vs_width",
            x="width",
            y=LOSSES,
            title="fraction of H's eigenvalues in the bulk vs width W (mean over seeds and k)",
        ),
        Curve(
            "sblb_line",
            x="alpha",
            y="loss",
            title="training loss on the line from the small- to the large-batch solution",
        ),
    ),
)
