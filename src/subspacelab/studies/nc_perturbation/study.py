"""The ``nc_perturbation`` study: steps, claims and wiring (Tirer, Huang & Niles-Weed,
arXiv:2210.16658).

data -> fit -> evaluate. A backbone (MLP; ResNet-18 at full scale) is trained with MSE; its block
features are H₀
candidates. The perturbation model is solved on a (β, λ_W) grid from H₀ = a middle block (R1,
R2), its central-path gradient flow is run (R3), the first-order expansion is checked on
synthetic near-collapsed features (R4) and the model's H* is compared with the real deeper
blocks (R5).
"""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

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
)
from subspacelab.data import embedded
from subspacelab.data.cifar import fetch_cifar, load_cifar
from subspacelab.probes import collapse as nc
from subspacelab.studies.nc_perturbation import core
from subspacelab.studies.nc_perturbation.config import NcPerturbationConfig

SLUG = "nc_perturbation"


def data(ctx: StepContext[NcPerturbationConfig]) -> StepOutput:
    """digits (mini; standardised by the train mean and overall std) or CIFAR-10 images
    (full; (3, 32, 32), standardised per channel with the train statistics)."""
    d = ctx.cfg.data
    if d.source == "cifar10":
        split = load_cifar(fetch_cifar("cifar10", ctx.out, ctx.progress), "cifar10")
        x, y = split.x_train, split.y_train
        for p in ctx.out.iterdir():
            if p.is_file():
                p.unlink()
        x = x[: d.max_train].astype(np.float32)
        x = (x - x.mean(axis=(0, 2, 3), keepdims=True)) / (x.std(axis=(0, 2, 3), keepdims=True))
    else:
        split = embedded.digits(d.test_size, d.seed)
        x, y = split.x_train, split.y_train
        x = x[: d.max_train].astype(np.float32)
        x = (x - x.mean(axis=0)) / (x.std() + 1e-12)
    ctx.save("train", {"x": x, "y": y[: d.max_train]}, kind="dataset")
    return StepOutput({"examples": float(len(x))})


def _train(ctx: StepContext[NcPerturbationConfig]) -> tuple[torch.Tensor, torch.Tensor]:
    t = ctx.load("train", step="data", kind="dataset")
    return t["x"].float(), t["y"].long()


