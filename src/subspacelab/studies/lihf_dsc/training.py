"""LIHF-DSC training (Sindičić & Kopriva, 2025, arXiv:2504.18179): the AE pre-training and the
two self-stopped stages as Lightning modules, full batch through :mod:`subspacelab.api`'s
``fit``. Only the code that trains imports this module (it loads Lightning); the maths is in
:mod:`~subspacelab.studies.lihf_dsc.core`."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn

from subspacelab.api import Batch, LossModule, TrainEnv, fit, full_batch_loader
from subspacelab.studies.lihf_dsc.core import (
    ConvAE,
    FitResult,
    Stop,
    StoppingRule,
    cluster_coefficients,
    self_expression,
    structured_norm,
)


def pretrain(
    env: TrainEnv,
    images: Tensor,
    channels: list[int],
    kernel: int,
    lr: float,
    epochs: int,
    seed: int,
) -> ConvAE:
    """A fresh AE (initialised from ``seed``) pre-trained on the full-batch reconstruction loss
    with Adam, ``epochs`` steps in one Lightning run."""
    torch.manual_seed(seed)
    model = ConvAE(channels, kernel)
    if epochs > 0:

        def loss(net: nn.Module, batch: Batch) -> Tensor:
            recon, _ = net(batch[0])
            return ((recon - batch[0]) ** 2).sum()

        module = LossModule(model, loss, lr=lr)
        fit(env, module, full_batch_loader(images, steps=epochs), epochs=1, label="lihf pretrain")
    return model


class SelfExpressionStage(L.LightningModule):
    """Stage 1 of LIHF, full batch: Adam on the AE and C together on Σ_l ‖V_l − C V_l‖² over
    the views (the input and every encoder layer for ``layers="all"``, the last encoder layer
    for ``"last"``). The :class:`StoppingRule` runs on the loss every epoch; when it first fires,
    :attr:`stop` captures the AE, C and Adam's state of C. Training then ends there, unless
    ``on_check(epoch, C)`` is given: it is called every ``check_every`` epochs (to log the ACC
    curve, which controls nothing) and training runs on to the cap.
    """

    def __init__(
        self,
        ae: ConvAE,
        coef: Tensor,
        *,
        layers: str,
        lr: float,
        rule: StoppingRule,
        on_check: Callable[[int, np.ndarray], None] | None = None,
    ) -> None:
        super().__init__()
        if layers not in ("all", "last"):
            raise ValueError(f"layers must be 'all' or 'last', got {layers!r}")
        self.ae = ae
        self.coef = nn.Parameter(coef.clone())
        self.layers, self.lr, self.rule, self.on_check = layers, lr, rule, on_check
        self.stop: Stop | None = None
        self.at_cap: Stop | None = None

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """The full-batch self-expression loss."""
        images = batch[0]
        acts = [a.flatten(1) for a in self.ae.encode(images)]  # stage 1 needs no decoder
        views = [images.flatten(1), *acts] if self.layers == "all" else [acts[-1]]
        loss = self_expression(views, self.coef)
        self.log("loss", loss.detach(), on_step=False, on_epoch=True, batch_size=1)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """The stopping rule every epoch, the logging hook every ``check_every`` epochs."""
        epoch = batch_idx + 1
        if self.on_check is not None and epoch % self.rule.check_every == 0:
            self.on_check(epoch, self.coef.detach().cpu().numpy().copy())
        fired = self.rule.update(epoch, float(outputs["loss"].detach()))
        if fired and self.stop is None:
            self.stop = self._capture(epoch)
            if self.on_check is None:
                self.trainer.should_stop = True
        elif epoch == self.trainer.num_training_batches and self.stop is None:
            self.at_cap = self._capture(epoch)

    def _capture(self, epoch: int) -> Stop:
        state = self.optimizers().optimizer.state[self.coef]  # type: ignore[union-attr]
        return Stop(
            epoch,
            {k: v.detach().clone() for k, v in self.ae.state_dict().items()},
            self.coef.detach().cpu().numpy().copy(),
            {k: v.detach().clone() for k, v in state.items()},
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam on the AE's parameters and C (the fused kernel: same update, one pass)."""
        return torch.optim.Adam([*self.ae.parameters(), self.coef], lr=self.lr, fused=True)

    def final(self) -> Stop:
        """The stop, or (the rule never fired) the state at the cap."""
        result = self.stop or self.at_cap
        if result is None:
            raise RuntimeError("stage 1 has not been trained")
        return result


