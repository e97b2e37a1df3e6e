"""Task zoo study: data -> zoo -> report (the merge-bench of dc_merge.md §6).

* data — per seed, sklearn digits split into train/val/test, plus the fixed pixel permutation.
* zoo — per seed: the MLP backbone pretrained on the identity task with its head (H2, the
  shared frozen head), a frozen linear probe per task on base features (H1), and one fine-tuned
  backbone per head variant × regime (full FT, LoRA merged into the weights) × task. The probes
  train in one Lightning run and the fine-tunes in another (``nets.joint.train_joint``: each
  model on its own seeded batches, exactly as alone, at one Lightning step per batch).
* report — a comparison table of zero-shot and individual (fine-tuned) accuracy per task;
  metrics ``<head>/zero_shot``, ``<head>/<regime>/individual`` and ``<head>/<regime>/<task>``.

The full profile (CLIP ViT-B/32 on 8 vision tasks) is :mod:`~subspacelab.studies.task_zoo.full`.

dc_merge and concrete_merge read ``task_zoo.data`` and ``task_zoo.zoo`` through ``uses=``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from subspacelab.adapters import LoRA, wrap_layers
from subspacelab.api import (
    Curve,
    Report,
    SeedMetrics,
    Stat,
    Step,
    StepContext,
    StepOutput,
    Study,
    read_json,
    write_json,
)
from subspacelab.data.embedded import digits
from subspacelab.merging.algebra import apply_task_vector, sub
from subspacelab.merging.bench import (
    SPLITS,
    ZOO_SLUG,
    MLPBackbone,
    Zoo,
    apply_transform,
    load_zoo,
    pixel_permutation,
    task_accuracies,
)
from subspacelab.merging.plots import bar_figure
from subspacelab.studies.task_zoo import full
from subspacelab.studies.task_zoo.config import TaskZooConfig

SLUG = ZOO_SLUG
# the path from the base to each fine-tuned model, base + α (fine-tuned − base): α = 0 and 1 are
# the zero-shot and individual accuracies; the interior points are one extra evaluation each
PATH_ALPHAS = (0.0, 0.5, 1.0)
PATH_SERIES = tuple(f"{h}_{r}" for h in ("h1", "h2") for r in ("fft", "lora"))


def _data(ctx: StepContext[TaskZooConfig]) -> StepOutput:
    d = ctx.cfg.data
    pool = digits(test_size=0.5, seed=0)
    x = np.concatenate([pool.x_train, pool.x_test])
    y = np.concatenate([pool.y_train, pool.y_test])
    perm = pixel_permutation(d.perm_seed)
    bounds = np.cumsum([0, d.n_train, d.n_val, d.n_test])
    for seed in ctx.seeds:
        order = np.random.default_rng(seed).permutation(len(x))
        tensors: dict[str, np.ndarray] = {"perm": perm}
        for i, split in enumerate(SPLITS):
            idx = order[bounds[i] : bounds[i + 1]]
            tensors[f"x_{split}"], tensors[f"y_{split}"] = x[idx], y[idx]
        ctx.save(f"seed{seed}", tensors, kind="digits")
    return StepOutput(metrics={"n_train": float(d.n_train)})


def _ce(model: nn.Module) -> Callable[[Tensor, Tensor], Tensor]:
    def loss(xb: Tensor, yb: Tensor) -> Tensor:
        return F.cross_entropy(model(xb), yb)

    return loss


def _task_model(base: nn.Module, head: nn.Linear, regime: str, cfg: TaskZooConfig) -> nn.Module:
    """A copy of ``base`` (trainable for full FT, frozen under LoRA adapters) before the frozen
    ``head``."""
    backbone = copy.deepcopy(base)
    backbone.requires_grad_(regime == "fft")
    if regime == "lora":
        wrap_layers(backbone, lambda layer: LoRA(layer, cfg.model.lora_rank, cfg.model.lora_scale))
    return nn.Sequential(backbone, head)


def _backbone_weights(model: nn.Module) -> dict[str, Tensor]:
    """The fine-tuned backbone's weights, LoRA updates merged in."""
    backbone = model[0]
    out = {}
    for name, module in backbone.named_children():
        if isinstance(module, LoRA):
            out[f"{name}.weight"] = (module.base.weight + module.delta()).detach().clone()
            out[f"{name}.bias"] = module.base.bias.detach().clone()
        elif isinstance(module, nn.Linear):
            out[f"{name}.weight"] = module.weight.detach().clone()
            out[f"{name}.bias"] = module.bias.detach().clone()
    return out


