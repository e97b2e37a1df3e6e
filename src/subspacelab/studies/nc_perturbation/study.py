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

from subspacelab.data import embedded
from subspacelab.data.cifar import fetch_cifar, load_cifar
from subspacelab.io import load_tensors, save_tensors
from subspacelab.nets.training import LossModule, state_dict_cpu, tensor_loader
from subspacelab.nets.training import fit as train
from subspacelab.probes import collapse as nc
from subspacelab.registry import (
    Claim,
    ClaimResult,
    Metrics,
    Report,
    Step,
    StepContext,
    StepOutput,
    Study,
)
from subspacelab.runner import seed_all
from subspacelab.studies.nc_perturbation import core
from subspacelab.studies.nc_perturbation.config import NcPerturbationConfig

SLUG = "nc_perturbation"


def data(ctx: StepContext) -> StepOutput:
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
    save_tensors(
        ctx.out / "train.safetensors", {"x": x, "y": y[: d.max_train]}, study=SLUG, kind="dataset"
    )
    return StepOutput({"examples": float(len(x))})


def _train(ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
    t, _ = load_tensors(ctx.inputs["data"] / "train.safetensors", study=SLUG, kind="dataset")
    return t["x"].float(), t["y"].long()


def fit(ctx: StepContext) -> StepOutput:
    """Train the backbone per seed (MSE to one-hot, Adam with weight decay)."""
    b = ctx.cfg.backbone
    x, y = _train(ctx)
    k = int(y.max()) + 1
    target = nn.functional.one_hot(y, k).float()
    errs = {}
    for seed in ctx.seeds:
        seed_all(seed)
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
        save_tensors(
            ctx.out / f"backbone_s{seed}.safetensors", state_dict_cpu(net), study=SLUG, kind="model"
        )
        ctx.progress(f"backbone seed {seed}: train error {errs[f's{seed}.train_error']:.4f}")
    return StepOutput(errs)


def evaluate(ctx: StepContext) -> Report:
    """Grid of NC1 ratios, the central-path flow, the first-order check, depthwise NC1."""
    cfg: NcPerturbationConfig = ctx.cfg
    b, md = cfg.backbone, cfg.model
    x, y = _train(ctx)
    k = int(y.max()) + 1
    y1h = nn.functional.one_hot(y, k).T.double()
    metrics: dict[str, list[float]] = {}
    grids, flows = [], []

    def put(name: str, value: float) -> None:
        metrics.setdefault(name, []).append(float(value))

    for seed in ctx.seeds:
        state, _ = load_tensors(
            ctx.inputs["fit"] / f"backbone_s{seed}.safetensors", study=SLUG, kind="model"
        )
        net = core.make_backbone(b.arch, x.shape, b.width, b.blocks, k)
        net.load_state_dict(state)
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
        flows.append(flow)
        put("flow/max_increase", max(bb - a for a, bb in itertools.pairwise(flow)))
        put("flow/nc1_ratio_end", flow[-1] / flow[0])
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
    return Report(metrics=metrics, figures=_figures(cfg, np.mean(grids, 0), flows[0]))


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


def _ratio_grid(m: Metrics) -> dict[float, dict[float, float]]:
    """``{λ_W: {β: mean ratio}}``."""
    out: dict[float, dict[float, float]] = {}
    for name in m:
        if name.startswith("ratio/"):
            _, beta, lam = name.split("/")
            out.setdefault(float(lam[3:]), {})[float(beta[4:])] = m[name].mean
    return out


def check_r1(m: Metrics) -> ClaimResult:
    """(R1) NC1(H*) < NC1(H₀) at every grid point."""
    vals = [v for row in _ratio_grid(m).values() for v in row.values()]
    return ClaimResult(
        bool(vals) and max(vals) < 1,
        {"max ratio": max(vals, default=np.nan), "min ratio": min(vals, default=np.nan)},
    )


TO_ONE = 0.01  # R2: "→ 1" read as 1 − ratio(β_max) < 0.01 for every λ_W


def check_r2(m: Metrics) -> ClaimResult:
    """(R2) ratio → 1 as β → ∞ and increases monotonically in β for β ≥ 0.1."""
    grid = _ratio_grid(m)
    measured: dict[str, float] = {}
    holds = bool(grid)
    for lam, row in sorted(grid.items()):
        betas = sorted(b for b in row if b >= 0.1)
        steps = [row[b2] - row[b1] for b1, b2 in itertools.pairwise(betas)]
        measured[f"λ_W={lam:g} 1 − ratio(β_max)"] = 1 - row[max(row)]
        measured[f"λ_W={lam:g} min step (β ≥ 0.1)"] = min(steps)
        holds &= (1 - row[max(row)]) < TO_ONE and min(steps) > 0
    return ClaimResult(holds, measured)


def check_r3(m: Metrics) -> ClaimResult:
    """(R3) NC1 along the central-path flow is non-increasing (1e-9 slack)."""
    inc = m["flow/max_increase"]
    return ClaimResult(
        inc.mean <= 1e-9, {"max step increase": inc, "NC1 end / start": m["flow/nc1_ratio_end"]}
    )


def check_r4(m: Metrics) -> ClaimResult:
    """(R4) first-order error ≤ C·ε²: log-log slope about 2 (read as within [1.8, 2.2])."""
    slope = m["first_order/slope"]
    return ClaimResult(1.8 <= slope.mean <= 2.2, {"slope": slope})


def check_r5(m: Metrics) -> ClaimResult:
    """(R5) NC1(H*) between the real next block's and the last block's, or at least below H₀'s."""
    model, nxt, last, h0 = (
        m[f"depth/nc1_{n}"].mean for n in ("model", "next_block", "last_block", "h0")
    )
    between = min(nxt, last) <= model <= max(nxt, last)
    return ClaimResult(
        between or model < h0,
        {
            "NC1 H*": model,
            "NC1 next block": nxt,
            "NC1 last block": last,
            "NC1 H0": h0,
            "between": float(between),
        },
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
        "(R3) NC1(H(t)) along the central-path flow is non-increasing (allow 1e-9 numerical slack)",
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
        "block-3 and last-layer NC1, or at least the same ordering as depth (a soft check)",
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
)
