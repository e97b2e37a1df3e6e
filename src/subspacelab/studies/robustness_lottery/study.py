"""The ``robustness_lottery`` study: steps, claims and wiring (Li et al., arXiv:2206.07918).

data -> fit -> evaluate. A small CNN on MNIST-1D, trained dense and pruned to a high sparsity by
one-shot magnitude + fine-tuning, gradual magnitude pruning, lottery-ticket rewinding and an
edge-popup supermask; evaluated on clean and corrupted test signals through the logit geometry
(angle to the true class direction, feature length, margin).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from scipy.cluster.hierarchy import dendrogram, linkage
from scipy.stats import binomtest, spearmanr

from subspacelab.data import embedded
from subspacelab.data.cifar import CIFAR_RESOURCES, load_cifar
from subspacelab.data.download import fetch, safe_extract
from subspacelab.io import load_tensors, save_tensors
from subspacelab.nets.training import state_dict_cpu
from subspacelab.probes.robustness import NOISES, corrupt
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
from subspacelab.studies.robustness_lottery import core, full
from subspacelab.studies.robustness_lottery.config import RobustnessLotteryConfig

SLUG = "robustness_lottery"


def data(ctx: StepContext) -> StepOutput:
    """mini: MNIST-1D and every (corruption, severity) of its first ``n_test`` test signals.
    full: CIFAR-10 and CIFAR-10-C, downloaded into ``cifar10.download_dir`` with their pinned
    MD5s checked, and extracted into the step's output."""
    d = ctx.cfg.data
    if d.cifar10 is not None:
        cache = ctx.root / d.cifar10.download_dir  # verified archives, kept across runs
        safe_extract(fetch(CIFAR_RESOURCES["cifar10"], cache, ctx.progress), ctx.out / "cifar10")
        folder = full.extract_cifar10c(fetch(full.CIFAR10C, cache, ctx.progress), ctx.out)
        labels = load_cifar(ctx.out / "cifar10", "cifar10").y_test
        for name in d.corruptions:  # every requested file present and matching the test set
            full.load_cifar10c(folder, name, d.severities[0], 10, labels)
        return StepOutput({"corrupted_sets": float(len(d.corruptions) * len(d.severities))})
    s = embedded.mnist1d(d.mnist1d.num_samples, d.seed, d.mnist1d.train_split)
    x_test = s.x_test[: d.n_test]
    arrays = {
        "x_train": s.x_train,
        "y_train": s.y_train,
        "x_test": x_test,
        "y_test": s.y_test[: d.n_test],
    }
    for i, (name, sev) in enumerate(itertools.product(d.corruptions, d.severities)):
        arrays[f"{name}/{sev}"] = corrupt(x_test, name, sev, seed=d.seed + i)
    save_tensors(ctx.out / "data.safetensors", arrays, study=SLUG, kind="dataset")
    return StepOutput({"corrupted_sets": float(len(arrays) - 4)})


class _Data:
    """The training set, the clean test slice and the corrupted cells, whichever the source."""

    def __init__(self, ctx: StepContext) -> None:
        self.cfg: RobustnessLotteryConfig = ctx.cfg
        dc = self.cfg.data
        root: Path = ctx.inputs["data"]
        if dc.cifar10 is not None:
            split = load_cifar(root / "cifar10", "cifar10")
            self.x_train, self.y_train = torch.from_numpy(split.x_train), split.y_train
            self.x_test = torch.from_numpy(split.x_test[: dc.n_test])
            self.y_test = torch.from_numpy(split.y_test[: dc.n_test]).long()
            self._labels = split.y_test
            self._folder: Path | None = root / "CIFAR-10-C"
            self._arrays: dict[str, torch.Tensor] = {}
        else:
            self._arrays = load_tensors(root / "data.safetensors", study=SLUG, kind="dataset")[0]
            self.x_train, self.y_train = self._arrays["x_train"], self._arrays["y_train"]
            self.x_test, self.y_test = self._arrays["x_test"], self._arrays["y_test"].long()
            self._folder = None
        self.y_train = torch.as_tensor(self.y_train).long()

    def corrupted(self, name: str, severity: int) -> torch.Tensor:
        """The corrupted test inputs of one cell."""
        if self._folder is None:
            return self._arrays[f"{name}/{severity}"]
        n = self.cfg.data.n_test
        return full.load_cifar10c(self._folder, name, severity, n, self._labels)


def _make(cfg: RobustnessLotteryConfig, x: torch.Tensor) -> core.Classifier:
    tr = cfg.train
    if tr.arch == "conv8":
        return full.Conv8(tr.channels, tr.hidden, 10)
    return core.SmallCNN(x.shape[1], tr.channels, tr.hidden, 10)


