"""MHS-VM: Multi-Head Scanning in Parallel Subspaces for Vision Mamba (arXiv 2406.05992).

The chain data -> fit -> report of the spec's miniature (§6):

* data — procedural lesions per seed (``subspacelab.modules.lesions``: one or two irregular
  brown blobs on textured skin with hair and vignetting, binary masks), images and masks stacked
  as (n, 4, S, S) so that flips and rotations move them together;
* fit — a VM-UNet per arm (SS2D at the full inner width; MHS with h heads in subspaces of width
  D/h, routes fused by a sum or by GFU) and seed, all in one ``train_joint`` run, each member on
  its own seeded batches and augmentation stream (the arms of one seed see the same ones:
  paired), from scratch;
* report — test mIoU, DSC, accuracy, sensitivity, specificity (one confusion matrix over the
  test pixels, VM-UNet's), parameters; metrics ``lesions/<arm>/<quantity>``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

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
from subspacelab.modules.lesions import LesionSpec, lesions
from subspacelab.modules.scan import FAMILY_ROUTES
from subspacelab.studies.mhs_vm import core, full
from subspacelab.studies.mhs_vm.config import MhsVmConfig

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Ctx = StepContext[MhsVmConfig]


def build(ctx: Ctx, arm: str) -> core.VMUNet:
    """The VM-UNet of ``arm`` under the config's model section."""
    m = ctx.cfg.model
    return core.VMUNet(
        arm,
        ctx.cfg.data.size,
        m.patch,
        m.dims,
        m.enc_depths,
        m.dec_depths,
        m.d_state,
        m.expand,
        m.heads,
        m.gfu_t,
        m.drop_path,
    )


def _data(ctx: Ctx) -> StepOutput:
    """Lesion images and masks per seed; train and test drawn from one stream and split."""
    d = ctx.cfg.data
    spec = LesionSpec(
        size=d.size, shapes=("irregular",), hues=("brown",), blobs=(d.blobs[0], d.blobs[1])
    )
    for seed in ctx.seeded():
        drawn = lesions(d.n_train + d.n_test, spec, seed)
        x = torch.from_numpy(drawn.images)
        y = torch.from_numpy(drawn.masks.astype(np.float32))
        stacked = torch.cat([x, y[:, None]], 1)
        ctx.save(
            f"seed{seed}",
            {"train": stacked[: d.n_train], "x_test": x[d.n_train :], "y_test": y[d.n_train :]},
        )
    return StepOutput(metrics={"lesion_fraction": float(drawn.masks.mean())})


def _loss(model: nn.Module) -> Callable[[Tensor], Tensor]:
    """BCE + Dice of ``model`` on a stacked (image, mask) batch."""

    def loss(batch: Tensor) -> Tensor:
        return core.bce_dice(model(batch[:, :3]), batch[:, 3])

    return loss


def _fit(ctx: Ctx) -> StepOutput:
    """Every arm and seed in one joint run (AdamW, constant lr); members share no parameter, so
    each ends where its own run would."""
    from subspacelab.api import Member, train_joint

    t, arms = ctx.cfg.train, ctx.cfg.model.arms
    members, names = [], []
    for seed in ctx.seeded():
        train = ctx.load(f"seed{seed}")["train"]
        for arm in arms:
            model = build(ctx, arm)  # initialised under this seed, arm after arm
            members.append(
                Member(
                    model,
                    _loss(model),
                    t.lr,
                    t.weight_decay,
                    data=(train,),
                    seed=seed,
                    augment=core.augment,
                )
            )
            names.append(f"seed{seed}/{arm}")
    result = train_joint(
        ctx,
        members,
        epochs=t.epochs,
        batch_size=t.batch,
        optimizer="adamw",
        label="arms x seeds",
        params={"arms": ",".join(arms), "seeds": ",".join(map(str, ctx.cfg.seeds))},
    )
    for name, member in zip(names, members, strict=True):
        ctx.save_model(name, member.model)
    write_json(ctx.out / "history.json", dict(zip(names, result.history, strict=True)))
    return StepOutput()


