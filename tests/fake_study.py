"""A three-step study used to test the framework itself (registered only inside tests)."""

from __future__ import annotations

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