def fit(ctx: StepContext[NcPerturbationConfig]) -> StepOutput:
    """Train the backbone per seed (MSE to one-hot, Adam with weight decay)."""
    from subspacelab.api import LossModule, tensor_loader
    from subspacelab.api import fit as train

    b = ctx.cfg.backbone
    x, y = _train(ctx)
    k = int(y.max()) + 1
    target = nn.functional.one_hot(y, k).float()
    errs = {}
    for seed in ctx.seeded():
        net = core.make_backbone(b.arch, x.shape, b.width, b.blocks, k)
        module = LossModule(net, core.mse_loss, lr=b.lr, weight_decay=b.weight_decay)
        loader = tensor_loader(x, target, batch_size=b.batch_size, seed=seed)
        train(
            ctx,
            module,
            loader,
            epochs=b.epochs,
            label=f"backbone s{seed}",
            every=max(1, b.epochs // 4),
        )
        with torch.no_grad():
            last = core.block_features_batched(net, x, ctx.device)[-1]
            logits = net.fc(last.to(ctx.device)).cpu()  # type: ignore[operator]
        errs[f"s{seed}.train_error"] = float((logits.argmax(1) != y).float().mean())
        ctx.save_model(f"backbone_s{seed}", net)
        ctx.progress(f"backbone seed {seed}: train error {errs[f's{seed}.train_error']:.4f}")
    return StepOutput(errs)


def evaluate(ctx: StepContext[NcPerturbationConfig]) -> Report:
    """Grid of NC1 ratios, the central-path flow, the first-order check, depthwise NC1."""
    cfg = ctx.cfg
    b, md = cfg.backbone, cfg.model
    x, y = _train(ctx)
    k = int(y.max()) + 1
    y1h = nn.functional.one_hot(y, k).T.double()
    metrics: dict[str, list[float]] = {}
    grids, flows, halves = [], [], []

    def put(name: str, value: float) -> None:
        metrics.setdefault(name, []).append(float(value))

    for seed in ctx.seeds:
        net = core.make_backbone(b.arch, x.shape, b.width, b.blocks, k)
        ctx.load_model(net, f"backbone_s{seed}", step="fit")
        blocks = [f.double() for f in core.block_features_batched(net, x, ctx.device)]
        h0 = blocks[b.h0_block - 1].T.contiguous()
        nc1_h0 = nc.nc1(h0.T, y, k)
        grid = np.zeros((len(md.betas), len(md.lam_ws)))
        for (i, beta), (j, lam) in itertools.product(enumerate(md.betas), enumerate(md.lam_ws)):
            h, _ = core.solve(h0, y1h, beta, lam, iters=md.iters, tol=md.tol)
            grid[i, j] = nc.nc1(h.T, y, k) / nc1_h0
            put(f"ratio/beta{beta:g}/lam{lam:g}", grid[i, j])
        grids.append(grid)
        flow = core.central_flow(
            h0, y1h, y, md.ref_beta, md.ref_lam_w, steps=md.flow_steps, step_frac=md.flow_step_frac
        )
        half = core.central_flow(  # the step-halving check: the same time span in half steps
            h0,
            y1h,
            y,
            md.ref_beta,
            md.ref_lam_w,
            steps=2 * md.flow_steps,
            step_frac=md.flow_step_frac / 2,
        )
        flows.append(flow)
        halves.append(half)
        for name, path in (("flow", flow), ("flow_half", half)):
            put(f"{name}/max_rel_increase", core.max_relative_increase(path))
            put(f"{name}/nc1_ratio_end", path[-1] / path[0])
        put("flow/end_vs_half", abs(flow[-1] - half[-1]) / half[-1])
        means, e, ys = core.near_collapse(md.synth_k, md.synth_d, md.synth_per_class, seed)
        errors = core.first_order_errors(
            means,
            e,
            ys,
            md.ref_beta,
            md.ref_lam_w,
            md.eps,
            iters=md.iters,
            tol=md.tol,
            delta=md.delta,
        )
        for eps, err in zip(md.eps, errors, strict=True):
            put(f"first_order/err_eps{eps:g}", err)
        put("first_order/slope", core.loglog_slope(md.eps, errors))
        h_ref, _ = core.solve(h0, y1h, md.ref_beta, md.ref_lam_w, iters=md.iters, tol=md.tol)
        put("depth/nc1_h0", nc1_h0)
        put("depth/nc1_model", nc.nc1(h_ref.T, y, k))
        put("depth/nc1_next_block", nc.nc1(blocks[b.h0_block], y, k))
        put("depth/nc1_last_block", nc.nc1(blocks[-1], y, k))
        for i, f in enumerate(blocks):
            put(f"depth/nc1_block{i + 1}", nc.nc1(f, y, k))
    return Report(
        metrics=metrics,
        figures=_figures(cfg, np.mean(grids, 0), flows[0]),
        curves=nc_curves(md.betas, grids, flows, halves),
    )


def nc_curves(
    betas: list[float],
    grids: list[np.ndarray],
    flows: list[list[float]],
    halves: list[list[float]],
) -> dict[str, list[dict[str, float]]]:
    """The DVC curves: NC1(H*)/NC1(H₀) against β (mean over seeds; mean, min and max over the
    λ_W grid: ``grids`` are per seed β × λ_W), and NC1 along the central-path flow per Euler
    step, with the step-halving run read at the same times (mean over seeds)."""
    grid = np.mean(grids, axis=0)
    flow, half = np.mean(flows, axis=0), np.mean(halves, axis=0)[::2]
    return {
        "ratio_vs_beta": [
            {
                "beta": float(b),
                "mean": float(r.mean()),
                "min": float(r.min()),
                "max": float(r.max()),
            }
            for b, r in zip(betas, grid, strict=True)
        ],
        "central_flow": [
            {"step": float(i), "nc1": float(f), "nc1_half_step": float(h)}
            for i, (f, h) in enumerate(zip(flow, half, strict=True))
        ],
    }


def _figures(cfg: NcPerturbationConfig, grid: np.ndarray, flow: list[float]) -> dict[str, Figure]:
    md = cfg.model
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for j, lam in enumerate(md.lam_ws):
        axes[0].semilogx(md.betas, grid[:, j], marker=".", label=f"λ_W={lam:g}")
    axes[0].set(xlabel="β", ylabel="NC1(H*) / NC1(H₀)", title="closeness to collapse")
    axes[0].legend(fontsize=6)
    axes[1].plot(flow)
    axes[1].set(
        xlabel="Euler step",
        ylabel="NC1(H(t))",
        title=f"central path, β={md.ref_beta:g}, λ_W={md.ref_lam_w:g}",
    )
    fig.tight_layout()
    return {"nc1_ratio_and_flow": fig}


# ---------------------------------------------------------------------------------- claims


def _seed_grids(m: Metrics) -> list[dict[float, dict[float, float]]]:
    """Per seed, ``{λ_W: {β: ratio}}``."""
    out: list[dict[float, dict[float, float]]] = []
    for name in m:
        if name.startswith("ratio/"):
            _, beta, lam = name.split("/")
            for i, v in enumerate(m[name].values):
                if i == len(out):
                    out.append({})
                out[i].setdefault(float(lam[3:]), {})[float(beta[4:])] = v
    if not out:
        raise KeyError("no ratio/beta<β>/lam<λ> metrics")
    return out


def check_r1(m: Metrics) -> ClaimResult:
    """(R1) NC1(H*) < NC1(H₀) at every grid point, on every seed."""
    worst = [max(v for row in g.values() for v in row.values()) for g in _seed_grids(m)]
    best = [min(v for row in g.values() for v in row.values()) for g in _seed_grids(m)]
    return decide(every("max ratio NC1(H*)/NC1(H₀)", worst, "<", 1.0), min_ratio=Stat(best))


TO_ONE = 0.01  # R2: "→ 1" read as 1 − ratio(β_max) < 0.01 for every λ_W


def check_r2(m: Metrics) -> ClaimResult:
    """(R2) ratio → 1 as β → ∞ and increases monotonically in β for β ≥ 0.1, at every λ_W,
    on every seed."""
    gap_to_one, min_step = [], []
    for grid in _seed_grids(m):
        gaps, steps = [], []
        for row in grid.values():
            betas = sorted(b for b in row if b >= 0.1)
            steps += [row[b2] - row[b1] for b1, b2 in itertools.pairwise(betas)]
            gaps.append(1 - row[max(row)])
        gap_to_one.append(max(gaps))
        min_step.append(min(steps))
    return decide(
        every("max over λ_W of 1 − ratio(β_max)", gap_to_one, "<", TO_ONE),
        every("min step of the ratio in β (β ≥ 0.1)", min_step, ">", 0.0),
    )


REL_SLACK = 1e-6  # R3 (issue 12): an increase of NC1 up to 1e-6 × NC1 is numerical


def check_r3(m: Metrics) -> ClaimResult:
    """(R3) NC1 along the central-path flow is non-increasing up to a relative slack of 1e-6
    × NC1, on every seed, and still so with half the Euler step (the step-halving check)."""
    return decide(
        every("max step increase / NC1", m["flow/max_rel_increase"], "<=", REL_SLACK),
        every("same, half step", m["flow_half/max_rel_increase"], "<=", REL_SLACK),
        nc1_end_over_start=m["flow/nc1_ratio_end"],
        end_nc1_step_vs_half_step=m["flow/end_vs_half"],
    )


SLOPE_BAND = (1.8, 2.2)  # R4: "a log-log slope of about 2"


def check_r4(m: Metrics) -> ClaimResult:
    """(R4) first-order error ≤ C·ε²: log-log slope about 2 (within [1.8, 2.2]) on every
    synthetic instance (one per seed)."""
    slope = m["first_order/slope"]
    return decide(
        every("log-log slope (lower end)", slope, ">=", SLOPE_BAND[0]),
        every("log-log slope (upper end)", slope, "<=", SLOPE_BAND[1]),
    )


def check_r5(m: Metrics) -> ClaimResult:
    """(R5) NC1(H*) between the real next block's and the last block's NC1 (no fallback,
    issue 12): both paired per-seed gaps ≥ 0."""
    model, nxt, last = (m[f"depth/nc1_{n}"] for n in ("model", "next_block", "last_block"))
    lo = [min(a, b) for a, b in zip(nxt.values, last.values, strict=True)]
    hi = [max(a, b) for a, b in zip(nxt.values, last.values, strict=True)]
    return decide(
        on_mean("NC1(H*) − min(next, last)", gap(model, lo), ">=", 0.0),
        on_mean("max(next, last) − NC1(H*)", gap(hi, model), ">=", 0.0),
        nc1_h0=m["depth/nc1_h0"],
        nc1_next_block=nxt,
        nc1_last_block=last,
        nc1_model=model,
    )


CLAIMS = (
    Claim(
        "r1_nc1_decreases",
        "(R1) NC1(H*) < NC1(H₀) at every grid point",
        "Tirer et al. (i): NC1 decreases relative to H₀",
        check_r1,
    ),
    Claim(
        "r2_beta_trend",
        "(R2) the ratio NC1(H*)/NC1(H₀) → 1 as β → ∞ and increases monotonically in β for β ≥ 0.1",
        "Tirer et al. (iii): the regularisation sets the closeness to collapse",
        check_r2,
    ),
    Claim(
        "r3_flow_monotone",
        "(R3) NC1(H(t)) along the central-path flow is non-increasing, up to a relative slack of "
        "1e-6 × NC1, also with half the Euler step (issue 12)",
        "Tirer et al. (i): NC1 decreases along the central-path gradient flow",
        check_r3,
    ),
    Claim(
        "r4_first_order",
        "(R4) the first-order prediction error is ≤ C·ε², i.e. a log-log slope of about 2",
        "Tirer et al. (ii): a first-order closed form near collapse",
        check_r4,
    ),
    Claim(
        "r5_depthwise",
        "(R5) the model's H* from block-2 features has NC1 between the real "
        "block-3 and last-layer NC1 (without the fallback, issue 12)",
        "Tirer et al. (iv): NC1 decreases with depth in trained networks",
        check_r5,
    ),
)

STUDY = Study(
    slug=SLUG,
    title="Perturbation Analysis of Neural Collapse",
    arxiv="2210.16658",
    group="geometry of trained networks",
    config=NcPerturbationConfig,
    steps=(
        Step("data", data, reads=("data",), description="digits (mini) / CIFAR-10 (full)"),
        Step(
            "fit",
            fit,
            needs=("data",),
            reads=("backbone",),
            kind="models",
            description="MLP (mini) or ResNet-18 (full) backbone, MSE + weight decay",
        ),
        Step(
            "evaluate",
            evaluate,
            needs=("data", "fit"),
            reads=("backbone", "model"),
            kind="report",
            description="(β, λ_W) grid, central flow, first order, depth",
        ),
    ),
    claims=CLAIMS,
    curves=(
        Curve(
            "ratio_vs_beta",
            x="beta",
            y=("mean", "min", "max"),
            title="NC1(H*) / NC1(H0) vs β (mean over seeds; mean, min, max over λ_W)",
        ),
        Curve(
            "central_flow",
            x="step",
            y=("nc1", "nc1_half_step"),
            title="NC1 along the central-path flow per Euler step (and with half steps)",
        ),
    ),
)
