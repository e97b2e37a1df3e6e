"""LIHF-DSC maths (Sindičić & Kopriva, 2025, arXiv:2504.18179): a conv autoencoder with one
self-expression matrix C shared by every layer, the subspace-structured stage-2 term, the
relative-change self-stopping rule and the DSC post-processing. Plain full-batch torch loops
(hundreds of epochs on one 600-image batch)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
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
    images: Tensor,
    k: int,
    *,
    channels: list[int],
    kernel: int,
    lr: float,
    pretrain_epochs: int,
    max_epochs: int,
    stage2_epochs: int,
    stage2_weight: float,
    eps: float,
    check_every: int,
    top_k: int,
    layers: str,
    seed: int,
    acc_of: Callable[[np.ndarray], float],
) -> FitResult:
    """Pre-train the AE (reconstruction), then stage 1 (multi-layer self-expression, all of
    ``layers="all"`` = input and every encoder layer, or ``"last"``), then stage 2 (+ the
    structured norm on the current spectral labels). Each stage stops itself when the relative
    change of its loss over ``check_every`` epochs falls below ``eps``; stage 1 keeps training
    to ``max_epochs`` only to log the ACC curve (``acc_of``, never used for control), and the
    returned coefficients are those at the stop."""
    torch.manual_seed(seed)
    n = images.shape[0]
    model = ConvAE(channels, kernel)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(pretrain_epochs):
        recon, _ = model(images)
        loss = ((recon - images) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    coef = nn.Parameter(torch.full((n, n), 1e-8))
    opt = torch.optim.Adam([*model.parameters(), coef], lr=lr)

    def loss_fn() -> Tensor:
        recon, acts = model(images)
        views = [images.flatten(1), *acts] if layers == "all" else [acts[-1]]
        return ((recon - images) ** 2).sum() + self_expression(views, coef)

    result = FitResult(np.zeros(0), np.zeros(0), max_epochs, 0)
    prev = None
    stopped = False
    for epoch in range(1, max_epochs + 1):
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if epoch % check_every == 0:
            c_now = coef.detach().numpy().copy()
            result.curve_epochs.append(epoch)
            result.curve_acc.append(acc_of(cluster_coefficients(c_now, k, top_k, seed)))
            cur = float(loss.detach())
            if not stopped and prev is not None and relative_change(prev, cur) < eps:
                stopped = result.stopped = True
                result.stop_stage1, result.coef_stage1 = epoch, c_now
                state = ({k_: v.clone() for k_, v in model.state_dict().items()}, c_now)
            prev = cur
    if not stopped:
        result.coef_stage1 = coef.detach().numpy().copy()
        state = ({k_: v.clone() for k_, v in model.state_dict().items()}, result.coef_stage1)
    # stage 2 resumes from the stage-1 stop
    model.load_state_dict(state[0])
    with torch.no_grad():
        coef.copy_(torch.from_numpy(state[1]))
    opt = torch.optim.Adam([*model.parameters(), coef], lr=lr)
    prev = None
    result.stop_stage2 = stage2_epochs
    for epoch in range(1, stage2_epochs + 1):
        labels = cluster_coefficients(coef.detach().numpy(), k, top_k, seed)
        loss = loss_fn() + stage2_weight * structured_norm(coef, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        cur = float(loss.detach())
        if epoch % check_every == 0:
            if prev is not None and relative_change(prev, cur) < eps:
                result.stop_stage2 = epoch
                break
            prev = cur
    result.coef_stage2 = coef.detach().numpy().copy()
    return result