def fit(ctx: StepContext) -> StepOutput:
    """Dense and four pruned models per seed, from one init."""
    cfg: RobustnessLotteryConfig = ctx.cfg
    tr = cfg.train
    d = _Data(ctx)
    out = {}
    for seed in ctx.seeds:
        seed_all(seed)
        models = core.train_methods(
            ctx,
            lambda: _make(cfg, d.x_test),
            d.x_train,
            d.y_train,
            epochs=tr.epochs,
            finetune_epochs=tr.finetune_epochs,
            rewind_epoch=tr.rewind_epoch,
            sparsity=tr.sparsity,
            lr=tr.lr,
            batch=tr.batch_size,
            seed=seed,
        )
        for method, net in models.items():
            save_tensors(
                ctx.out / f"{method}_s{seed}.safetensors",
                state_dict_cpu(net),
                study=SLUG,
                kind="model",
            )
            acc = core.summarise(net.to(ctx.device), d.x_test, d.y_test)["acc"]
            out[f"{method}_s{seed}.clean_acc"] = acc
            ctx.progress(f"{method} seed {seed}: clean accuracy {acc:.3f}")
    return StepOutput(out)


def evaluate(ctx: StepContext) -> Report:
    """Clean and corrupted geometry per model; claims; the views."""
    cfg: RobustnessLotteryConfig = ctx.cfg
    dc = cfg.data
    d = _Data(ctx)
    cells = list(itertools.product(dc.corruptions, dc.severities))
    nets: dict[tuple[int, str], core.Classifier] = {}
    metrics: dict[str, list[float]] = {}
    clean: dict[tuple[int, str], dict[str, float]] = {}
    for seed, method in itertools.product(ctx.seeds, core.METHODS):
        net = _make(cfg, d.x_test)
        if method == "edge_popup":
            core.to_edge_popup(net, 1.0 - cfg.train.sparsity)
        state, _ = load_tensors(
            ctx.inputs["fit"] / f"{method}_s{seed}.safetensors", study=SLUG, kind="model"
        )
        net.load_state_dict(state)
        nets[seed, method] = net.to(ctx.device)
        clean[seed, method] = core.summarise(net, d.x_test, d.y_test)
        for k, v in clean[seed, method].items():
            metrics.setdefault(f"{method}/clean/{k}", []).append(v)
    for name, sev in cells:  # one cell in memory at a time (CIFAR-10-C cells are large)
        x = d.corrupted(name, sev)
        for (seed, method), net in nets.items():
            row = core.summarise(net, x, d.y_test)
            metrics.setdefault(f"{method}/{name}/{sev}/acc", []).append(row["acc"])
            for k in ("angle", "length", "margin"):
                delta = row[k] - clean[seed, method][k]
                metrics.setdefault(f"{method}/{name}/{sev}/d_{k}", []).append(delta)
    n_cells = len(dc.corruptions) * len(dc.severities)
    for method in core.METHODS:
        for key in ("acc", "d_angle"):
            per_seed = np.mean(
                [
                    metrics[f"{method}/{c}/{s}/{key}"]
                    for c, s in itertools.product(dc.corruptions, dc.severities)
                ],
                axis=0,
            )
            metrics[f"{method}/corrupted/{key}"] = list(per_seed)
    metrics["edge_popup_minus_dense/corrupted_acc"] = list(
        np.subtract(metrics["edge_popup/corrupted/acc"], metrics["dense/corrupted/acc"])
    )
    ctx.progress(f"{len(core.METHODS)} models × {n_cells} corrupted sets evaluated")
    return Report(metrics=metrics, figures=_figures(cfg, metrics))


def _profiles(m: dict[str, float], corruptions: list[str], severities: list[int]) -> np.ndarray:
    """Δθ-profile per corruption: mean Δθ over (method, severity)."""
    return np.array(
        [
            [m[f"{meth}/{c}/{s}/d_angle"] for meth in core.METHODS for s in severities]
            for c in corruptions
        ]
    )


def _figures(cfg: RobustnessLotteryConfig, metrics: dict[str, list[float]]) -> dict[str, Figure]:
    dc = cfg.data
    means = {k: float(np.mean(v)) for k, v in metrics.items()}
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for method in core.METHODS:
        dth = [
            np.mean([means[f"{method}/{c}/{s}/d_angle"] for c in dc.corruptions])
            for s in dc.severities
        ]
        dln = [
            np.mean([means[f"{method}/{c}/{s}/d_length"] for c in dc.corruptions])
            for s in dc.severities
        ]
        axes[0].plot(dc.severities, dth, marker="o", label=method)
        axes[1].plot(dc.severities, dln, marker="o", label=method)
    axes[0].set(xlabel="severity", ylabel="mean Δθ_y (deg)", title="angle shift")
    axes[1].set(xlabel="severity", ylabel="mean Δ‖h‖", title="length shift")
    axes[0].legend(fontsize=7)
    prof = _profiles(means, dc.corruptions, dc.severities)
    dendrogram(linkage(prof, "average"), labels=dc.corruptions, ax=axes[2], leaf_rotation=60)
    axes[2].set(title="corruptions by Δθ profile")
    fig.tight_layout()
    return {"geometry_shifts": fig}


