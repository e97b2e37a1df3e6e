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
from scipy.stats import spearmanr

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
    on_mean,
)
from subspacelab.data import embedded
from subspacelab.data.cifar import CIFAR_RESOURCES, load_cifar
from subspacelab.data.download import fetch, safe_extract
from subspacelab.probes.robustness import NOISES, corrupt
from subspacelab.probes.stats import sign_test
from subspacelab.studies.robustness_lottery import core, full
from subspacelab.studies.robustness_lottery.config import RobustnessLotteryConfig

SLUG = "robustness_lottery"


def data(ctx: StepContext[RobustnessLotteryConfig]) -> StepOutput:
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
    ctx.save("data", arrays, kind="dataset")
    return StepOutput({"corrupted_sets": float(len(arrays) - 4)})


class _Data:
    """The training set, the clean test slice and the corrupted cells, whichever the source."""

    def __init__(self, ctx: StepContext[RobustnessLotteryConfig]) -> None:
        self.cfg = ctx.cfg
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
            self._arrays = ctx.load("data", step="data", kind="dataset")
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


def fit(ctx: StepContext[RobustnessLotteryConfig]) -> StepOutput:
    """Dense and four pruned models per seed, from one init."""
    from subspacelab.studies.robustness_lottery.training import train_methods

    cfg = ctx.cfg
    tr = cfg.train
    d = _Data(ctx)
    out = {}
    for seed in ctx.seeded():
        models = train_methods(
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
            ctx.save_model(f"{method}_s{seed}", net)
            acc = core.summarise(net.to(ctx.device), d.x_test, d.y_test)["acc"]
            out[f"{method}_s{seed}.clean_acc"] = acc
            ctx.progress(f"{method} seed {seed}: clean accuracy {acc:.3f}")
    return StepOutput(out)


def evaluate(ctx: StepContext[RobustnessLotteryConfig]) -> Report:
    """Clean and corrupted geometry per model; claims; the views."""
    cfg = ctx.cfg
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
        ctx.load_model(net, f"{method}_s{seed}", step="fit")
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
        clean_acc = np.asarray(metrics[f"{method}/clean/acc"])
        for key in ("acc", "d_angle", "d_length"):
            per_seed = np.mean(
                [
                    metrics[f"{method}/{c}/{s}/{key}"]
                    for c, s in itertools.product(dc.corruptions, dc.severities)
                ],
                axis=0,
            )
            metrics[f"{method}/corrupted/{key}"] = list(per_seed)
        # relative robustness (issue 12): accuracy under corruption / clean accuracy
        metrics[f"{method}/corrupted/rel_acc"] = list(
            np.asarray(metrics[f"{method}/corrupted/acc"]) / np.maximum(clean_acc, 1e-12)
        )
    metrics["edge_popup_minus_dense/corrupted/acc"] = list(
        np.subtract(metrics["edge_popup/corrupted/acc"], metrics["dense/corrupted/acc"])
    )
    ctx.progress(f"{len(core.METHODS)} models × {n_cells} corrupted sets evaluated")
    return Report(
        metrics=metrics,
        figures=_figures(cfg, metrics),
        tables=_tables(cfg, metrics),
        curves=severity_curves(metrics, dc.corruptions, dc.severities),
    )


def severity_curves(
    metrics: dict[str, list[float]], corruptions: list[str], severities: list[int]
) -> dict[str, list[dict[str, float]]]:
    """The DVC curves: per arm, accuracy and the mean angle shift Δθ_y against the corruption
    severity (0: clean; mean over corruptions and seeds)."""

    def at(method: str, sev: int, key: str) -> float:
        if sev == 0:
            return float(np.mean(metrics[f"{method}/clean/acc"])) if key == "acc" else 0.0
        return float(np.mean([metrics[f"{method}/{c}/{sev}/{key}"] for c in corruptions]))

    xs = [0, *severities]
    return {
        f"{key.removeprefix('d_')}_vs_severity": [
            {"severity": float(s)} | {m: at(m, s, key) for m in core.METHODS} for s in xs
        ]
        for key in ("acc", "d_angle")
    }


def _tables(cfg: RobustnessLotteryConfig, metrics: dict[str, list[float]]) -> dict[str, str]:
    """Per arm: clean accuracy and whether it passes the gate, corrupted and relative
    accuracy, mean shifts; per corruption: the dense model's accuracy by severity (severity 1
    is calibrated to a small drop); the deviations left."""
    dense = float(np.mean(metrics["dense/clean/acc"]))
    rows = [
        "| arm | clean acc | used (≥ gate) | corrupted acc | relative | mean Δθ_y (°) "
        "| mean Δ‖h‖ |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in core.METHODS:
        clean = float(np.mean(metrics[f"{method}/clean/acc"]))
        cells = [
            Stat(tuple(metrics[f"{method}/{k}"])).fmt(3)
            for k in ("clean/acc", "corrupted/acc", "corrupted/rel_acc")
        ]
        shifts = [
            Stat(tuple(metrics[f"{method}/corrupted/{k}"])).fmt(2) for k in ("d_angle", "d_length")
        ]
        used = "yes" if clean >= CLEAN_GATE * dense else "**no**"
        rows.append(
            f"| {method} | {cells[0]} | {used} | {cells[1]} | {cells[2]} | "
            + " | ".join(shifts)
            + " |"
        )
    dc = cfg.data
    sev = [
        "| corruption | " + " | ".join(f"s{s}" for s in dc.severities) + " |",
        "|---" * (len(dc.severities) + 1) + "|",
    ]
    for c in dc.corruptions:
        accs = [Stat(tuple(metrics[f"dense/{c}/{s}/acc"])).fmt(3) for s in dc.severities]
        sev.append(f"| {c} | " + " | ".join(accs) + " |")
    clean = Stat(tuple(metrics["dense/clean/acc"])).fmt(3)
    sev.append(f"| clean | {clean} |" + " |" * (len(dc.severities) - 1))
    return {
        f"Arms (gate: clean accuracy ≥ {CLEAN_GATE:g} × dense, mean over seeds)": "\n".join(rows),
        "Dense accuracy per corruption and severity": "\n".join(sev),
        "Deviations": DEVIATIONS,
    }


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


DEVIATIONS = "\n".join(
    [
        "| what | the paper / official code | here | why |",
        "|---|---|---|---|",
        "| edge-popup schedule | SGD lr 0.1, momentum 0.9, weight decay 1e-4, cosine, "
        "100 epochs (allenai/hidden-networks) | Adam, the lr and epochs of every arm | one "
        "schedule for all arms, the miniature's budget (spec §6: each method ≤ 20 s) |",
        "| edge-popup network | bias-free layers, non-affine BatchNorm | the shared SmallCNN, "
        "biases zeroed and frozen, no BatchNorm | one network for every arm |",
        "| corruptions | CIFAR-10-C, 15-19 types × 5 severities | 8 in-project 1-D analogues, "
        "sized per signal; severities set on a pilot dense model (seed 100) to drops of about "
        "2/5/10/20/35 points; pixelate's mildest is about 9 | the miniature is 1-D (spec §6) |",
        "| sparsity | per method (Diffenderfer et al. 2021) | 90 % for every pruned arm: "
        "per layer for edge-popup (as edge-popup), global magnitude for the others | spec §6 |",
    ]
)
CLEAN_GATE = 0.8  # an arm is used when its clean accuracy ≥ 0.8 × the dense model's (issue 12)
MIN_ARMS = 3  # a rank correlation across arms needs three of them


def _cells(m: Metrics) -> tuple[list[str], list[int]]:
    names = [p for n in m if len(p := n.split("/")) == 4 and p[0] == "dense" and p[3] == "d_angle"]
    if not names:
        raise KeyError("no dense/<corruption>/<severity>/d_angle metrics")
    return sorted({p[1] for p in names}), sorted({int(p[2]) for p in names})


def _used(m: Metrics) -> list[str]:
    """The arms whose mean clean accuracy passes the gate (the dense model always does)."""
    dense = m["dense/clean/acc"].mean
    return [a for a in core.METHODS if m[f"{a}/clean/acc"].mean >= CLEAN_GATE * dense]


def _gate_numbers(m: Metrics) -> dict[str, float | Stat]:
    out: dict[str, float | Stat] = {}
    used = _used(m)
    for arm in core.METHODS:
        out[f"{arm} clean acc"] = m[f"{arm}/clean/acc"]
        out[f"{arm} used"] = float(arm in used)
    return out


def _undecidable(m: Metrics, used: list[str]) -> ClaimResult | None:
    """Fewer than ``MIN_ARMS`` arms pass the gate: a single-value test, inconclusive."""
    if len(used) >= MIN_ARMS:
        return None
    return decide(
        on_mean(f"arms passing the clean gate (need {MIN_ARMS})", [len(used)], ">=", MIN_ARMS),
        **_gate_numbers(m),
    )


def check_a(m: Metrics) -> ClaimResult:
    """(a) θ_y up and ‖h‖ down under corruption for every arm that passes the gate: sign
    tests over the corruption × severity cells (each cell's shift averaged over seeds)."""
    corr, sevs = _cells(m)
    tests = []
    for arm in _used(m):
        cells = list(itertools.product(corr, sevs))
        dth = [m[f"{arm}/{c}/{s}/d_angle"].mean for c, s in cells]
        dln = [-m[f"{arm}/{c}/{s}/d_length"].mean for c, s in cells]
        tests.append(sign_test(f"{arm}: share of cells with Δθ_y > 0", dth))
        tests.append(sign_test(f"{arm}: share of cells with Δ‖h‖ < 0", dln))
    return decide(*tests, **_gate_numbers(m))


def check_b(m: Metrics) -> ClaimResult:
    """(b) across the arms that pass the gate, Spearman(mean Δθ_y, relative robustness) ≤ −0.6,
    one correlation per seed."""
    used = _used(m)
    if (early := _undecidable(m, used)) is not None:
        return early
    n_seeds = m["dense/corrupted/d_angle"].n
    rhos = [
        float(
            spearmanr(
                [m[f"{a}/corrupted/d_angle"].values[i] for a in used],
                [m[f"{a}/corrupted/rel_acc"].values[i] for a in used],
            ).statistic
        )
        for i in range(n_seeds)
    ]
    return decide(
        on_mean("Spearman(mean Δθ_y, corrupted / clean accuracy)", rhos, "<=", -0.6),
        **_gate_numbers(m),
    )


def check_c(m: Metrics) -> ClaimResult:
    """(c) on every seed, two noise corruptions merge directly in the dendrogram of the
    Δθ-profiles (over the arms that pass the gate and the severities)."""
    corr, sevs = _cells(m)
    used = _used(m)
    merged = []
    for i in range(m["dense/corrupted/d_angle"].n):
        prof = np.array(
            [[m[f"{a}/{c}/{s}/d_angle"].values[i] for a in used for s in sevs] for c in corr]
        )
        z = linkage(prof, "average")
        n = len(corr)
        pairs = [(int(a), int(b)) for a, b, *_ in z if a < n and b < n]
        merged.append(float(any(corr[a] in NOISES and corr[b] in NOISES for a, b in pairs)))
    return decide(every("a noise-noise leaf merge (per seed)", merged, ">=", 1.0))


CLAIMS = (
    Claim(
        "a_shift_signs",
        "(a) under corruption, mean θ_y increases and mean ‖h‖ decreases for "
        "all models passing the clean-accuracy gate (sign tests over corruption × severity, "
        "issue 12)",
        "Li et al.: corruptions push features away from their class directions",
        check_a,
    ),
    Claim(
        "b_angle_predicts_robustness",
        "(b) across models passing the clean-accuracy gate, Spearman(mean Δθ_y, corrupted "
        "accuracy / clean accuracy) ≤ −0.6 (issue 12)",
        "Li et al.: robust tickets keep corrupted features closer in angle",
        check_b,
    ),
    Claim(
        "c_noise_redundancy",
        "(c) at least two noise corruptions cluster together in the "
        "Δθ-profile dendrogram (redundancy), on every seed",
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
    curves=(
        Curve(
            "acc_vs_severity",
            x="severity",
            y=core.METHODS,
            title="test accuracy vs corruption severity (0: clean; mean over corruptions, seeds)",
        ),
        Curve(
            "angle_vs_severity",
            x="severity",
            y=core.METHODS,
            title="mean angle shift Δθ_y (deg) vs corruption severity (mean over corruptions)",
        ),
    ),
)
