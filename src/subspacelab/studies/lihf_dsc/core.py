"""LIHF-DSC maths (Sindičić & Kopriva, 2025, arXiv:2504.18179): a conv autoencoder with one
self-expression matrix C shared by every layer, the subspace-structured stage-2 term, the
EMA-smoothed relative-change self-stopping rule and the DSC post-processing.

As in the authors' script (LIHFSS-SVDSC.py): stage 1 minimises the layer-wise self-expression
Σ_l ‖V_l − C V_l‖²_F alone (input and every encoder layer; no reconstruction term); stage 2
minimises 10·tr(Q̂ᵀ L Q̂) alone, which moves only C, with Adam carrying on from stage 1's state
of C; the two stages share one epoch cap (the script's 700 training epochs). Pre-training and
both stages train full batch through Lightning, in
:mod:`~subspacelab.studies.lihf_dsc.training` (imported only by the code that trains); the
stopping rule ends a stage from the module (``trainer.should_stop``), using the loss only,
never labels."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from subspacelab.clustering import postprocess_coefficients, spectral_clustering


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


@dataclass
class Stop:
    """What a stage captured when its rule fired: the epoch, the AE's state, C and Adam's state
    of C (stage 2 carries on from it, as the script's single optimiser does)."""

    epoch: int
    ae_state: dict[str, Tensor]
    coef: np.ndarray
    adam_state: dict[str, Tensor]


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
