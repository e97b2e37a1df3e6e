"""FLoRA study: pretrain -> fit -> evaluate (arXiv:2405.14739).

* pretrain — per seed: digits upsampled, a CNN pretrained on ``pretrain_classes`` with random
  shifts; the downstream tasks' few-shot train/test splits.
* fit — per seed and task: linear probe, full FT, and LoRA / FLoRA on every conv at each
  parameter budget (rank chosen so the exact trainable count is closest to the budget). The
  linear probes train on features computed once; every other arm of every task of a seed trains
  in one Lightning run (``adapters.training.train_joint``: each arm on its task's seeded batches
  with its own learning rate, as alone), evaluated together as one stacked model
  (``core.stacked_losses``: one grouped conv per layer over all arms).
* evaluate — accuracies over tasks and seeds, exact parameter counts, claims, table.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from subspacelab.adapters import trainable_count
from subspacelab.adapters.training import Member, accuracy, predict, train_joint, train_loop
from subspacelab.data.embedded import digits
from subspacelab.io import load_tensors, read_json, save_tensors, write_json
from subspacelab.merging.plots import bar_figure
from subspacelab.registry import (
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
)
from subspacelab.runner import seed_all
from subspacelab.studies.flora import core, full
from subspacelab.studies.flora.config import FloraConfig

SLUG = "flora"
APPROX = 0.01  # "≈ full FT": within 1 pt


def _pretrain(ctx: StepContext) -> StepOutput:
    if ctx.profile == "full":
        return full.pretrain_step(ctx)
    cfg: FloraConfig = ctx.cfg
    d, m, t = cfg.data, cfg.model, cfg.train
    for seed in ctx.seeds:
        seed_all(seed)
        split = digits(test_size=0.5, seed=seed)
        x_pre, y_pre = core.upsample(split.x_train, d.size), torch.as_tensor(split.y_train)
        keep = torch.isin(y_pre, torch.tensor(d.pretrain_classes))
        net = core.SmallCNN(m.channels, m.strides, 10)
        train_loop(
            ctx,
            net,
            _loss(net),
            x_pre[keep],
            y_pre[keep],
            epochs=t.pretrain_epochs,
            batch_size=t.batch_size,
            lr=t.lr,
            seed=seed,
            augment=core.random_shift(d.max_shift),
        )
        x_all, y_all = core.upsample(split.x_test, d.size), torch.as_tensor(split.y_test)
        order = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(seed))
        tensors = {f"net.{k}": v for k, v in net.state_dict().items()}
        for i, name in enumerate(d.tasks):
            x, y = core.make_task(name, x_all[order], y_all[order], seed * 100 + i)
            tensors[f"{name}.x_train"], tensors[f"{name}.y_train"] = x[: d.n_train], y[: d.n_train]
            tensors[f"{name}.x_test"] = x[d.n_train : d.n_train + d.n_test]
            tensors[f"{name}.y_test"] = y[d.n_train : d.n_train + d.n_test]
        save_tensors(ctx.out / f"seed{seed}.safetensors", tensors, study=SLUG, kind="pretrain")
        ctx.progress(f"seed {seed}: pretrained")
    return StepOutput()


def _fit(ctx: StepContext) -> StepOutput:
    if ctx.profile == "full":
        return full.fit_step(ctx)
    cfg: FloraConfig = ctx.cfg
    d, m, t = cfg.data, cfg.model, cfg.train
    results: dict[str, dict[str, dict[str, float]]] = {}
    for seed in ctx.seeds:
        tensors, _ = load_tensors(
            ctx.inputs["pretrain"] / f"seed{seed}.safetensors", study=SLUG, kind="pretrain"
        )
        base = core.SmallCNN(m.channels, m.strides, 10)
        base.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        total = core.conv_param_count(base)
        arms: list[tuple[str, str, int]] = [("linear_probe", "probe", 0), ("full_ft", "full", 0)]
        for b in m.budgets:
            r_f, _, r_l, _ = core.match_budget(core.convs(base), round(b * total), m.spatial_rank)
            arms += [(f"flora_{b:g}", "flora", r_f), (f"lora_{b:g}", "lora", r_l)]
        runs: list[tuple[str, str, str, int, core.SmallCNN]] = []  # task, arm, kind, rank, net
        probes: list[Member] = []
        members: list[Member] = []
        for i, name in enumerate(d.tasks):
            seed_all(seed * 100 + i)
            for arm, kind, rank in arms:
                net = copy.deepcopy(base)
                net.head.reset_parameters()
                if kind == "probe":
                    net.features.requires_grad_(False)
                elif kind != "full":
                    core.adapt(net, kind, rank, m.spatial_rank, m.scale)
                lr = t.lr if kind in ("full", "probe") else t.peft_lr
                x, y = tensors[f"{name}.x_train"], tensors[f"{name}.y_train"]
                if kind == "probe":  # frozen features: train the head on them, computed once
                    head = net.head
                    probes.append(
                        Member(head, _loss(head), predict(net.embed, x), y, lr, seed * 100 + i)
                    )
                else:
                    members.append(Member(net, _loss(net), x, y, lr, seed * 100 + i))
                runs.append((name, arm, kind, rank, net))
        train_joint(
            ctx, probes, epochs=t.epochs, batch_size=t.batch_size, label=f"seed {seed} probes"
        )
        nets = [mb.model for mb in members]
        train_joint(
            ctx,
            members,
            epochs=t.epochs,
            batch_size=t.batch_size,
            label=f"seed {seed} fine-tunes",
            batched=partial(core.stacked_losses, nets),
        )
        for name, arm, _, rank, net in runs:
            xt, yt = tensors[f"{name}.x_test"], tensors[f"{name}.y_test"]
            head = net.head.weight.numel() + net.head.bias.numel()
            results.setdefault(f"{seed}/{name}", {})[arm] = {
                "acc": accuracy(predict(net, xt), yt),
                "params": float(trainable_count(net) - head),
                "budget_frac": (trainable_count(net) - head) / total,
                "rank": float(rank),
            }
        for name in d.tasks:
            row = results[f"{seed}/{name}"]
            ctx.progress(
                f"seed {seed} {name}: " + " ".join(f"{a} {r['acc']:.3f}" for a, r in row.items())
            )
    write_json(ctx.out / "results.json", results)
    return StepOutput(metrics={"runs": float(len(results))})


def _loss(net: torch.nn.Module) -> Callable[[Tensor, Tensor], Tensor]:
    def loss(a: Tensor, b: Tensor) -> Tensor:
        return F.cross_entropy(net(a), b)

    return loss


def _evaluate(ctx: StepContext) -> Report:
    results = read_json(ctx.inputs["fit"] / "results.json")
    metrics: dict[str, list[float]] = {}
    for seed in ctx.seeds:
        rows = [r for k, r in results.items() if int(k.split("/")[0]) == seed]
        for arm in rows[0]:
            for field in ("acc", "params", "budget_frac"):
                metrics.setdefault(f"{arm}_{field}", []).append(
                    float(np.mean([r[arm][field] for r in rows]))
                )
    arms = sorted({k.rsplit("_", 1)[0] for k in metrics if k.endswith("_acc")})
    table = [
        "| arm | accuracy | trainable conv params | fraction of conv params |",
        "|---|---|---|---|",
    ]
    for arm in arms:
        table.append(
            f"| {arm} | {Stat(tuple(metrics[f'{arm}_acc'])).fmt()} | "
            f"{np.mean(metrics[f'{arm}_params']):.0f} | "
            f"{np.mean(metrics[f'{arm}_budget_frac']):.4f} |"
        )
    fig = bar_figure(
        "flora: accuracy over tasks", "accuracy", {a: metrics[f"{a}_acc"] for a in arms}
    )
    budgets = [a.removeprefix("flora_") for a in arms if a.startswith("flora_")]
    return Report(
        metrics=metrics,
        tables={"flora_accuracy": "\n".join(table)},
        figures={"accuracy": fig},
        curves={
            "accuracy_vs_budget": [
                {"budget": float(b)}
                | {m: float(np.mean(metrics[f"{m}_{b}_acc"])) for m in ("flora", "lora")}
                for b in sorted(budgets, key=float)
            ]
        },
    )


def _budgets(m: Metrics) -> list[str]:
    return sorted(
        k[len("flora_") : -len("_acc")] for k in m if k.startswith("flora_") and k.endswith("_acc")
    )


def _check_a(m: Metrics) -> ClaimResult:
    measured: dict[str, float] = {}
    holds = True
    for b in _budgets(m):
        gap = m[f"flora_{b}_acc"].mean - m[f"lora_{b}_acc"].mean
        measured[f"gap_{b}"] = gap
        holds = holds and gap >= 0.005
    return ClaimResult(holds and bool(measured), measured)


def _check_b(m: Metrics) -> ClaimResult:
    probe, full = m["linear_probe_acc"].mean, m["full_ft_acc"].mean
    peft = {f"{k}_{b}": m[f"{k}_{b}_acc"].mean for b in _budgets(m) for k in ("flora", "lora")}
    holds = all(probe < v <= full + APPROX for v in peft.values())
    return ClaimResult(holds, {"linear_probe": probe, "full_ft": full, **peft})


CLAIMS = (
    Claim(
        "flora_ge_lora",
        "acc(FLoRA) ≥ acc(LoRA) at each of the two budgets, with a mean gap ≥ +0.5 pt",
        "FLoRA above LoRA on VTAB-1k at a matched parameter budget (ConvNeXt-V2-B)",
        _check_a,
    ),
    Claim(
        "probe_lt_peft_le_full",
        "linear probe < both PEFT arms < or ≈ full FT (≈: within 1 pt)",
        "PEFT between linear probing and full fine-tuning",
        _check_b,
    ),
)

STUDY = Study(
    slug=SLUG,
    title="FLoRA: Low-Rank Core Space for N-dimension",
    arxiv="2405.14739",
    group="merging",
    config=FloraConfig,
    steps=(
        Step("pretrain", _pretrain, reads=("data", "model", "train"), kind="models"),
        Step("fit", _fit, needs=("pretrain",), reads=("data", "model", "train"), kind="data"),
        Step("evaluate", _evaluate, needs=("fit",), kind="report"),
    ),
    claims=CLAIMS,
    curves=(
        Curve(
            "accuracy_vs_budget",
            x="budget",
            y=("flora", "lora"),
            title="accuracy vs conv-parameter budget (FLoRA, LoRA)",
        ),
    ),
)
