"""modules_compare: every attention/gating module of the heads/modules group on one backbone.

The chain fit -> report, on ulsam's inputs (issue 14, item 3):

* fit — the compact CNN of ulsam with, after its last block, squeeze-and-excitation (Hu et al.,
  arXiv:1709.01507) or CBAM's spatial attention (Woo et al., arXiv:1807.06521), and the CNN whose
  classifier reads its pooled features through hydra's class-pair gate (Wu et al.,
  arXiv:2410.18200): logit_c = w_c · (γ(c, c) ⊙ z) + b_c, the gate of the class pair (c, c)
  filtering the features each class scores (the gate needs a label, so every class is scored
  through its own); trained on ulsam's cluttered digits per seed, with ulsam's schedule and the
  same seeded batches as ulsam's arms of that seed (train_joint, one member per arm and seed);
* report — those arms beside ulsam's own trained baseline and ULSAM arms (inserted, replacing;
  arXiv:2006.15102): test accuracy, parameters and MACs (``subspacelab.modules.count``, plus one
  multiply per element of every x ⊙ s product, the convention ulsam uses for A ⊙ F + F), and CPU
  latency at each batch size (median of repeats, one thread; machine-dependent, ``_seconds``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from subspacelab.api import (
    Report,
    SeedMetrics,
    Step,
    StepContext,
    StepOutput,
    Study,
    accuracy,
    predict,
)
from subspacelab.modules.count import count
from subspacelab.modules.gates import ClassPairGate, Scale, SpatialAttention, SqueezeExcitation
from subspacelab.studies.modules_compare.config import ModulesCompareConfig
from subspacelab.studies.ulsam import core as ulsam

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Ctx = StepContext[ModulesCompareConfig]
OWN = ("se", "cbam", "hydra_gate")  # the arms trained here


class GatedClassifier(nn.Module):
    """The compact CNN whose linear classifier reads γ(c, c) ⊙ z for each class c: hydra's
    class-pair gate as a class-conditional feature filter."""

    def __init__(self, cnn: ulsam.CompactCNN, gate: ClassPairGate, classes: int) -> None:
        super().__init__()
        self.cnn, self.gate, self.classes = cnn, gate, classes
        self.scale = Scale()

    def forward(self, x: Tensor) -> Tensor:
        """Logits (b, classes)."""
        z = self.cnn.pool(self.cnn.blocks(self.cnn.stem(x))).flatten(1)  # (b, d)
        g = self.gate(torch.arange(self.classes, device=x.device))  # (classes, d)
        w = self.scale(self.cnn.fc.weight, g)  # (classes, d): w_c ⊙ γ(c, c)
        return z @ w.T + self.cnn.fc.bias


def ulsam_arms(groups: int) -> tuple[str, ...]:
    """ulsam's arms the table reads: the baseline and ULSAM with ``groups`` subspaces."""
    return ("baseline", f"insert_g{groups}", f"replace_g{groups}")


def build(cfg: ModulesCompareConfig, arm: str, classes: int = 10) -> nn.Module:
    """One arm: ulsam's (``baseline``, ``insert_g<g>``, ``replace_g<g>``) or ``se``, ``cbam``
    (after the last block) or ``hydra_gate`` (the gated classifier)."""
    b, m = cfg.backbone, cfg.modules
    if arm not in OWN:
        return ulsam.build(arm, b.stem, b.widths, b.strides, b.bn_momentum)
    cnn = ulsam.build("baseline", b.stem, b.widths, b.strides, b.bn_momentum)
    width = b.widths[-1]
    if arm == "se":
        cnn.blocks.append(SqueezeExcitation(width, m.se_reduction))
    elif arm == "cbam":
        cnn.blocks.append(SpatialAttention(m.cbam_kernel, b.bn_momentum))
    else:
        return GatedClassifier(
            cnn, ClassPairGate(classes, width, m.gate_embed, m.gate_hidden), classes
        )
    return cnn


def _ce(model: nn.Module) -> Callable[[Tensor, Tensor], Tensor]:
    return lambda x, y: F.cross_entropy(model(x), y)


def _fit(ctx: Ctx) -> StepOutput:
    """SE, CBAM and gate arms per seed in one joint run, on ulsam's data with its schedule."""
    from subspacelab.api import Member, train_joint

    t = ctx.cfg.train
    members, names = [], []
    for seed in ctx.seeded():
        raw = ctx.load(f"seed{seed}", step="ulsam.data")
        for arm in OWN:
            model = build(ctx.cfg, arm).to(memory_format=torch.channels_last)
            data = (raw["x_train"], raw["y_train"])
            members.append(Member(model, _ce(model), t.lr, data=data, seed=seed))
            names.append(f"seed{seed}/{arm}")
    train_joint(
        ctx,
        members,
        epochs=t.epochs,
        batch_size=t.batch,
        optimizer="adam",
        label="se, cbam, hydra gate x seeds",
    )
    for name, member in zip(names, members, strict=True):
        ctx.save_model(name, member.model)
    return StepOutput()


