"""The ``report_card`` comparison: geometry probes applied to the lab's trained models.

One step, ``card``: for every model of the gcr study (each task, head and seed) it rebuilds the
network with gcr's own classes and reports NC1, NC2, NC4, the effective rank of the penultimate
features, principal angles between class subspaces (of the features, and of the head for GCR
heads) and the top Hessian eigenvalues by Lanczos — one table per model, after a ``scope``
table stating which of gcr's seeds and which slice of the training data were probed (issue 12:
a single seed decides nothing, so the card has no claims).
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from subspacelab.api import ModelFileError, Report, Step, StepContext, Study
from subspacelab.data.imagenet import imagenet_split
from subspacelab.studies.gcr import core as gcr_core
from subspacelab.studies.report_card.config import ReportCardConfig
from subspacelab.studies.report_card.core import probe_classifier

SLUG = "report_card"
GCR_DOWNLOAD, GCR_FIT, GCR_FEATURES = "gcr.download", "gcr.fit", "gcr.features"
MODEL_FILE = re.compile(r"^(?P<task>[a-z0-9]+)_(?P<head>[a-z0-9]+)_s(?P<seed>\d+)$")
ARCHITECTURE_KEYS = ("head", "num_classes", "backbone", "gamma")
CNN_KEYS = ("cnn_stride", "cnn_kernel_size")


def _require(meta: dict[str, str], keys: tuple[str, ...], source: str) -> None:
    missing = [k for k in keys if k not in meta]
    if missing:
        raise ModelFileError(
            f"{source}: the model file's metadata lacks {', '.join(missing)}; it was written "
            "by an older gcr fit stage — rerun gcr's fit stage to record the architecture"
        )


def rebuild_gcr(
    state: dict[str, torch.Tensor], meta: dict[str, str], source: str = "gcr model"
) -> gcr_core.Classifier:
    """A gcr Classifier from a model file: the architecture (backbone, CNN stride and kernel,
    head, class count, gamma) from its metadata, the CNN channels from the weights' shapes.

    Raises ModelFileError naming ``source`` when the metadata lacks any of them.
    """
    _require(meta, ARCHITECTURE_KEYS, source)
    trunk: torch.nn.Module
    if meta["backbone"] == "cnn":
        _require(meta, CNN_KEYS, source)
        convs = sorted(
            (k for k in state if k.startswith("trunk.body.") and state[k].ndim == 3),
            key=lambda k: int(k.split(".")[2]),
        )
        channels = [int(state[k].shape[0]) for k in convs]
        kernel = int(meta["cnn_kernel_size"])
        trunk = gcr_core.ConvTrunk(channels, kernel, int(meta["cnn_stride"]))
        feature_dim = trunk.feature_dim
    else:
        from subspacelab.studies.gcr.full import TimmTrunk

        trunk = TimmTrunk(meta["backbone"])
        feature_dim = trunk.feature_dim
    head_spec = gcr_core.parse_head(meta["head"])
    head = gcr_core.build_head(
        head_spec, feature_dim, int(meta["num_classes"]), float(meta["gamma"])
    )
    net = gcr_core.Classifier(trunk, head)
    net.load_state_dict(state)
    return net.eval()


def _imagenet_sample(
    prepared: Path, n: int, meta: dict[str, str]
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``n`` ImageNet training images spread evenly over the (class-sorted) training folder,
    through the deterministic evaluation pipeline (resize, centre crop, normalise) gcr
    evaluates with, and the number of training images."""
    _require(meta, ("image_size", "resize_size"), "imagenet model")
    val = imagenet_split(prepared, "val", int(meta["image_size"]), int(meta["resize_size"]))
    train = type(val)(str(prepared / "train"), transform=val.transform)
    idx = np.linspace(0, len(train) - 1, n).round().astype(int)
    items = [train[int(i)] for i in idx]
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items]), len(train)


