"""Hydra/SimLAP: Rethinking Positive Pairs in Contrastive Learning (arXiv 2410.18200).

The chain data -> fit -> report of the spec's miniature (§6):

* data — MNIST-1D generated locally (4000 train / 1000 test signals of length 40; the full
  profile: CIFAR-10's MD5-pinned archive);
* fit — per seed, five arms in one ``train_joint`` run (each member on its own seeded batches;
  the arms of one seed see the same batches and the same augmentations: paired): SimLAP with
  arbitrary class pairs, SimLAP with distinct pairs, distinct pairs without the gate (γ ≡ 1),
  SupCon (identical pairs, no gate) and plain cross-entropy;
* report — linear-probe accuracy on frozen r, the jointly trained detached head's accuracy, the
  effective rank of test z and r and z's singular spectrum, the gates' mean activation and
  Bernoulli entropy, and the Spearman correlation between the single-class gates' cosine
  similarities and the cross-entropy net's soft confusion (with an untrained gate as control);
  metrics ``mnist1d/<arm>/<quantity>``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

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
    accuracy,
    decide,
    gap,
    on_mean,
    predict,
    read_json,
    write_json,
)
from subspacelab.data import embedded
from subspacelab.data.cifar import fetch_cifar, load_cifar
from subspacelab.modules.gates import ClassPairGate, OpenGate
from subspacelab.studies.hydra import core
from subspacelab.studies.hydra.config import HydraConfig

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Ctx = StepContext[HydraConfig]
CLASSES = 10
SETTING = "mnist1d"  # the metrics' first level (the full profile's CIFAR-10 keeps the names)
ARMS = tuple(core.ARMS)


def _data(ctx: Ctx) -> StepOutput:
    """MNIST-1D from its generator (one data set; the seeds vary init, batches, augmentation)."""
    d = ctx.cfg.data
    s = embedded.mnist1d(d.num_samples, d.generator_seed, d.train_split)
    arrays = {"x_train": s.x_train, "y_train": s.y_train, "x_test": s.x_test, "y_test": s.y_test}
    ctx.save("dataset", arrays)
    return StepOutput({"train": float(len(s.y_train)), "test": float(len(s.y_test))})


def _data_full(ctx: Ctx) -> StepOutput:
    """CIFAR-10: the MD5-checked python archive, extracted, saved as float32 NCHW in [0, 1]."""
    split = load_cifar(fetch_cifar("cifar10", ctx.out / "cifar", ctx.progress), "cifar10")
    arrays = {
        "x_train": split.x_train,
        "y_train": split.y_train,
        "x_test": split.x_test,
        "y_test": split.y_test,
    }
    ctx.save("dataset", arrays)
    return StepOutput({"train": float(len(split.y_train)), "test": float(len(split.y_test))})


def _model(ctx: Ctx, arm: str, length: int) -> core.SimLAP:
    """The arm's network, initialised from the current RNG state."""
    m = ctx.cfg.model
    if m.backbone == "resnet18":
        from subspacelab.studies.hydra.full import resnet18_cifar

        backbone, rep_dim = resnet18_cifar(), 512
    else:
        backbone, rep_dim = core.Conv1dEncoder(length, m.channels, m.kernel, m.rep_dim), m.rep_dim
    gate: ClassPairGate | OpenGate = (
        ClassPairGate(CLASSES, m.out_dim, m.embed_dim, m.gate_hidden, fuse=m.fuse)
        if core.ARMS[arm].gated
        else OpenGate(m.out_dim)
    )
    return core.SimLAP(backbone, rep_dim, m.proj_hidden, m.out_dim, gate, CLASSES)


def _loss(ctx: Ctx, model: core.SimLAP, arm: str, seed: int) -> Callable[[Tensor, Tensor], Tensor]:
    """The arm's batch loss; partner classes drawn from a generator seeded ``seed + 2``."""
    gen = torch.Generator().manual_seed(seed + 2)
    t, m = ctx.cfg.train, ctx.cfg.model

    def loss(x: Tensor, y: Tensor) -> Tensor:
        return core.arm_loss(
            model,
            core.ARMS[arm],
            x,
            y,
            classes=CLASSES,
            temperature=m.temperature,
            label_smoothing=t.label_smoothing,
            gen=gen,
        )

    return loss


def _augment(ctx: Ctx) -> Callable[[Tensor, torch.Generator], Tensor]:
    d = ctx.cfg.data

    def aug(x: Tensor, gen: torch.Generator) -> Tensor:
        return core.augment(x, gen, d.shift, d.scale_min, d.scale_max, d.noise)

    return aug