# ---------------------------------------------------------------------------------- claims


def _cells(m: Metrics, method: str) -> tuple[list[str], list[int]]:
    names = [p for n in m if len(p := n.split("/")) == 4 and p[0] == method and p[3] == "d_angle"]
    return sorted({p[1] for p in names}), sorted({int(p[2]) for p in names})


def check_a(m: Metrics) -> ClaimResult:
    """(a) θ_y up and ‖h‖ down under corruption for every model, sign test over severities."""
    measured: dict[str, float] = {}
    holds = True
    for method in core.METHODS:
        corr, sevs = _cells(m, method)
        dth = [np.mean([m[f"{method}/{c}/{s}/d_angle"].mean for c in corr]) for s in sevs]
        dln = [np.mean([m[f"{method}/{c}/{s}/d_length"].mean for c in corr]) for s in sevs]
        p_th = binomtest(sum(v > 0 for v in dth), len(sevs), alternative="greater").pvalue
        p_ln = binomtest(sum(v < 0 for v in dln), len(sevs), alternative="greater").pvalue
        measured[f"{method} p(θ up)"] = p_th
        measured[f"{method} p(‖h‖ down)"] = p_ln
        holds &= p_th < 0.05 and p_ln < 0.05
    return ClaimResult(holds, measured)


def check_b(m: Metrics) -> ClaimResult:
    """(b) Spearman(mean Δθ_y, corrupted accuracy) across models ≤ −0.6."""
    dth = [m[f"{meth}/corrupted/d_angle"].mean for meth in core.METHODS]
    acc = [m[f"{meth}/corrupted/acc"].mean for meth in core.METHODS]
    rho = float(spearmanr(dth, acc).statistic)
    return ClaimResult(rho <= -0.6, {"Spearman": rho})


def check_c(m: Metrics) -> ClaimResult:
    """(c) two noise corruptions merge directly in the Δθ-profile dendrogram."""
    corr, sevs = _cells(m, core.METHODS[0])
    prof = _profiles({k: v.mean for k, v in m.items()}, corr, sevs)
    z = linkage(prof, "average")
    n = len(corr)
    pairs = [(int(a), int(b)) for a, b, *_ in z if a < n and b < n]
    noisy = [p for p in pairs if corr[p[0]] in NOISES and corr[p[1]] in NOISES]
    return ClaimResult(
        bool(noisy),
        {"noise-noise leaf merges": float(len(noisy)), "leaf merges": float(len(pairs))},
    )


CLAIMS = (
    Claim(
        "a_shift_signs",
        "(a) under corruption, mean θ_y increases and mean ‖h‖ decreases for "
        "all models (sign test over severities)",
        "Li et al.: corruptions push features away from their class directions",
        check_a,
    ),
    Claim(
        "b_angle_predicts_robustness",
        "(b) across models, Spearman(mean Δθ_y, corrupted accuracy) ≤ −0.6",
        "Li et al.: robust tickets keep corrupted features closer in angle",
        check_b,
    ),
    Claim(
        "c_noise_redundancy",
        "(c) at least two noise corruptions cluster together in the "
        "Δθ-profile dendrogram (redundancy)",
        "Li et al.: several CIFAR-10-C corruptions are redundant",
        check_c,
    ),
)

STUDY = Study(
    slug=SLUG,
    title="Understanding Robustness Lottery: A Geometric Visual Comparative Analysis of Neural "
    "Network Pruning Approaches",
    arxiv="2206.07918",
    group="geometry of trained networks",
    config=RobustnessLotteryConfig,
    steps=(
        Step("data", data, reads=("data",), description="MNIST-1D and its corrupted test sets"),
        Step(
            "fit",
            fit,
            needs=("data",),
            reads=("data", "train"),
            kind="models",
            description="dense, magnitude+finetune, gradual, LTH rewind, edge-popup",
        ),
        Step(
            "evaluate",
            evaluate,
            needs=("data", "fit"),
            reads=("data", "train"),
            kind="report",
            description="logit geometry clean vs corrupted; claims (a)-(c)",
        ),
    ),
    claims=CLAIMS,
)
