"""LIHF-DSC maths (Sindičić & Kopriva, 2025, arXiv:2504.18179): a conv autoencoder with one
self-expression matrix C shared by every layer, the subspace-structured stage-2 term, the
relative-change self-stopping rule and the DSC post-processing. Pre-training and both stages
train full batch through Lightning (:mod:`subspacelab.nets.training`); the stopping rule ends
a stage from the module (``trainer.should_stop``), using the loss only, never labels."""

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

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """(reconstruction, flattened encoder outputs per layer)."""
        acts = []
        h = x
        for layer in self.encoder:
            h = layer(h)
            acts.append(h)
        return self.decoder(h), [a.flatten(1) for a in acts]


def self_expression(views: list[Tensor], coef: Tensor) -> Tensor:
    """Σ_l ‖V_l − C V_l‖²_F with the diagonal of C removed (no trivial self-representation)."""
    c = coef - torch.diag(torch.diag(coef))
    return sum(((v - c @ v) ** 2).sum() for v in views)


def structured_norm(coef: Tensor, labels: np.ndarray) -> Tensor:
    """tr(Q̂ᵀ L Q̂) for one-hot Q̂ of ``labels``, W = (|C| + |Cᵀ|)^{∘½}, L = diag(W1) − W:
    the affinity mass that crosses the current clusters."""
    w = torch.sqrt(coef.abs() + coef.abs().T + 1e-12)
    q = torch.nn.functional.one_hot(
        torch.as_tensor(labels, dtype=torch.long), int(labels.max()) + 1
    ).to(w.dtype)
    lap = torch.diag(w.sum(dim=1)) - w
    return torch.trace(q.T @ lap @ q)


def relative_change(prev: float, cur: float) -> float:
    """|L_t − L_{t−1}| / |L_{t−1}|."""
    return abs(cur - prev) / max(abs(prev), 1e-12)


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


class SelfExpressiveStage(L.LightningModule):
    """One self-expressive stage of LIHF, full batch, Adam on the AE and C together.

    Loss = ‖X̂ − X‖² + Σ_l ‖V_l − C V_l‖² over the views (input and every encoder layer for
    ``layers="all"``, the last encoder layer for ``"last"``), plus ``structured_weight`` times
    the structured norm on the spectral labels of the current C (stage 2; the labels are
    recomputed before every step). Every ``check_every`` steps the self-stopping rule compares
    the (pre-step) loss with the previous check; the first time the relative change is below
    ``eps`` the AE and C are captured (``stop_step``, ``stop_state``, ``stop_coef``). Training
    then ends there, unless ``on_check(step, C)`` is given: it is called at every check (to log
    the ACC curve, which controls nothing) and training runs on to the cap.
    """

    def __init__(
        self,
        ae: ConvAE,
        coef: Tensor,
        *,
        layers: str,
        lr: float,
        eps: float,
        check_every: int,
        k: int,
        top_k: int,
        seed: int,
        structured_weight: float = 0.0,
        on_check: Callable[[int, np.ndarray], None] | None = None,
    ) -> None:
        super().__init__()
        if layers not in ("all", "last"):
            raise ValueError(f"layers must be 'all' or 'last', got {layers!r}")
        self.ae = ae
        self.coef = nn.Parameter(coef.clone())
        self.layers, self.lr, self.eps, self.check_every = layers, lr, eps, check_every
        self.k, self.top_k, self.seed = k, top_k, seed
        self.structured_weight = structured_weight
        self.on_check = on_check
        self.stop_step: int | None = None
        self.stop_state: dict[str, Tensor] = {}
        self.stop_coef = np.zeros(0)
        self._prev: float | None = None

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """The full-batch loss of the stage."""
        images = batch[0]
        recon, acts = self.ae(images)
        views = [images.flatten(1), *acts] if self.layers == "all" else [acts[-1]]
        loss = ((recon - images) ** 2).sum() + self_expression(views, self.coef)
        if self.structured_weight > 0:
            labels = cluster_coefficients(
                self.coef.detach().cpu().numpy(), self.k, self.top_k, self.seed
            )
            loss = loss + self.structured_weight * structured_norm(self.coef, labels)
        self.log("loss", loss.detach(), on_step=False, on_epoch=True, batch_size=1)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """The self-stopping rule (and the logging hook) every ``check_every`` steps."""
        step = batch_idx + 1
        if step % self.check_every:
            return
        coef = self.coef.detach().cpu().numpy().copy()
        if self.on_check is not None:
            self.on_check(step, coef)
        cur = float(outputs["loss"].detach())
        if (
            self.stop_step is None
            and self._prev is not None
            and relative_change(self._prev, cur) < self.eps
        ):
            self.stop_step, self.stop_coef = step, coef
            self.stop_state = {k: v.detach().clone() for k, v in self.ae.state_dict().items()}
            if self.on_check is None:
                self.trainer.should_stop = True
        self._prev = cur

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam on the AE's parameters and C."""
        return torch.optim.Adam([*self.ae.parameters(), self.coef], lr=self.lr)


