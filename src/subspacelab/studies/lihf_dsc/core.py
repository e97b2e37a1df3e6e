"""LIHF-DSC maths (Sindičić & Kopriva, 2025, arXiv:2504.18179): a conv autoencoder with one
self-expression matrix C shared by every layer, the subspace-structured stage-2 term, the
EMA-smoothed relative-change self-stopping rule and the DSC post-processing.

As in the authors' script (LIHFSS-SVDSC.py): stage 1 minimises the layer-wise self-expression
Σ_l ‖V_l − C V_l‖²_F alone (input and every encoder layer; no reconstruction term); stage 2
minimises 10·tr(Q̂ᵀ L Q̂) alone, which moves only C, with Adam carrying on from stage 1's state
of C; the two stages share one epoch cap (the script's 700 training epochs). Pre-training and
both stages train full batch through Lightning (:mod:`subspacelab.nets.training`); the stopping
rule ends a stage from the module (``trainer.should_stop``), using the loss only, never labels."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn

from subspacelab.clustering import postprocess_coefficients, spectral_clustering
from subspacelab.nets.training import Batch, LossModule, TrainEnv, fit, full_batch_loader


class ConvAE(nn.Module):
    """Stride-2 conv + ReLU encoder ("same" padding) and a mirrored transposed-conv decoder."""

    def __init__(self, channels: list[int], kernel: int) -> None:
        super().__init__()
        pad = kernel // 2
        self.encoder = nn.ModuleList(
            nn.Sequential(nn.Conv2d(a, b, kernel, stride=2, padding=pad), nn.ReLU())
            for a, b in itertools.pairwise(channels)
        )
        rev = channels[::-1]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(rev)):
            layers.append(nn.ConvTranspose2d(a, b, kernel, 2, pad, output_padding=1))
            if i < len(rev) - 2:
                layers.append(nn.ReLU())
        self.decoder = nn.Sequential(*layers)

    def encode(self, x: Tensor) -> list[Tensor]:
        """The encoder outputs per layer, unflattened."""
        acts = []
        h = x
        for layer in self.encoder:
            h = layer(h)
            acts.append(h)
        return acts

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """(reconstruction, flattened encoder outputs per layer)."""
        acts = self.encode(x)
        return self.decoder(acts[-1]), [a.flatten(1) for a in acts]


def self_expression(views: list[Tensor], coef: Tensor) -> Tensor:
    """Σ_l ‖V_l − C V_l‖²_F with the diagonal of C removed (no trivial self-representation);
    the views side by side, so one product C·[V_0 … V_L] serves every layer."""
    c = coef - torch.diag(torch.diag(coef))
    v = torch.cat(views, dim=1)
    return ((v - c @ v) ** 2).sum()


def structured_norm(coef: Tensor, labels: np.ndarray) -> Tensor:
    """tr(Q̂ᵀ L Q̂) for one-hot Q̂ of ``labels``, W = (|C| + |Cᵀ|)^{∘½}, L = diag(W1) − W:
    the affinity mass that crosses the current clusters, Σ_ij W_ij [q_i ≠ q_j]."""
    w = torch.sqrt(coef.abs() + coef.abs().T + 1e-12)
    q = torch.as_tensor(labels, dtype=torch.long, device=w.device)
    return (w * (q[:, None] != q[None, :])).sum()


def relative_change(prev: float, cur: float) -> float:
    """|L_t − L_{t−1}| / |L_{t−1}|."""
    return abs(cur - prev) / max(abs(prev), 1e-12)


class StoppingRule:
    """The self-stopping rule on a noisy full-batch loss: an exponential moving average
    E_t = β·E_{t−1} + (1 − β)·L_t (E_1 = L_1), and every ``check_every`` epochs the relative
    change of E since the previous check; it fires the first time that change is below ``eps``.
    """

    def __init__(self, eps: float, check_every: int, ema: float) -> None:
        if not 0 <= ema < 1 or check_every < 1:
            raise ValueError("need 0 <= ema < 1 and check_every >= 1")
        self.eps, self.check_every, self.ema = eps, check_every, ema
        self.smoothed: float | None = None
        self.previous: float | None = None

    def update(self, epoch: int, loss: float) -> bool:
        """Feed the loss of ``epoch`` (1-based); True when the rule fires at this epoch."""
        self.smoothed = (
            loss if self.smoothed is None else self.ema * self.smoothed + (1 - self.ema) * loss
        )
        if epoch % self.check_every:
            return False
        fired = (
            self.previous is not None and relative_change(self.previous, self.smoothed) < self.eps
        )
        self.previous = self.smoothed
        return fired


def cluster_coefficients(coef: np.ndarray, k: int, top_k: int, seed: int) -> np.ndarray:
    """Post-processing (top-k per row of (|C|+|Cᵀ|)/2, re-symmetrised) and spectral clustering."""
    return spectral_clustering(postprocess_coefficients(coef, top_k), k, seed)


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


@dataclass
class Stop:
    """What a stage captured when its rule fired: the epoch, the AE's state, C and Adam's state
    of C (stage 2 carries on from it, as the script's single optimiser does)."""

    epoch: int
    ae_state: dict[str, Tensor]
    coef: np.ndarray
    adam_state: dict[str, Tensor]


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


@dataclass
class FitResult:
    """Coefficients at the self-stop of each stage, stop epochs and the logged ACC curve."""

    coef_stage1: np.ndarray
    coef_stage2: np.ndarray
    stop_stage1: int
    stop_stage2: int
    stopped: bool = False  # whether the stage-1 rule fired before the cap
    stopped2: bool = False  # whether the stage-2 rule fired before the cap
    curve_epochs: list[int] = field(default_factory=list)
    curve_acc: list[float] = field(default_factory=list)


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