def _fit(ctx: Ctx) -> StepOutput:
    """Every arm and seed in one joint run (Adam, constant lr): members share no parameter, so
    each ends where its own run would."""
    from subspacelab.api import Member, train_joint

    t = ctx.cfg.train
    raw = ctx.load("dataset")
    x, y = raw["x_train"], raw["y_train"]
    members, names = [], []
    for seed in ctx.seeded():
        for arm in ARMS:
            model = _model(ctx, arm, x.shape[-1])  # initialised under this seed, arm after arm
            members.append(
                Member(
                    model,
                    _loss(ctx, model, arm, seed),
                    t.lr,
                    weight_decay=t.weight_decay,
                    data=(x, y),
                    seed=seed,
                    augment=_augment(ctx),
                )
            )
            names.append(f"seed{seed}/{arm}")
    result = train_joint(
        ctx,
        members,
        epochs=t.epochs,
        batch_size=t.batch,
        optimizer="adam",
        label="arms x seeds",
        params={"arms": ",".join(ARMS), "seeds": ",".join(map(str, ctx.cfg.seeds))},
    )
    for name, member in zip(names, members, strict=True):
        ctx.save_model(name, member.model)
    write_json(ctx.out / "history.json", dict(zip(names, result.history, strict=True)))
    return StepOutput()


