"""Pure maths of the intrinsic-dimension study (Li et al., ICLR 2018, arXiv:1804.08838).

Networks (FC and convolutional), the toy problem of §2 as a module, seed derivation, input
standardisation, label shuffling and the d_int90 read-out of an accuracy curve. The random
subspace itself (``θ₀ + P θ_d``, projections, the toy objective) lives in
:mod:`subspacelab.geometry.random_subspace`.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from subspacelab.geometry import SubspaceModel, toy_objective

TOY_DIM = 1000  # the toy's D (fixed by geometry.toy_objective)


def derive_seed(*parts: object) -> int:
    """A deterministic 63-bit seed from labelled parts, e.g. ``derive_seed(0, "proj", 50, 80)``.

    Every random object of a run (θ₀, each projection, each label permutation) gets its own
    seed this way, so runs are reproducible one by one and independent of execution order.
    """
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with torch's global CPU generator seeded, then restore its state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class MLP(nn.Module):
    """FC ReLU net ``in - W x depth - classes`` (the paper's FC family, e.g. 784-200-200-10)."""

    def __init__(self, in_features: int, width: int, depth: int, num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        prev = in_features
        for _ in range(depth):
            layers += [nn.Linear(prev, width), nn.ReLU()]
            prev = width
        layers.append(nn.Linear(prev, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Logits for inputs of any shape ``(n, ...)`` (flattened)."""
        return self.layers(x)


class ConvNet(nn.Module):
    """Valid conv + ReLU + 2x max-pool blocks, then ReLU FC layers (LeNet-style, 1-D or 2-D).

    With ``channels=[6, 16]``, ``kernel_size=5``, ``hidden=[120, 84]`` on ``(1, 28, 28)`` inputs
    this is the paper's MNIST LeNet (D = 44,426); on ``(3, 32, 32)`` its CIFAR LeNet (62,006).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        channels: Sequence[int],
        kernel_size: int,
        hidden: Sequence[int],
        num_classes: int,
    ) -> None:
        super().__init__()
        if len(input_shape) not in (2, 3):
            raise ValueError(f"input_shape must be (C, L) or (C, H, W), got {tuple(input_shape)}")
        conv, pool = (
            (nn.Conv1d, nn.MaxPool1d) if len(input_shape) == 2 else (nn.Conv2d, nn.MaxPool2d)
        )
        size = list(input_shape[1:])
        layers: list[nn.Module] = []
        prev = input_shape[0]
        for ch in channels:
            size = [(s - kernel_size + 1) // 2 for s in size]
            if min(size) < 1:
                raise ValueError(
                    f"input {tuple(input_shape)} too small for {len(channels)} conv blocks "
                    f"of kernel {kernel_size}"
                )
            layers += [conv(prev, ch, kernel_size), nn.ReLU(), pool(2)]
            prev = ch
        layers.append(nn.Flatten())
        prev = prev * math.prod(size)
        for width in hidden:
            layers += [nn.Linear(prev, width), nn.ReLU()]
            prev = width
        layers.append(nn.Linear(prev, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Logits for ``(n, C, L)`` or ``(n, C, H, W)`` inputs."""
        return self.layers(x)


class ToyParameters(nn.Module):
    """The toy problem of §2 as a module: one parameter vector θ ∈ R^1000, forward = its loss."""

    def __init__(self, theta0: Tensor) -> None:
        super().__init__()
        if theta0.shape != (TOY_DIM,):
            raise ValueError(f"theta0 must have shape ({TOY_DIM},), got {tuple(theta0.shape)}")
        self.theta = nn.Parameter(theta0.clone())

    def forward(self) -> Tensor:
        """Σ_j (Σ_{i in block j} θ_i − j)²."""
        return toy_objective(self.theta)


def toy_theta0(seed: int, init_std: float) -> Tensor:
    """The toy's starting point θ₀ ~ N(0, init_std²) in float64 (the toy is an exact test)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(TOY_DIM, generator=gen, dtype=torch.float64) * init_std


def count_parameters(net: nn.Module) -> int:
    """D: the number of (unique) parameters; for a subspace model, those of its base net."""
    if isinstance(net, SubspaceModel):
        return net.D
    return sum(p.numel() for p in net.parameters())


def standardize(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero mean, unit variance from training statistics.

    Flat inputs ``(n, F)`` per feature, images/signals ``(n, C, ...)`` per channel. Constant
    features (std 0, e.g. digits' always-blank corner pixels) are only centred.
    """
    axes = (0,) if x_train.ndim == 2 else (0, *range(2, x_train.ndim))
    mean = x_train.mean(axis=axes, keepdims=True, dtype=np.float64)
    std = x_train.std(axis=axes, keepdims=True, dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    return (
        ((x_train - mean) / std).astype(np.float32),
        ((x_test - mean) / std).astype(np.float32),
    )


def shuffle_labels(y: np.ndarray, seed: int) -> np.ndarray:
    """A seeded random permutation of the labels (the paper's shuffled-label MNIST)."""
    return y[np.random.default_rng(seed).permutation(y.size)]


@dataclass(frozen=True)
class Crossing:
    """Where an accuracy curve first reaches a threshold.

    ``d_int`` is linearly interpolated between the last grid point below and the first at or
    above the threshold; ``d_grid`` is that first grid point. ``above_grid``: never reached,
    ``d_int`` is then the largest grid value, a lower bound. ``below_grid``: already reached at
    the smallest grid value, ``d_int`` is then that value, an upper bound.
    """

    d_int: float
    d_grid: float
    above_grid: bool
    below_grid: bool


def crossing(dims: Sequence[int], accs: Sequence[float], threshold: float) -> Crossing:
    """d_int = min{d : acc(d) ≥ threshold}, interpolated linearly between grid points."""
    if len(dims) != len(accs) or not dims:
        raise ValueError(f"need equal, non-empty dims and accs, got {len(dims)} and {len(accs)}")
    if any(a >= b for a, b in itertools.pairwise(dims)):
        raise ValueError(f"dims must increase strictly, got {list(dims)}")
    for i, (d, acc) in enumerate(zip(dims, accs, strict=True)):
        if acc >= threshold:
            if i == 0:
                return Crossing(float(d), float(d), above_grid=False, below_grid=True)
            d0, a0 = dims[i - 1], accs[i - 1]
            interp = d0 + (threshold - a0) * (d - d0) / (acc - a0)
            return Crossing(float(interp), float(d), above_grid=False, below_grid=False)
    return Crossing(float(dims[-1]), float(dims[-1]), above_grid=True, below_grid=False)
