"""Core of ``nc_perturbation`` (Tirer, Huang & Niles-Weed, arXiv:2210.16658). Pure, float64.

Model (our formalisation, spec §3): ``L = (1/2N)‖WH − Y‖² + (λ_W/2)‖W‖² + (β/2N)‖H − H₀‖²``
with features as columns, H (d, N), W (K, d), Y (K, N) one-hot.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from subspacelab.probes import collapse as nc


def central_w(h: Tensor, y1h: Tensor, lam_w: float) -> Tensor:
    """The optimal classifier for fixed H: ``W* = YHᵀ(HHᵀ + Nλ_W I)⁻¹``."""
    d, n = h.shape
    gram = h @ h.T + n * lam_w * torch.eye(d, dtype=h.dtype)
    return torch.linalg.solve(gram, h @ y1h.T).T


def h_step(w: Tensor, y1h: Tensor, h0: Tensor, beta: float) -> Tensor:
    """H-stationarity: ``H = (WᵀW + βI)⁻¹(WᵀY + βH₀)``."""
    d = w.shape[1]
    return torch.linalg.solve(w.T @ w + beta * torch.eye(d, dtype=w.dtype), w.T @ y1h + beta * h0)


def solve(
    h0: Tensor, y1h: Tensor, beta: float, lam_w: float, *, iters: int, tol: float
) -> tuple[Tensor, Tensor]:
    """Alternating closed-form minimisation from H = H₀ until ``‖ΔH‖/‖H‖ < tol``."""
    h = h0.clone()
    for _ in range(iters):
        w = central_w(h, y1h, lam_w)
        new = h_step(w, y1h, h0, beta)
        done = float(torch.linalg.norm(new - h) / torch.linalg.norm(new)) < tol
        h = new
        if done:
            break
    return h, central_w(h, y1h, lam_w)


def objective(h: Tensor, w: Tensor, y1h: Tensor, h0: Tensor, beta: float, lam_w: float) -> float:
    """The model's loss."""
    n = h.shape[1]
    return float(
        0.5 * (w @ h - y1h).square().sum() / n
        + 0.5 * lam_w * w.square().sum()
        + 0.5 * beta * (h - h0).square().sum() / n
    )


def central_flow(
    h0: Tensor, y1h: Tensor, y: Tensor, beta: float, lam_w: float, *, steps: int, step_frac: float
) -> list[float]:
    """Explicit Euler on the central path ``Ḣ = −∇g(H)`` from H₀; NC1 after every step.

    ``∇g = (1/N)[W*ᵀ(W*H − Y) + β(H − H₀)]`` (envelope theorem); the step is
    ``step_frac · N / (‖W*‖₂² + β)``.
    """
    n, k = h0.shape[1], y1h.shape[0]
    h = h0.clone()
    out = [nc.nc1(h.T, y, k)]
    for _ in range(steps):
        w = central_w(h, y1h, lam_w)
        grad = (w.T @ (w @ h - y1h) + beta * (h - h0)) / n
        h = h - step_frac * n / (float(torch.linalg.matrix_norm(w, ord=2)) ** 2 + beta) * grad
        out.append(nc.nc1(h.T, y, k))
    return out


def max_relative_increase(path: Sequence[float]) -> float:
    """``max_t (NC1(t+1) − NC1(t)) / NC1(t)``: the largest relative step up along a path
    (negative when it only decreases)."""
    return max((b - a) / a for a, b in itertools.pairwise(path))