def run_stage(
    env: TrainEnv, stage: SelfExpressiveStage, images: Tensor, max_epochs: int, label: str
) -> tuple[int, dict[str, Tensor], np.ndarray, bool]:
    """Train ``stage`` for at most ``max_epochs`` full-batch steps; returns (stop epoch, AE
    state, C) at the self-stop, or at the cap when the rule never fired, and whether it fired."""
    stage.ae.train()
    fit(env, stage, full_batch_loader(images, steps=max_epochs), epochs=1, label=label)
    if stage.stop_step is not None:
        return stage.stop_step, stage.stop_state, stage.stop_coef, True
    state = {k: v.detach().clone() for k, v in stage.ae.state_dict().items()}
    return max_epochs, state, stage.coef.detach().cpu().numpy().copy(), False


@dataclass
class FitResult:
    """Coefficients at the self-stop of each stage, stop epochs and the logged ACC curve."""

    coef_stage1: np.ndarray
    coef_stage2: np.ndarray
    stop_stage1: int
    stop_stage2: int
    stopped: bool = False  # whether the stage-1 rule fired before max_epochs
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
    stage2_epochs: int,
    stage2_weight: float,
    eps: float,
    check_every: int,
    top_k: int,
    layers: str,
    seed: int,
    acc_of: Callable[[np.ndarray], float] | None,
) -> FitResult:
    """From a copy of the ``pretrained`` AE: stage 1 (multi-layer self-expression, all of
    ``layers="all"`` = input and every encoder layer, or ``"last"``), then stage 2 (+ the
    structured norm on the current spectral labels). Each stage stops itself when the relative
    change of its loss over ``check_every`` epochs falls below ``eps``. With ``acc_of`` stage 1
    keeps training to ``max_epochs`` only to log the ACC curve (never used for control), and the
    returned coefficients are those at the stop; without it, stage 1 ends at its stop."""
    n = images.shape[0]
    result = FitResult(np.zeros(0), np.zeros(0), max_epochs, 0)

    def log_acc(step: int, coef: np.ndarray) -> None:
        assert acc_of is not None
        result.curve_epochs.append(step)
        result.curve_acc.append(acc_of(cluster_coefficients(coef, k, top_k, seed)))

    shared = {"lr": lr, "eps": eps, "check_every": check_every, "k": k, "top_k": top_k}
    stage1 = SelfExpressiveStage(
        copy.deepcopy(pretrained),
        torch.full((n, n), 1e-8),
        layers=layers,
        seed=seed,
        on_check=None if acc_of is None else log_acc,
        **shared,
    )
    result.stop_stage1, state, result.coef_stage1, result.stopped = run_stage(
        env, stage1, images, max_epochs, f"lihf stage 1 ({layers})"
    )
    result.coef_stage2, result.stop_stage2 = result.coef_stage1, 0
    if stage2_epochs > 0:  # stage 2 resumes from the stage-1 stop
        ae = copy.deepcopy(pretrained)
        ae.load_state_dict(state)
        stage2 = SelfExpressiveStage(
            ae,
            torch.from_numpy(result.coef_stage1),
            layers=layers,
            seed=seed,
            structured_weight=stage2_weight,
            **shared,
        )
        result.stop_stage2, _, _, _ = run_stage(
            env, stage2, images, stage2_epochs, f"lihf stage 2 ({layers})"
        )
        result.coef_stage2 = stage2.coef.detach().cpu().numpy().copy()
    return result