def _zoo(ctx: StepContext[TaskZooConfig]) -> StepOutput:
    """Per seed: pretraining (one run), the 8 probes (one joint run) and every fine-tune of
    head × regime × task (one joint run; each model on its own task's seeded batches)."""
    from subspacelab.api import Member, train_joint, train_one

    cfg = ctx.cfg
    t = cfg.train
    tasks = cfg.data.tasks
    for seed in ctx.seeded():
        raw = ctx.load(f"seed{seed}", step="data", kind="digits")
        xs = {
            s: [apply_transform(n, raw[f"x_{s}"], raw["perm"].numpy()) for n in tasks]
            for s in SPLITS
        }
        y = raw["y_train"]
        base = MLPBackbone(xs["train"][0].shape[1], cfg.model.hidden)
        shared = nn.Linear(cfg.model.hidden[-1], 10)
        pre = nn.Sequential(base, shared)
        ident = xs["train"][tasks.index("identity")] if "identity" in tasks else raw["x_train"]
        train_one(
            ctx,
            Member(pre, _ce(pre), t.lr, data=(ident, y), seed=seed),
            epochs=t.pretrain_epochs,
            batch_size=t.batch_size,
            label=f"seed {seed} pretrain",
        )
        pre.requires_grad_(False)
        tensors = {f"base.{k}": v.clone() for k, v in base.state_dict().items()}
        tensors.update({f"head.h2.{k}": v.clone() for k, v in shared.state_dict().items()})
        with torch.no_grad():
            feats = [base(x) for x in xs["train"]]
        probes = [nn.Linear(cfg.model.hidden[-1], 10) for _ in tasks]
        train_joint(
            ctx,
            [
                Member(p, _ce(p), t.probe_lr, data=(f, y), seed=seed + i)
                for i, (p, f) in enumerate(zip(probes, feats, strict=True))
            ],
            epochs=t.probe_epochs,
            batch_size=t.batch_size,
            label=f"seed {seed} probes",
        )
        for name, probe in zip(tasks, probes, strict=True):
            probe.requires_grad_(False)
            tensors.update(
                {f"head.h1.{name}.{k}": v.clone() for k, v in probe.state_dict().items()}
            )
        heads: dict[str, list[nn.Linear]] = {"h2": [shared] * len(tasks), "h1": probes}
        runs = [(h, r, i) for h in t.heads for r in t.regimes for i in range(len(tasks))]
        models = [_task_model(base, heads[h][i], r, cfg) for h, r, i in runs]
        train_joint(
            ctx,
            [
                Member(
                    model,
                    _ce(model),
                    t.lora_lr if r == "lora" else t.lr,
                    data=(xs["train"][i], y),
                    seed=seed + i,
                )
                for model, (h, r, i) in zip(models, runs, strict=True)
            ],
            epochs=t.finetune_epochs,
            batch_size=t.batch_size,
            label=f"seed {seed} fine-tunes",
        )
        for model, (h, r, i) in zip(models, runs, strict=True):
            ft = _backbone_weights(model)
            tensors.update({f"ft.{h}.{r}.{tasks[i]}.{k}": v for k, v in ft.items()})
        ctx.progress(f"seed {seed}: fine-tuned {len(runs)} task models")
        ctx.save(f"seed{seed}", tensors, kind="zoo")
    write_json(
        ctx.out / "index.json",
        {
            "tasks": tasks,
            "heads": t.heads,
            "regimes": t.regimes,
            "hidden": cfg.model.hidden,
            "lora_rank": cfg.model.lora_rank,
        },
    )
    return StepOutput(metrics={"models": float(len(tasks) * len(t.heads) * len(t.regimes))})