def near_collapse(k: int, d: int, per_class: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Class means M̄₀ (d, K), unit-norm within-class deviations E (d, N) and labels."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(k).repeat_interleave(per_class)
    means = torch.randn(d, k, generator=g, dtype=torch.float64)
    e = torch.randn(d, k * per_class, generator=g, dtype=torch.float64)
    e = e - nc.class_means(e.T, y, k).T[:, y]
    return means, e / torch.linalg.norm(e), y


def first_order_errors(
    means: Tensor,
    e: Tensor,
    y: Tensor,
    beta: float,
    lam_w: float,
    eps: list[float],
    *,
    iters: int,
    tol: float,
    delta: float,
) -> list[float]:
    """``‖H*(ε) − (H*(0) + ε ∂H*/∂ε)‖_F`` for each ε; the first-order term by a central
    difference of the exact solutions at ±δ."""
    y1h = nn.functional.one_hot(y, means.shape[1]).T.double()

    def exact(eps_: float) -> Tensor:
        return solve(means[:, y] + eps_ * e, y1h, beta, lam_w, iters=iters, tol=tol)[0]

    h0 = exact(0.0)
    slope = (exact(delta) - exact(-delta)) / (2 * delta)
    return [float(torch.linalg.norm(exact(x) - h0 - x * slope)) for x in eps]


def loglog_slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log y against log x."""
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def mse_loss(net: nn.Module, batch: Sequence[Tensor]) -> Tensor:
    """``½‖f(x) − t‖²`` averaged over the batch ``(x, t)`` (t one-hot): the backbone's loss."""
    x, target = batch
    return 0.5 * (net(x) - target).square().sum(1).mean()


class Backbone(nn.Module):
    """An MLP of ``blocks`` Linear-ReLU blocks and a linear classifier (inputs flattened)."""

    def __init__(self, d_in: int, width: int, blocks: int, classes: int) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        dims = [d_in] + [width] * blocks
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(a, b), nn.ReLU()) for a, b in itertools.pairwise(dims)
        )
        self.fc = nn.Linear(width, classes)

    def block_features(self, x: Tensor) -> list[Tensor]:
        """Outputs of every block."""
        out = []
        x = self.flatten(x)
        for blk in self.blocks:
            x = blk(x)
            out.append(x)
        return out

    def forward(self, x: Tensor) -> Tensor:
        """Outputs (n, K)."""
        return self.fc(self.block_features(x)[-1])


class _BasicBlock(nn.Module):
    """ResNet's basic block: two 3×3 conv-BN layers and a (projected) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        )

    def forward(self, x: Tensor) -> Tensor:
        """``relu(body(x) + shortcut(x))``."""
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 with the CIFAR stem (3×3 conv, no max-pool; He et al. 2016), the full
    profile's backbone (spec §7). Its four stages are the blocks: each block's features are
    the stage output average-pooled over space (64, 128, 256, 512 dims); the classifier reads
    the last."""

    def __init__(self, classes: int, width: int = 64) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        stages, c_in = [], width
        for i, c_out in enumerate((width, 2 * width, 4 * width, 8 * width)):
            stride = 1 if i == 0 else 2
            stages.append(
                nn.Sequential(_BasicBlock(c_in, c_out, stride), _BasicBlock(c_out, c_out, 1))
            )
            c_in = c_out
        self.blocks = nn.ModuleList(stages)
        self.fc = nn.Linear(c_in, classes)

    def block_features(self, x: Tensor) -> list[Tensor]:
        """Every stage's output, average-pooled: (n, channels) each."""
        out = []
        x = self.stem(x)
        for stage in self.blocks:
            x = stage(x)
            out.append(x.mean(dim=(2, 3)))
        return out

    def forward(self, x: Tensor) -> Tensor:
        """Outputs (n, K)."""
        return self.fc(self.block_features(x)[-1])


def make_backbone(arch: str, x_shape: Sequence[int], width: int, blocks: int, k: int) -> nn.Module:
    """The backbone of ``arch``: ``mlp`` (mini) over flattened inputs, ``resnet18`` (full) over
    (3, H, W) images."""
    if arch == "resnet18":
        return ResNet18(k)
    return Backbone(int(np.prod(x_shape[1:])), width, blocks, k)


@torch.no_grad()
def block_features_batched(
    net: nn.Module, x: Tensor, device: torch.device, batch: int = 4096
) -> list[Tensor]:
    """``net.block_features`` over ``x`` in batches on ``device`` (eval mode), back on the CPU."""
    net.eval().to(device)
    parts = [
        [f.cpu() for f in net.block_features(x[i : i + batch].to(device))]  # type: ignore[operator]
        for i in range(0, len(x), batch)
    ]
    return [torch.cat(fs) for fs in zip(*parts, strict=True)]