class StructuredStage(L.LightningModule):
    """Stage 2 of LIHF: ``weight``·tr(Q̂ᵀ L Q̂) alone, which depends on C only, so Adam moves C
    only, starting from stage 1's Adam state of C. Q are the spectral labels of the current C,
    recomputed every ``labels_every`` epochs (the spec's cost note: every epoch is the cost
    driver; the interval is a logged parameter). The :class:`StoppingRule` ends the stage."""

    def __init__(
        self,
        start: Stop,
        *,
        weight: float,
        lr: float,
        rule: StoppingRule,
        labels_every: int,
        k: int,
        top_k: int,
        seed: int,
    ) -> None:
        super().__init__()
        self.coef = nn.Parameter(torch.from_numpy(start.coef.copy()))
        self.adam_state = start.adam_state
        self.weight, self.lr, self.rule = weight, lr, rule
        self.labels_every, self.k, self.top_k, self.seed = labels_every, k, top_k, seed
        self.labels = np.zeros(0, dtype=np.int64)
        self.stop_epoch: int | None = None

    def on_train_start(self) -> None:
        """Carry on from stage 1's Adam state of C."""
        opt = self.optimizers().optimizer  # type: ignore[union-attr]
        opt.state[self.coef] = {k: v.clone() for k, v in self.adam_state.items()}

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """The structured norm on the current labels (recomputed every ``labels_every``)."""
        if batch_idx % self.labels_every == 0:
            self.labels = cluster_coefficients(
                self.coef.detach().cpu().numpy(), self.k, self.top_k, self.seed
            )
        loss = self.weight * structured_norm(self.coef, self.labels)
        self.log("loss", loss.detach(), on_step=False, on_epoch=True, batch_size=1)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """The stopping rule."""
        if self.rule.update(batch_idx + 1, float(outputs["loss"].detach())):
            self.stop_epoch = batch_idx + 1
            self.trainer.should_stop = True

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam on C (fused, as stage 1's)."""
        return torch.optim.Adam([self.coef], lr=self.lr, fused=True)


def fit_lihf(
    env: TrainEnv,
    pretrained: ConvAE,
    images: Tensor,
    k: int,
    *,
    lr: float,
    max_epochs: int,
    stage2_weight: float,
    eps: float,
    ema: float,
    check_every: int,
    labels_every: int,
    top_k: int,
    layers: str,
    seed: int,
    stage2: bool,
    acc_of: Callable[[np.ndarray], float] | None,
) -> FitResult:
    """From a copy of the ``pretrained`` AE and C = 1e-8: stage 1 (self-expression over the
    ``layers``), then with ``stage2`` the structured stage from stage 1's stop, in the epochs
    the cap has left (``max_epochs`` for both stages together, as the script's 700). Each stage
    stops itself (:class:`StoppingRule`). With ``acc_of`` stage 1 keeps training to the cap
    only to log the ACC curve (never used for control); the returned stage-1 coefficients, and
    stage 2's start, are those at the stop."""
    n = images.shape[0]
    result = FitResult(np.zeros(0), np.zeros(0), max_epochs, 0)

    def log_acc(epoch: int, coef: np.ndarray) -> None:
        assert acc_of is not None
        result.curve_epochs.append(epoch)
        result.curve_acc.append(acc_of(cluster_coefficients(coef, k, top_k, seed)))

    stage1 = SelfExpressionStage(
        copy.deepcopy(pretrained),
        torch.full((n, n), 1e-8),
        layers=layers,
        lr=lr,
        rule=StoppingRule(eps, check_every, ema),
        on_check=None if acc_of is None else log_acc,
    )
    fit(
        env, stage1, full_batch_loader(images, steps=max_epochs), epochs=1, label=f"lihf 1 {layers}"
    )
    stop = stage1.final()
    result.stop_stage1, result.coef_stage1 = stop.epoch, stop.coef
    result.stopped = stage1.stop is not None
    result.coef_stage2 = result.coef_stage1
    left = max_epochs - stop.epoch
    if stage2 and left > 0:
        second = StructuredStage(
            stop,
            weight=stage2_weight,
            lr=lr,
            rule=StoppingRule(eps, check_every, ema),
            labels_every=labels_every,
            k=k,
            top_k=top_k,
            seed=seed,
        )
        fit(env, second, full_batch_loader(steps=left), epochs=1, label=f"lihf 2 {layers}")
        result.stopped2 = second.stop_epoch is not None
        result.stop_stage2 = second.stop_epoch or left
        result.coef_stage2 = second.coef.detach().cpu().numpy().copy()
    return result
