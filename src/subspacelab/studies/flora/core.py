"""FLoRA miniature: the CNN, the digits tasks and budget matching (arXiv:2405.14739)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from torch import Tensor, nn

from subspacelab.adapters import FLoRA, LoRA
from subspacelab.adapters.budget import BudgetMatch, make_adapter, match_budgets
from subspacelab.adapters.stacked import StackedConv2d, signature


class SmallCNN(nn.Module):
    """3×3 convs with ReLU (padding 1), global average pooling, a linear head."""

    def __init__(self, channels: list[int], strides: list[int], n_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out, s in zip([1, *channels[:-1]], channels, strides, strict=True):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=s, padding=1), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels[-1], n_classes)

    def embed(self, x: Tensor) -> Tensor:
        """Pooled features."""
        return self.features(x).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        """Logits."""
        return self.head(self.embed(x))


class StackedArms:
    """Each net's cross-entropy on its own batch ``(xs[k], ys[k])``, all nets at once.

    Every conv layer of the K nets runs as a few grouped convs over channel blocks
    (``adapters.stacked.StackedConv2d``, one per run of consecutive nets with the same kind of
    layer: order the nets by arm to get few runs), the heads as one batched product — the same
    maps as each net alone (batches of one size). The adapters' input dropout, if any, draws
    from a generator seeded ``seed``."""

    def __init__(self, nets: Sequence[SmallCNN], seed: int = 0) -> None:
        self.nets = list(nets)
        gen = torch.Generator().manual_seed(seed)
        per_net = [[m for m in net.features if not isinstance(m, nn.ReLU)] for net in nets]
        sigs = [tuple(signature(m) for m in layers) for layers in per_net]
        self.runs: list[tuple[int, int]] = []  # [start, stop) of nets of one signature
        for k, sig in enumerate(sigs):
            if self.runs and sigs[self.runs[-1][0]] == sig:
                self.runs[-1] = (self.runs[-1][0], k + 1)
            else:
                self.runs.append((k, k + 1))
        self.layers = [
            [StackedConv2d([per_net[k][j] for k in range(a, b)], gen) for a, b in self.runs]
            for j in range(len(per_net[0]))
        ]

    def __call__(self, xs: Sequence[Tensor], ys: Sequence[Tensor]) -> Tensor:
        """The K losses, in the nets' order."""
        k = len(self.nets)
        h = torch.cat(list(xs), dim=1)
        for stacks in self.layers:
            if len(stacks) == 1:
                h = F.relu(stacks[0](h))
                continue
            blocks = h.split([(b - a) * stacks[0].in_channels for a, b in self.runs], dim=1)
            h = F.relu(torch.cat([st(x) for st, x in zip(stacks, blocks, strict=True)], dim=1))
        feats = h.mean(dim=(2, 3)).reshape(len(h), k, -1)
        w_head = torch.stack([net.head.weight for net in self.nets])
        b_head = torch.stack([net.head.bias for net in self.nets])
        logits = torch.einsum("bkc,koc->kbo", feats, w_head) + b_head[:, None]
        y = torch.stack(list(ys))
        losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
        return losses.view(k, -1).mean(1)


def convs(model: SmallCNN) -> list[nn.Conv2d]:
    """The conv layers, in order (the frozen base layer of an adapted conv)."""
    return [
        m.base if isinstance(m, LoRA | FLoRA) else m
        for m in model.features
        if isinstance(m, nn.Conv2d | LoRA | FLoRA)
    ]


def conv_param_count(model: SmallCNN) -> int:
    """Conv weights (no biases): the reference of the budgets."""
    return sum(c.weight.numel() for c in convs(model))


def budget_matches(model: SmallCNN, budgets: Sequence[float], spatial: int) -> list[BudgetMatch]:
    """LoRA and FLoRA ranks at each budget (a fraction of the conv weights), matched within
    10 % (``adapters.budget.match_budgets``; ValueError otherwise)."""
    total = conv_param_count(model)
    return match_budgets(convs(model), [round(b * total) for b in budgets], spatial)


def adapt(
    model: SmallCNN, kind: str, rank: int, spatial: int, scale: float, dropout: float = 0.0
) -> None:
    """Freeze the backbone and wrap every conv for ``kind`` (``flora``/``lora``), in place;
    both adapters take the same scale ``s`` and input dropout."""
    model.features.requires_grad_(False)
    for i, m in enumerate(model.features):
        if isinstance(m, nn.Conv2d):
            model.features[i] = make_adapter(kind, m, rank, spatial, scale, dropout)


def upsample(x: np.ndarray, size: int) -> Tensor:
    """8×8 digits in [0, 1] → (N, 1, size, size), bilinear."""
    t = torch.as_tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8)
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)


def bandpass_noise(shape: tuple[int, ...], seed: int, amplitude: float = 0.5) -> Tensor:
    """A band-pass noise texture per image (difference of Gaussians of white noise)."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(shape)
    band = gaussian_filter(white, sigma=(0, 0, 1, 1)) - gaussian_filter(white, sigma=(0, 0, 2, 2))
    band /= band.std() + 1e-12
    return torch.as_tensor(amplitude * band, dtype=torch.float32)


def make_task(name: str, x: Tensor, y: Tensor, seed: int) -> tuple[Tensor, Tensor]:
    """A downstream task's inputs and 10-way labels."""
    if name == "relabel":
        return x, (y + 5) % 10  # digits 5-9 and 0-4 under a new head
    if name == "invert":
        return 1.0 - x, y
    if name == "rot90":
        return torch.rot90(x, 1, (2, 3)), y
    if name == "bandpass":
        return x + bandpass_noise(tuple(x.shape), seed), y
    raise KeyError(f"unknown task {name!r}")


def random_shift(max_shift: int) -> object:
    """Augmentation: roll each batch by a random shift in [−max_shift, max_shift] pixels."""

    def aug(x: Tensor, gen: torch.Generator) -> Tensor:
        dx, dy = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=gen))
        return torch.roll(x, (dx, dy), dims=(2, 3))

    return aug