def _embed(model: core.SimLAP, x: Tensor) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        parts = [model.embed(xb) for xb in x.split(500)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _report(ctx: Ctx) -> Report:
    """Probe and head accuracy, effective ranks, gate statistics and the gate-confusion
    correlation per arm and seed; z's spectra and the loss curves."""
    e = ctx.cfg.eval
    raw = ctx.load("dataset", step="data")
    x_tr, y_tr, x_te, y_te = raw["x_train"], raw["y_train"], raw["x_test"], raw["y_test"]
    history = read_json(ctx.inputs["fit"] / "history.json")
    per_seed = SeedMetrics()
    spectra: dict[str, list[Tensor]] = {arm: [] for arm in core.CONTRASTIVE}
    shown: dict[str, Tensor] = {}
    for seed in ctx.seeded():
        row: dict[str, float] = {}
        models = {
            arm: ctx.load_model(
                _model(ctx, arm, x_tr.shape[-1]), f"seed{seed}/{arm}", step="fit"
            ).eval()
            for arm in ARMS
        }
        confusion = core.soft_confusion(
            torch.softmax(predict(models["ce"], x_te, batch_size=500), dim=1), y_te, CLASSES
        )
        for arm, model in models.items():
            r_tr, _ = _embed(model, x_tr)
            r_te, z_te = _embed(model, x_te)
            row[f"{SETTING}/{arm}/probe_acc"] = core.linear_probe(
                r_tr, y_tr, r_te, y_te, e.probe_c, e.probe_iter
            )
            row[f"{SETTING}/{arm}/head_acc"] = accuracy(predict(model, x_te, batch_size=500), y_te)
            row[f"{SETTING}/{arm}/erank_r"], _ = core.effective_rank(r_te)
            if arm in core.CONTRASTIVE:
                row[f"{SETTING}/{arm}/erank_z"], spectrum = core.effective_rank(z_te)
                spectra[arm].append(spectrum)
            if isinstance(model.gate, ClassPairGate):
                with torch.no_grad():
                    sim = core.gate_similarity(model.gate(torch.arange(CLASSES)))
                open_, entropy = model.gate.statistics()
                row[f"{SETTING}/{arm}/gate_open"] = open_ / ctx.cfg.model.out_dim
                row[f"{SETTING}/{arm}/gate_entropy"] = entropy
                row[f"{SETTING}/{arm}/gate_spearman"] = core.spearman_off_diagonal(sim, confusion)
                if seed == ctx.cfg.seeds[0]:
                    shown[arm] = sim
        torch.manual_seed(seed)  # the control: an untrained gate, initialised under the seed
        m = ctx.cfg.model
        fresh = ClassPairGate(CLASSES, m.out_dim, m.embed_dim, m.gate_hidden, fuse=m.fuse).eval()
        with torch.no_grad():
            fresh_sim = core.gate_similarity(fresh(torch.arange(CLASSES)))
        row[f"{SETTING}/untrained_gate/gate_spearman"] = core.spearman_off_diagonal(
            fresh_sim, confusion
        )
        if seed == ctx.cfg.seeds[0]:
            shown["ce soft confusion"] = confusion
        per_seed.record(row)
    metrics = per_seed.as_dict()
    return Report(
        metrics=metrics,
        figures={"gates_and_accuracy": _figure(metrics, shown)},
        tables={"Arms (mean ± sd over seeds)": _table(metrics), "Deviations": DEVIATIONS},
        curves={
            "train_loss": _loss_curve(history, ctx.cfg.seeds),
            "z_spectrum": _spectrum(spectra),
        },
    )


def _loss_curve(history: dict[str, list[float]], seeds: list[int]) -> list[dict[str, float]]:
    epochs = len(next(iter(history.values())))
    return [
        {
            "epoch": ep + 1,
            **{arm: float(np.mean([history[f"seed{s}/{arm}"][ep] for s in seeds])) for arm in ARMS},
        }
        for ep in range(epochs)
    ]


def _spectrum(spectra: dict[str, list[Tensor]]) -> list[dict[str, float]]:
    """σ_k/Σσ of test z per contrastive arm (mean over seeds), k = 1..out_dim."""
    mean = {arm: torch.stack(v).mean(0) for arm, v in spectra.items()}
    n = len(next(iter(mean.values())))
    return [{"k": k + 1, **{arm: float(mean[arm][k]) for arm in mean}} for k in range(n)]


def _cell(metrics: dict[str, list[float]], name: str) -> str:
    v = metrics.get(name)
    return "" if v is None else f"{np.mean(v):.3f} ± {np.std(v, ddof=1) if len(v) > 1 else 0:.3f}"


def _table(metrics: dict[str, list[float]]) -> str:
    cols = ("probe_acc", "head_acc", "erank_z", "erank_r", "gate_open", "gate_entropy")
    lines = [
        "| arm | " + " | ".join(cols) + " | gate–confusion Spearman |",
        "|---|" + "---|" * (len(cols) + 1),
    ]
    for arm in (*ARMS, "untrained_gate"):
        cells = [_cell(metrics, f"{SETTING}/{arm}/{c}") for c in cols]
        lines.append(
            f"| {arm} | "
            + " | ".join(cells)
            + f" | {_cell(metrics, f'{SETTING}/{arm}/gate_spearman')} |"
        )
    return "\n".join(lines)


DEVIATION_ROWS = (
    (
        "views",
        "the authors' code contrasts one augmented view with itself",
        "one augmented view; the anchor itself is never its own positive",
        "with one view the self-pair is a constant term (spec: P_i = {j : y_j = y₂})",
    ),
    (
        "logits",
        "the code's `disparate_loss`: (z_i⊙γ²)·z_j, no normalisation or τ",
        "the spec's cos(γ⊙z_i, γ⊙z_j)/τ, τ = 0.1 (the code's `Filter` class)",
        "the spec's §3 formula",
    ),
    (
        "augmentation",
        "RandAugment, random erasing (images)",
        "shift ±3 (zero fill), amplitude ×[0.8, 1.2], Gaussian noise (spec §6)",
        "1-D signals",
    ),
    (
        "seeds",
        "seeds as separate DVC stages (spec §6)",
        "all arms and seeds in one `train_joint` run",
        "the lab's joint trainer: each member ends where its own run would",
    ),
    (
        "gate similarity",
        "class relationships from the gates (paper)",
        "cosine between single-class gates γ(a, a), Spearman against the CE net's soft confusion",
        "the spec names the matrix, not which gates; soft confusion has no ties",
    ),
    (
        "schedule (full)",
        "2 warm-up epochs, then the authors' schedule; RandAugment 3, random erasing 0.1",
        "constant Adam lr, the shift/scale/noise augmentation (horizontal shift on images)",
        "the lab's joint trainer has constant and cosine schedules only",
    ),
    (
        "second data set",
        "sklearn digits as a second check (spec §6)",
        "not run",
        "time; MNIST-1D carries every claim",
    ),
)
DEVIATIONS = "\n".join(
    ["| what | spec / paper | here | why |", "|---|---|---|---|"]
    + ["| " + " | ".join(row) + " |" for row in DEVIATION_ROWS]
)


def _figure(metrics: dict[str, list[float]], shown: dict[str, Tensor]) -> Figure:
    """Probe accuracy per arm (seeds and mean), and the first seed's gate-similarity matrices
    beside the CE net's soft confusion."""
    import matplotlib.pyplot as plt

    mats = list(shown.items())
    fig, axes = plt.subplots(1, 1 + len(mats), figsize=(3.6 * (1 + len(mats)), 3.4))
    ax = axes[0]
    for i, arm in enumerate(ARMS):
        acc = metrics[f"{SETTING}/{arm}/probe_acc"]
        ax.scatter([i] * len(acc), acc, alpha=0.4)
        ax.errorbar(i, np.mean(acc), yerr=np.std(acc), fmt="o", capsize=3, color="k")
    ax.set_xticks(range(len(ARMS)), ARMS, rotation=35, ha="right", fontsize=7)
    ax.set_ylabel("linear-probe accuracy (frozen r)")
    for ax, (name, mat) in zip(axes[1:], mats, strict=True):
        off = mat.clone().fill_diagonal_(float("nan"))
        im = ax.imshow(off.numpy(), cmap="viridis")
        ax.set_title(name if "confusion" in name else f"{name}: gate cos", fontsize=8)
        ax.set_xticks(range(CLASSES))
        ax.set_yticks(range(CLASSES))
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def _distinct_with_gate(m: Metrics) -> ClaimResult:
    """(a) probe acc(SimLAP-distinct) ≥ 0.95 × acc(SupCon) and ≥ acc(distinct-no-gate) + 10 pt."""
    acc = m.family(f"{SETTING}/{{arm}}/probe_acc")
    supcon95 = [0.95 * v for v in acc["supcon"].values]
    return decide(
        on_mean(
            "acc simlap_distinct - 0.95 acc supcon",
            gap(acc["simlap_distinct"], supcon95),
            ">=",
            0.0,
        ),
        on_mean(
            "acc simlap_distinct - acc distinct_nogate",
            gap(acc["simlap_distinct"], acc["distinct_nogate"]),
            ">=",
            0.10,
        ),
        simlap_distinct_acc=acc["simlap_distinct"],
        supcon_acc=acc["supcon"],
        distinct_nogate_acc=acc["distinct_nogate"],
    )


def _no_collapse(m: Metrics) -> ClaimResult:
    """(b) effective rank of test z: SimLAP (arbitrary pairs, the paper's method) > SupCon."""
    er = m.family(f"{SETTING}/{{arm}}/erank_z")
    return decide(
        on_mean(
            "erank_z simlap_arbitrary - supcon", gap(er["simlap_arbitrary"], er["supcon"]), ">", 0.0
        ),
        simlap_arbitrary_erank=er["simlap_arbitrary"],
        simlap_distinct_erank=er["simlap_distinct"],
        supcon_erank=er["supcon"],
    )


def _gates_reveal_classes(m: Metrics) -> ClaimResult:
    """(c) Spearman(gate cosine similarity, soft confusion) over class pairs > 0 (SimLAP,
    arbitrary pairs); the untrained gate's correlation is shown as the control."""
    rho = m.family(f"{SETTING}/{{arm}}/gate_spearman")
    return decide(
        on_mean("spearman simlap_arbitrary", rho["simlap_arbitrary"], ">", 0.0),
        simlap_distinct_spearman=rho["simlap_distinct"],
        untrained_gate_spearman=rho["untrained_gate"],
    )


STUDY = Study(
    slug="hydra",
    title="Rethinking Positive Pairs in Contrastive Learning (Hydra/SimLAP)",
    arxiv="2410.18200",
    group="heads, modules and contrastive",
    config=HydraConfig,
    steps=(
        Step(
            "data",
            _data,
            full=_data_full,
            reads=("data",),
            description="MNIST-1D generated locally (full: CIFAR-10)",
        ),
        Step(
            "fit",
            _fit,
            needs=("data",),
            reads=("data", "model", "train"),
            kind="models",
            description="SimLAP (arbitrary, distinct), distinct without gate, SupCon and CE, "
            "all seeds in one joint run",
        ),
        Step("report", _report, needs=("data", "fit"), reads=("model", "eval"), kind="report"),
    ),
    claims=(
        Claim(
            id="distinct_pairs_need_the_gate",
            statement="linear-probe acc(SimLAP-distinct) ≥ 0.95 × acc(SupCon) and "
            "≥ acc(distinct-no-gate) + 10 pts",
            paper="arbitrary/distinct class pairs as positives work with the feature filter "
            "(IN1K, 500,500 pairs); without it they do not",
            check=_distinct_with_gate,
        ),
        Claim(
            id="no_collapse",
            statement="effective rank of test z: SimLAP (arbitrary pairs) > SupCon",
            paper="SimLAP prevents dimensional collapse",
            check=_no_collapse,
        ),
        Claim(
            id="gates_reveal_classes",
            statement="gates of confusable digit pairs are more similar: Spearman(gate cosine, "
            "soft confusion) > 0",
            paper="the gates reveal class relationships",
            check=_gates_reveal_classes,
        ),
    ),
    curves=(
        Curve("train_loss", x="epoch", y=ARMS, title="training loss per epoch (mean over seeds)"),
        Curve(
            "z_spectrum",
            x="k",
            y=core.CONTRASTIVE,
            title="normalised singular values of test z (mean over seeds)",
        ),
    ),
    headline=(f"{SETTING}/*/probe_acc", f"{SETTING}/*/erank_z"),
)
