"""A three-step study used to test the framework itself (registered only inside tests)."""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from subspacelab.config import param
from subspacelab.io import load_tensors, save_tensors
from subspacelab.registry import (
    Claim,
    ClaimResult,
    Curve,
    Metrics,
    Report,
    Step,
    StepContext,
    StepOutput,
    Study,
)
from subspacelab.verdicts import decide, on_mean


@dataclass
class FakeData:
    n: int = param(ge=1)
    scale: float = param(gt=0)


@dataclass
class FakeFit:
    ridge: float = param(ge=0)


@dataclass
class FakeConfig:
    seeds: list[int] = param(min_len=1)
    data: FakeData = param()
    fit: FakeFit = param()


def _download(ctx: StepContext) -> StepOutput:
    for seed in ctx.seeds:
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(ctx.cfg.data.n, 3)) * ctx.cfg.data.scale
        save_tensors(ctx.out / f"x_{seed}.safetensors", {"x": x}, study="fake", kind="data")
        if os.environ.get("FAKE_HANG"):
            (ctx.out / "partial.txt").write_text("half")
            time.sleep(120)
    return StepOutput(metrics={"n": float(ctx.cfg.data.n)})


def _fit(ctx: StepContext) -> None:
    for seed in ctx.seeds:
        x, _ = load_tensors(ctx.inputs["download"] / f"x_{seed}.safetensors", study="fake")
        cov = x["x"].T @ x["x"] / x["x"].shape[0] + ctx.cfg.fit.ridge * torch.eye(
            3, dtype=x["x"].dtype
        )
        save_tensors(ctx.out / f"cov_{seed}.safetensors", {"cov": cov}, study="fake", kind="model")


def _report(ctx: StepContext) -> Report:
    traces = []
    for seed in ctx.seeds:
        cov, _ = load_tensors(ctx.inputs["fit"] / f"cov_{seed}.safetensors", study="fake")
        traces.append(float(torch.trace(cov["cov"])))
    return Report(metrics={"trace": traces})


def _trace_positive(m: Metrics) -> ClaimResult:
    return decide(on_mean("trace", m["trace"], ">", 0.0))


FAKE = Study(
    slug="fake",
    title="A fake study",
    arxiv="0000.00000",
    group="tests",
    config=FakeConfig,
    steps=(
        Step("download", _download, reads=("data",)),
        Step("fit", _fit, needs=("download",), reads=("fit",), kind="models"),
        Step("report", _report, needs=("fit",), kind="report"),
    ),
    claims=(Claim("a", "trace > 0", "n/a", _trace_positive),),
)

FAKE_PARAMS = {"mini": {"seeds": [0, 1], "data": {"n": 50, "scale": 2.0}, "fit": {"ridge": 0.1}}}
FAKE_PARAMS["full"] = FAKE_PARAMS["mini"]
FAKE2 = Study(**{**FAKE.__dict__, "slug": "fake2"})


# ------------------------------------------------------------------------------------------
# A study that trains (Lightning, through subspacelab.nets.training): one small classifier per
# hidden width and seed, for the tracking tests (child runs, curves, datasets, logged models).


@dataclass
class TrainData:
    n: int = param(ge=8)


@dataclass
class TrainFit:
    widths: list[int] = param(min_len=1, ge=1)
    epochs: int = param(ge=1)
    lr: float = param(gt=0)


@dataclass
class TrainConfig:
    seeds: list[int] = param(min_len=1)
    data: TrainData = param()
    fit: TrainFit = param()


def _train_download(ctx: StepContext) -> StepOutput:
    for seed in ctx.seeds:
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(ctx.cfg.data.n, 4, generator=gen)
        y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
        save_tensors(
            ctx.out / f"xy_{seed}.safetensors", {"x": x, "y": y}, study="train", kind="data"
        )
    return StepOutput()


def _xy(ctx: StepContext, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    xy, _ = load_tensors(ctx.inputs["download"] / f"xy_{seed}.safetensors", study="train")
    return xy["x"], xy["y"]


def _net(width: int) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(4, width), torch.nn.Tanh(), torch.nn.Linear(width, 2)
    )


def _ce(net: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(net(batch[0]), batch[1])


def _train_fit(ctx: StepContext) -> StepOutput:
    from subspacelab.nets.training import LossModule, fit, state_dict_cpu, tensor_loader
    from subspacelab.runner import seed_all

    for seed in ctx.seeds:
        x, y = _xy(ctx, seed)
        for width in ctx.cfg.fit.widths:
            seed_all(seed)
            net = _net(width)
            name = f"w{width}_s{seed}"
            fit(
                ctx,
                LossModule(net, _ce, lr=ctx.cfg.fit.lr),
                tensor_loader(x, y, batch_size=16, seed=seed),
                epochs=ctx.cfg.fit.epochs,
                label=name,
                params={"width": width, "seed": seed},
            )
            save_tensors(
                ctx.out / f"{name}.safetensors", state_dict_cpu(net), study="train", kind="model"
            )
    return StepOutput()


def _train_report(ctx: StepContext) -> Report:
    metrics: dict[str, list[float]] = {}
    for seed in ctx.seeds:
        x, y = _xy(ctx, seed)
        for width in ctx.cfg.fit.widths:
            state, _ = load_tensors(
                ctx.inputs["fit"] / f"w{width}_s{seed}.safetensors", study="train", kind="model"
            )
            net = _net(width)
            net.load_state_dict(state)
            with torch.no_grad():
                acc = float((net(x).argmax(1) == y).float().mean())
            metrics.setdefault(f"acc/w{width}", []).append(acc)
    rows = [{"width": w, "acc": float(np.mean(metrics[f"acc/w{w}"]))} for w in ctx.cfg.fit.widths]
    return Report(metrics=metrics, curves={"acc_vs_width": rows})


def _above_chance(m: Metrics) -> ClaimResult:
    best = max((m[k] for k in m), key=lambda s: s.mean)
    return decide(on_mean("best accuracy", best, ">", 0.5))


TRAIN = Study(
    slug="train",
    title="A fake study that trains",
    arxiv="0000.00002",
    group="tests",
    config=TrainConfig,
    steps=(
        Step("download", _train_download, reads=("data",)),
        Step("fit", _train_fit, needs=("download",), reads=("fit",), kind="models"),
        Step("report", _train_report, needs=("download", "fit"), reads=("fit",), kind="report"),
    ),
    claims=(Claim("above_chance", "best accuracy > 0.5", "n/a", _above_chance),),
    curves=(Curve("acc_vs_width", x="width", y="acc", title="accuracy vs hidden width"),),
)
TRAIN_PARAMS = {
    "mini": {"seeds": [0, 1], "data": {"n": 64}, "fit": {"widths": [2, 8], "epochs": 3, "lr": 0.05}}
}
TRAIN_PARAMS["full"] = copy.deepcopy(TRAIN_PARAMS["mini"])  # no YAML alias: `dvc exp -S` edits
