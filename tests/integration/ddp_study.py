"""A tiny training study for the scale-out tests: logistic regression trained by Lightning.

Registered only inside tests (SUBSPACELAB_STUDIES=tests.integration.ddp_study:LIT). Its fit step
goes through ``make_trainer`` like every real study, so ``lab.strategy``/``accelerator_devices``
turn it into a multi-process (DDP) run without touching the study.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from subspacelab.config import param
from subspacelab.io import load_tensors, save_tensors
from subspacelab.nets.training import make_trainer, state_dict_cpu
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
from subspacelab.verdicts import decide, on_mean


@dataclass
class LitData:
    n: int = param(ge=8)
    dim: int = param(ge=1)


@dataclass
class LitTrain:
    epochs: int = param(ge=1)
    batch_size: int = param(ge=1)
    lr: float = param(gt=0)


@dataclass
class LitConfig:
    seeds: list[int] = param(min_len=1)
    data: LitData = param()
    train: LitTrain = param()


class Logistic(L.LightningModule):
    """Logistic regression: one linear layer, plain SGD."""

    def __init__(self, dim: int, lr: float) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(dim, 1)
        self.lr = lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).squeeze(-1)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.binary_cross_entropy_with_logits(self(x), y)
        self.log("loss", loss, sync_dist=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def _data(n: int, dim: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=dim)
    x = rng.normal(size=(2 * n, dim)).astype(np.float32)
    y = (x @ w > 0).astype(np.float32)
    return {"x_train": x[:n], "y_train": y[:n], "x_test": x[n:], "y_test": y[n:]}


def _download(ctx: StepContext) -> StepOutput:
    for seed in ctx.seeds:
        arrays = _data(ctx.cfg.data.n, ctx.cfg.data.dim, seed)
        save_tensors(ctx.out / f"data_{seed}.safetensors", arrays, study="lit", kind="data")
    return StepOutput(metrics={"n": float(ctx.cfg.data.n)})


def _fit(ctx: StepContext) -> None:
    for seed in ctx.seeds:
        seed_all(seed)
        arrays, _ = load_tensors(ctx.inputs["download"] / f"data_{seed}.safetensors", study="lit")
        model = Logistic(arrays["x_train"].shape[1], ctx.cfg.train.lr)
        loader = DataLoader(
            TensorDataset(arrays["x_train"], arrays["y_train"]),
            batch_size=ctx.cfg.train.batch_size,
            shuffle=False,
        )
        trainer, _ = make_trainer(ctx, max_epochs=ctx.cfg.train.epochs, label=f"seed {seed}")
        trainer.fit(model, loader)
        save_tensors(
            ctx.out / f"model_{seed}.safetensors", state_dict_cpu(model), study="lit", kind="model"
        )


def _report(ctx: StepContext) -> Report:
    accuracy = []
    for seed in ctx.seeds:
        arrays, _ = load_tensors(ctx.inputs["download"] / f"data_{seed}.safetensors", study="lit")
        state, _ = load_tensors(ctx.inputs["fit"] / f"model_{seed}.safetensors", study="lit")
        logits = arrays["x_test"] @ state["linear.weight"].T.squeeze(-1) + state["linear.bias"]
        accuracy.append(float(((logits > 0).float() == arrays["y_test"]).float().mean()))
    return Report(metrics={"accuracy": accuracy})


def _learns(m: Metrics) -> ClaimResult:
    return decide(on_mean("accuracy", m["accuracy"], ">", 0.9))


LIT = Study(
    slug="lit",
    title="Logistic regression (scale-out test study)",
    arxiv="0000.00000",
    group="tests",
    config=LitConfig,
    steps=(
        Step("download", _download, reads=("data",)),
        Step("fit", _fit, needs=("download",), reads=("train",), kind="models"),
        Step("report", _report, needs=("download", "fit"), kind="report"),
    ),
    claims=(Claim("learns", "accuracy > 0.9", "n/a", _learns),),
)

LIT_PARAMS = {
    "mini": {
        "seeds": [0, 1],
        "data": {"n": 256, "dim": 4},
        "train": {"epochs": 8, "batch_size": 32, "lr": 0.5},
    }
}
LIT_PARAMS["full"] = LIT_PARAMS["mini"]