def _probabilities(model: nn.Module, x: Tensor, batch: int = 50) -> Tensor:
    """Sigmoid outputs of ``model`` (eval mode, no gradient) on ``x``, batch by batch."""
    with torch.no_grad():
        return torch.cat([torch.sigmoid(model(x[i : i + batch])) for i in range(0, len(x), batch)])


def _report(ctx: Ctx) -> Report:
    """Segmentation metrics and parameters per arm and seed; the loss curves; the figure."""
    arms, thr = ctx.cfg.model.arms, ctx.cfg.eval.threshold
    per_seed = SeedMetrics()
    history = read_json(ctx.inputs["fit"] / "history.json")
    for seed in ctx.seeded():
        raw = ctx.load(f"seed{seed}", step="data")
        x, y = raw["x_test"], raw["y_test"]
        row: dict[str, float] = {}
        for arm in arms:
            model = ctx.load_model(build(ctx, arm), f"seed{seed}/{arm}", step="fit").eval()
            for name, value in core.seg_metrics(_probabilities(model, x), y, thr).items():
                row[f"lesions/{arm}/{name}"] = value
            row[f"lesions/{arm}/params"] = float(sum(p.numel() for p in model.parameters()))
        # the control a trained net must beat: every pixel called lesion
        row["lesions/all_foreground/dsc"] = core.seg_metrics(torch.ones_like(y), y, thr)["dsc"]
        per_seed.record(row)
    metrics = per_seed.as_dict()
    epochs = len(next(iter(history.values())))
    curve = [
        {
            "epoch": e + 1,
            **{
                arm: float(np.mean([history[f"seed{s}/{arm}"][e] for s in ctx.cfg.seeds]))
                for arm in arms
            },
        }
        for e in range(epochs)
    ]
    return Report(
        metrics=metrics,
        figures={
            "routes_and_dsc": _figure(metrics, arms, ctx.cfg.data.size // ctx.cfg.model.patch)
        },
        tables={"Arms (mean ± sd over seeds)": _table(metrics, arms), "Deviations": DEVIATIONS},
        curves={"train_loss": curve},
    )


def _table(metrics: dict[str, list[float]], arms: list[str]) -> str:
    lines = ["| arm | DSC | mIoU | acc | sens | spec | params |", "|---|---|---|---|---|---|---|"]
    for arm in arms:
        cells = []
        for q in ("dsc", "miou", "acc", "sens", "spec"):
            v = np.asarray(metrics[f"lesions/{arm}/{q}"])
            cells.append(f"{v.mean():.4f} ± {v.std():.4f}")
        lines.append(
            f"| {arm} | " + " | ".join(cells) + f" | {int(metrics[f'lesions/{arm}/params'][0])} |"
        )
    fg = np.asarray(metrics["lesions/all_foreground/dsc"])
    lines.append(f"| all pixels = lesion (control) | {fg.mean():.4f} | | | | | 0 |")
    return "\n".join(lines)


DEVIATION_ROWS = (
    (
        "token grid",
        "patch 4 → 16×16 tokens (L = 256)",
        "patch 8 → 8×8 tokens (L = 64), 4×4 at level 2",
        "CPU time: the pure-PyTorch scan at L = 256 and N = 16 costs ~10× the chain's budget",
    ),
    ("d_state N", "16", "4", "CPU time (the scan's state is D·N per token)"),
    (
        "training length",
        "300 epochs (full); ~6 epochs (miniature)",
        "6 epochs, batch 16",
        "the spec's miniature schedule",
    ),
    (
        "GFU without it",
        "—",
        "mhs_sum: the same MHS with the four routes summed",
        "the spec's ± GFU ablation",
    ),
)
DEVIATIONS = "\n".join(
    ["| what | spec / paper | here | why |", "|---|---|---|---|"]
    + ["| " + " | ".join(row) + " |" for row in DEVIATION_ROWS]
)


def _figure(metrics: dict[str, list[float]], arms: list[str], side: int) -> Figure:
    """The four route families on the level-1 token grid (the paper's Fig. of scan routes, first
    route of each) and test DSC per arm (seeds and mean)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 5, figsize=(13, 2.8))
    for ax, (family, makers) in zip(axes[:4], FAMILY_ROUTES.items(), strict=True):
        route = makers[0](side, side).numpy()
        ax.plot(route % side, route // side, "-", lw=1)
        ax.plot(route[0] % side, route[0] // side, "go")
        ax.set_title(f"{family}: {makers[0].__name__}", fontsize=8)
        ax.invert_yaxis()
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    ax = axes[4]
    for k, arm in enumerate(arms):
        dsc = metrics[f"lesions/{arm}/dsc"]
        ax.scatter([k] * len(dsc), dsc, alpha=0.5)
        ax.errorbar(k, np.mean(dsc), yerr=np.std(dsc), fmt="ko", capsize=3)
    ax.set_xticks(range(len(arms)), arms, fontsize=7)
    ax.set_ylabel("test DSC")
    fig.suptitle("MHS-VM miniature: scan routes per head, DSC per arm")
    fig.tight_layout()
    return fig


def _fewer_params(m: Metrics) -> ClaimResult:
    """params(MHS) < params(SS2D), exactly (every seed)."""
    params = m.family("lesions/{arm}/params")
    return decide(
        every("params mhs_gfu - ss2d", gap(params["mhs_gfu"], params["ss2d"]), "<", 0.0),
        ss2d_params=params["ss2d"],
        mhs_params=params["mhs_gfu"],
    )


def _non_inferior(m: Metrics) -> ClaimResult:
    """DSC(MHS) >= DSC(SS2D) − 0.01 on the mean paired gap; SS2D must beat the all-lesion
    control on every seed (else both untrained nets would pass)."""
    dsc = m.family("lesions/{arm}/dsc")
    return decide(
        on_mean("DSC mhs_gfu - ss2d", gap(dsc["mhs_gfu"], dsc["ss2d"]), ">=", -0.01),
        every("DSC ss2d - all-lesion control", gap(dsc["ss2d"], dsc["all_foreground"]), ">", 0.0),
        ss2d_dsc=dsc["ss2d"],
        mhs_dsc=dsc["mhs_gfu"],
    )


def _strict_gain(m: Metrics) -> ClaimResult:
    """DSC(MHS) > DSC(SS2D) on the mean paired gap."""
    dsc = m.family("lesions/{arm}/dsc")
    return decide(
        on_mean("DSC mhs_gfu - ss2d", gap(dsc["mhs_gfu"], dsc["ss2d"]), ">", 0.0),
        ss2d_miou=m["lesions/ss2d/miou"],
        mhs_miou=m["lesions/mhs_gfu/miou"],
    )


STUDY = Study(
    slug="mhs_vm",
    title="MHS-VM: Multi-Head Scanning in Parallel Subspaces for Vision Mamba",
    arxiv="2406.05992",
    group="heads, modules and contrastive",
    config=MhsVmConfig,
    steps=(
        Step(
            "data",
            _data,
            reads=("data",),
            description="procedural lesions with masks per seed (full: ISIC)",
            full=full.data_full,
        ),
        Step(
            "fit",
            _fit,
            needs=("data",),
            reads=("data", "model", "train"),
            kind="models",
            description="VM-UNets (SS2D, MHS sum, MHS GFU) from scratch, all seeds jointly",
        ),
        Step(
            "report", _report, needs=("data", "fit"), reads=("data", "model", "eval"), kind="report"
        ),
    ),
    claims=(
        Claim(
            id="fewer_params",
            statement="params(MHS h=4) < params(SS2D) (exactly)",
            paper="MHS-VM reduces VM-UNet's parameters (replacing SS2D only)",
            check=_fewer_params,
        ),
        Claim(
            id="non_inferior",
            statement="DSC(MHS h=4, GFU) ≥ DSC(SS2D) − 0.01, mean over 3 seeds (from scratch)",
            paper="ISIC18: mIoU 0.8085, DSC 0.8941 (4 heads), above VM-UNet from scratch",
            check=_non_inferior,
        ),
        Claim(
            id="strict_gain",
            statement="DSC(MHS h=4, GFU) > DSC(SS2D) (strict gain; low confidence in miniature)",
            paper="MHS-VM improves segmentation over VM-UNet trained from scratch",
            check=_strict_gain,
        ),
    ),
    curves=(
        Curve(
            "train_loss", x="epoch", y=core.ARMS, title="training loss per epoch (mean over seeds)"
        ),
    ),
    headline=("lesions/*/dsc",),
)