def _report(ctx: StepContext[TaskZooConfig]) -> Report:
    index = read_json(ctx.inputs["zoo"] / "index.json")
    per_seed = SeedMetrics()
    path: dict[str, dict[float, list[float]]] = {}
    for seed in ctx.seeds:
        zoo = load_zoo(ctx.inputs["data"], ctx.inputs["zoo"], seed)
        net = zoo.backbone()
        row: dict[str, float] = {}
        for h in index["heads"]:
            zs = task_accuracies(net, zoo.base, zoo.heads[h], zoo.x["test"], zoo.y["test"])
            row[f"{h}/zero_shot"] = float(np.mean(zs))
            for r in index["regimes"]:
                ind = [
                    task_accuracies(net, ft, [hd], [x], [y])[0]
                    for ft, hd, x, y in zip(
                        zoo.finetuned[(h, r)],
                        zoo.heads[h],
                        zoo.x["test"],
                        zoo.y["test"],
                        strict=True,
                    )
                ]
                row[f"{h}/{r}/individual"] = float(np.mean(ind))
                for name, a in zip(zoo.tasks, ind, strict=True):
                    row[f"{h}/{r}/{name}"] = a
                for alpha in PATH_ALPHAS:
                    if alpha in (0.0, 1.0):
                        acc = float(np.mean(zs if alpha == 0.0 else ind))
                    else:
                        acc = float(np.mean(_along_path(net, zoo, h, r, alpha)))
                    path.setdefault(f"{h}_{r}", {}).setdefault(alpha, []).append(acc)
        per_seed.record(row)
    metrics = per_seed.as_dict()
    rows = ["| head | regime | zero-shot | individual (fine-tuned) |", "|---|---|---|---|"]
    for h in index["heads"]:
        zs = Stat(tuple(metrics[f"{h}/zero_shot"])).fmt()
        for r in index["regimes"]:
            rows.append(
                f"| {h} | {r} | {zs} | {Stat(tuple(metrics[f'{h}/{r}/individual'])).fmt()} |"
            )
    series = {k: v for k, v in metrics.items() if k.endswith(("/zero_shot", "/individual"))}
    fig = bar_figure("task zoo: mean test accuracy over tasks", "accuracy", series)
    return Report(
        metrics=metrics,
        tables={"task_zoo_accuracy": "\n".join(rows)},
        figures={"accuracy": fig},
        curves={"accuracy_along_task_vector": path_curve(path)},
    )


def _along_path(net: nn.Module, zoo: Zoo, head: str, regime: str, alpha: float) -> list[float]:
    """Each task's test accuracy at base + α (fine-tuned − base), with the task's own head."""
    out = []
    for ft, hd, x, y in zip(
        zoo.finetuned[(head, regime)], zoo.heads[head], zoo.x["test"], zoo.y["test"], strict=True
    ):
        params = apply_task_vector(zoo.base, sub(ft, zoo.base), alpha)
        out += task_accuracies(net, params, [hd], [x], [y])
    return out


def path_curve(path: dict[str, dict[float, list[float]]]) -> list[dict[str, float]]:
    """Rows of mean test accuracy (over tasks, then seeds) along the task vector, one column per
    head × regime (``h1_fft`` ...; empty where the zoo has no such models), one row per α."""
    unknown = sorted(set(path) - set(PATH_SERIES))
    if unknown:
        raise ValueError(f"task_zoo: unknown path series {unknown}; allowed: {PATH_SERIES}")
    return [
        {"alpha": alpha}
        | {s: float(np.mean(path[s][alpha])) if s in path else float("nan") for s in PATH_SERIES}
        for alpha in PATH_ALPHAS
    ]


STUDY = Study(
    slug=SLUG,
    title="Task zoo: the merge-bench shared by dc_merge and concrete_merge",
    arxiv="2603.06242",
    group="merging",
    config=TaskZooConfig,
    kind="comparison",
    steps=(
        Step(
            "data",
            _data,
            reads=("data",),
            kind="data",
            description="digits splits per seed",
            full=full.data_step,
        ),
        Step(
            "zoo",
            _zoo,
            full=full.zoo_step,
            needs=("data",),
            reads=("data", "model", "train"),
            kind="models",
            description="base, heads and fine-tuned task models",
        ),
        Step("report", _report, needs=("data", "zoo"), kind="report"),
    ),
    curves=(
        Curve(
            "accuracy_along_task_vector",
            x="alpha",
            y=PATH_SERIES,
            title="mean test accuracy at base + α (fine-tuned − base), per head × regime",
        ),
    ),
    claims=(),
)