def _probe_data(
    ctx: StepContext[ReportCardConfig], meta: dict[str, str], n: int
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The first ``n`` source training examples of the model's gcr task (ImageNet: ``n`` spread
    over its training folder), and how many source training examples the task has."""
    if meta["task"] == "imagenet":
        return _imagenet_sample(ctx.inputs[GCR_DOWNLOAD] / "imagenet", n, meta)
    split = ctx.load(meta["task"], step=GCR_FEATURES, kind="split")
    y = split["source_y_train"]
    return split["source_x_train"][:n], y[:n].long(), len(y)


def _scope_table(
    cfg: ReportCardConfig, available: set[int], subsets: dict[str, tuple[int, int, list[int]]]
) -> str:
    """What the card probes: which of gcr's seeds, which slice of each task's training data,
    and why it decides no claim."""
    probed = sorted(set(cfg.seeds) & available)
    lines = ["| what | here | why |", "|---|---|---|"]
    lines.append(
        f"| models | gcr seed{'s' if len(probed) > 1 else ''} {', '.join(map(str, probed))} "
        f"of gcr's {len(available)} ({', '.join(map(str, sorted(available)))}); every task "
        "and head | the Hessian's Lanczos costs seconds of CPU per model; the card describes "
        "models and decides no claim |"
    )
    for task, (used, total, counts) in subsets.items():
        lines.append(
            f"| {task} probe data | {used} of its {total} source training examples "
            f"(per class: {', '.join(map(str, counts))}) | NC, ranks, angles and the Hessian "
            "on one fixed slice, the same for every head |"
        )
    lines.append(
        "| verdicts | none | "
        + (
            "one seed gives no interval: differences between heads here are single draws, "
            f"not effects (gcr's own claims decide those on its {len(available)} seeds) |"
            if len(probed) == 1
            else "a comparison, not a paper: no relation to decide |"
        )
    )
    return "\n".join(lines)


def _table(rows: dict[int, dict[str, float]]) -> str:
    seeds = sorted(rows)
    names = list(rows[seeds[0]])
    lines = [
        "| probe | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
        "|---|" + "---|" * (len(seeds) + 1),
    ]
    for n in names:
        vals = [rows[s][n] for s in seeds]
        lines.append(
            f"| {n} | " + " | ".join(f"{v:.4g}" for v in vals) + f" | {np.mean(vals):.4g} |"
        )
    return "\n".join(lines)


def card(ctx: StepContext[ReportCardConfig]) -> Report:
    """Probe every gcr model on a slice of its training data; one table per task and head."""
    cfg = ctx.cfg
    fit_dir: Path = ctx.inputs[GCR_FIT]
    results: dict[str, dict[int, dict[str, float]]] = {}
    available: set[int] = set()
    subsets: dict[str, tuple[int, int, list[int]]] = {}
    for path in sorted(fit_dir.glob("*.safetensors")):
        match = MODEL_FILE.match(path.stem)
        if match is not None:
            available.add(int(match["seed"]))
        if match is None or int(match["seed"]) not in cfg.seeds:
            continue
        state, meta = ctx.load_meta(path.stem, step=GCR_FIT, kind="model")
        _require(meta, ("task",), str(path))
        net = rebuild_gcr(state, meta, str(path)).to(ctx.device)
        x, y, total = _probe_data(ctx, meta, cfg.probe.n_samples)
        counts = torch.bincount(y, minlength=int(meta["num_classes"])).tolist()
        subsets[match["task"]] = (len(y), total, counts)
        x, y = x.to(ctx.device), y.to(ctx.device)
        bases = net.head.bases() if isinstance(net.head, gcr_core.GrassmannHead) else None
        row = probe_classifier(
            net.trunk,
            net.head,
            x,
            y,
            int(meta["num_classes"]),
            class_rank=cfg.probe.class_rank,
            top_k=cfg.probe.top_k,
            head_bases=bases,
        )
        model = f"gcr/{match['task']}/{match['head']}"
        results.setdefault(model, {})[int(match["seed"])] = row
        ctx.progress(f"{path.stem}: NC1={row['nc1']:.3g} λ1={row['hessian_l1']:.3g}")
    if not results:
        raise FileNotFoundError(
            f"{fit_dir}: no gcr model files of seeds {cfg.seeds}; run the gcr fit stage first"
        )
    metrics = {
        f"{model}/{name}": [rows[s][name] for s in sorted(rows)]
        for model, rows in results.items()
        for name in next(iter(rows.values()))
    }
    tables = {"scope": _scope_table(cfg, available, subsets)}
    tables.update({model: _table(rows) for model, rows in results.items()})
    return Report(metrics=metrics, tables=tables, figures={"card": _figure(results)})


def _figure(results: dict[str, dict[int, dict[str, float]]]) -> Figure:
    """NC1, effective rank and λ₁ per model (mean over its seeds)."""
    names = sorted(results)
    probes = ("nc1", "effective_rank", "hessian_l1")
    fig, axes = plt.subplots(1, len(probes), figsize=(4 * len(probes), 3.5))
    for ax, probe in zip(axes, probes, strict=True):
        vals = [np.mean([row[probe] for row in results[n].values()]) for n in names]
        ax.bar(range(len(names)), vals)
        ax.set_xticks(
            range(len(names)), [n.removeprefix("gcr/") for n in names], rotation=60, fontsize=7
        )
        ax.set(title=probe, yscale="log" if probe == "nc1" else "linear")
    fig.tight_layout()
    return fig


STUDY = Study(
    slug=SLUG,
    title="Geometry report card of the lab's trained models",
    arxiv="1706.04454",
    group="geometry of trained networks",
    config=ReportCardConfig,
    steps=(
        Step(
            "card",
            card,
            reads=("probe",),
            kind="report",
            uses=(GCR_DOWNLOAD, GCR_FIT, GCR_FEATURES),
            description="NC1-4, effective rank, class-subspace angles, top Hessian eigenvalues",
        ),
    ),
    claims=(),
    kind="comparison",
)