def scale_products(model: nn.Module, x: Tensor) -> int:
    """Elements of every x ⊙ s product of ``model`` on ``x`` (one multiply each), which
    ``count`` leaves out for :class:`Scale`."""
    seen: list[int] = []
    hooks = [
        m.register_forward_hook(lambda _m, _a, out: seen.append(out.numel()))
        for m in model.modules()
        if isinstance(m, Scale)
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return sum(seen)


@torch.no_grad()
def latency(model: nn.Module, x: Tensor, repeats: int) -> float:
    """Median seconds of one forward pass of ``model`` (eval) on ``x``, one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model(x)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return statistics.median(times)


def _report(ctx: Ctx) -> Report:
    """Accuracy, parameters, MACs and latency of every arm; the table and a plot."""
    cfg = ctx.cfg
    arms = (*ulsam_arms(cfg.backbone.ulsam_groups), *OWN)
    per_seed = SeedMetrics()
    for seed in ctx.seeded():
        raw = ctx.load(f"seed{seed}", step="ulsam.data")
        x, y = raw["x_test"], raw["y_test"]
        row: dict[str, float] = {}
        for arm in arms:
            step = "fit" if arm in OWN else "ulsam.fit"
            model = ctx.load_model(build(cfg, arm), f"seed{seed}/{arm}", step=step).eval()
            c = count(model, x[:1])
            with torch.no_grad():
                row[f"cluttered/{arm}/acc"] = accuracy(predict(model, x, batch_size=500), y)
            row[f"cluttered/{arm}/params"] = float(c.params)
            row[f"cluttered/{arm}/macs"] = float(c.macs + scale_products(model, x[:1]))
            for b in cfg.latency.batches:
                batch = x[:b] if b <= len(x) else x[torch.arange(b) % len(x)]
                row[f"cluttered/{arm}/latency_b{b}_seconds"] = latency(
                    model, batch, cfg.latency.repeats
                )
        per_seed.record(row)
    metrics = per_seed.as_dict()
    return Report(
        metrics=metrics,
        figures={"acc_vs_macs": _figure(metrics, arms)},
        tables={
            "Modules on one backbone (mean over seeds)": table(metrics, arms, cfg.latency.batches),
            "How each arm is built": HOW,
        },
    )


def table(metrics: dict[str, list[float]], arms: tuple[str, ...], batches: list[int]) -> str:
    """One row per arm: accuracy (mean ± sd, and the paired gap to the baseline), parameters,
    MACs, and latency per batch size."""
    lat = " | ".join(f"CPU ms, batch {b}" for b in batches)
    lines = [
        f"| arm | test acc | Δ vs baseline (paired mean) | params | MACs | {lat} |",
        "|---|---|---|---|---|" + "---|" * len(batches),
    ]
    base = np.asarray(metrics["cluttered/baseline/acc"])
    for arm in arms:
        acc = np.asarray(metrics[f"cluttered/{arm}/acc"])
        ms = " | ".join(
            f"{1e3 * np.mean(metrics[f'cluttered/{arm}/latency_b{b}_seconds']):.2f}"
            for b in batches
        )
        lines.append(
            f"| {arm} | {acc.mean():.4f} ± {acc.std():.4f} | {np.mean(acc - base):+.4f} "
            f"| {int(metrics[f'cluttered/{arm}/params'][0])} "
            f"| {int(metrics[f'cluttered/{arm}/macs'][0])} | {ms} |"
        )
    return "\n".join(lines)


HOW = "\n".join(
    [
        "| arm | module | where | trained by |",
        "|---|---|---|---|",
        "| baseline | none | compact MobileNet-V1-style CNN | ulsam (fit) |",
        "| insert_g* | ULSAM, g subspaces | after the last block | ulsam (fit) |",
        "| replace_g* | ULSAM, g subspaces | in place of the last 128→128 block | ulsam (fit) |",
        "| se | squeeze-and-excitation, reduction r | after the last block | this study |",
        "| cbam | CBAM spatial attention (k×k conv on channel mean/max, BN, σ) | after the last "
        "block | this study |",
        "| hydra_gate | class-pair gate γ(c, c) on the pooled features | the classifier: "
        "logit_c = w_c·(γ(c,c) ⊙ z) + b_c | this study |",
    ]
)


def _figure(metrics: dict[str, list[float]], arms: tuple[str, ...]) -> Figure:
    """Accuracy against MACs per arm (seeds and mean ± sd)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for arm in arms:
        acc = metrics[f"cluttered/{arm}/acc"]
        macs = metrics[f"cluttered/{arm}/macs"][0] / 1e6
        ax.scatter([macs] * len(acc), acc, alpha=0.4)
        ax.errorbar(macs, np.mean(acc), yerr=np.std(acc), fmt="o", label=arm, capsize=3)
    ax.set_xlabel("MACs per image (millions)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Attention and gating modules on cluttered digits")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


STUDY = Study(
    slug="modules_compare",
    title="Attention and gating modules on one backbone: ULSAM, SE, CBAM spatial attention and "
    "the hydra gate",
    arxiv="2006.15102",
    group="heads, modules and contrastive",
    config=ModulesCompareConfig,
    kind="comparison",
    steps=(
        Step(
            "fit",
            _fit,
            reads=("backbone", "modules", "train"),
            kind="models",
            uses=("ulsam.data",),
            description="SE, CBAM and hydra-gate arms on ulsam's data and schedule",
        ),
        Step(
            "report",
            _report,
            needs=("fit",),
            reads=("backbone", "modules", "latency"),
            kind="report",
            uses=("ulsam.data", "ulsam.fit"),
            description="accuracy, parameters, MACs and CPU latency of every module",
        ),
    ),
    claims=(),
    headline=("cluttered/*/acc",),
)
