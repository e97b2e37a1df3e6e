"""Core of ``robustness_lottery`` (Li et al., arXiv:2206.07918): a small 1-D CNN, the five
training/pruning methods, and the per-cell geometry summaries. Pure and IO-free."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

from subspacelab.probes import pruning as pr
from subspacelab.probes.robustness import logit_geometry

METHODS = ("dense", "magnitude_finetune", "gradual_magnitude", "lottery_rewind", "edge_popup")


class SmallCNN(nn.Module):
    """conv(1→C,k5) → ReLU → conv(C→C,k5,stride 2) → ReLU → FC(m) → ReLU (= h) → FC(classes)."""

    def __init__(self, length: int, channels: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.conv1: nn.Module = nn.Conv1d(1, channels, 5, padding=2)
        self.conv2: nn.Module = nn.Conv1d(channels, channels, 5, stride=2, padding=2)
        self.fc1: nn.Module = nn.Linear(channels * ((length + 1) // 2), hidden)
        self.fc2: nn.Module = nn.Linear(hidden, classes)

    def features(self, x: Tensor) -> Tensor:
        """The last hidden layer h (the pre-bias input of the final linear layer)."""
        a = torch.relu(self.conv2(torch.relu(self.conv1(x.unsqueeze(1)))))
        return torch.relu(self.fc1(a.flatten(1)))

    def forward(self, x: Tensor) -> Tensor:
        """Logits."""
        return self.fc2(self.features(x))

    def last_layer(self) -> tuple[Tensor, Tensor]:
        """The effective final weight (masked for edge-popup) and bias."""
        if isinstance(self.fc2, pr.EdgePopup):
            return self.fc2.layer.weight * self.fc2.mask(), self.fc2.layer.bias
        return self.fc2.weight, self.fc2.bias


def to_edge_popup(net: SmallCNN, keep: float) -> SmallCNN:
    """Wrap every layer in an edge-popup supermask over its (frozen, random) weights."""
    for name in ("conv1", "conv2", "fc1", "fc2"):
        setattr(net, name, pr.EdgePopup(getattr(net, name), keep))
    return net


def _epochs(
    net: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    epochs: int,
    lr: float,
    batch: int,
    gen: torch.Generator,
    masks: dict[str, Tensor] | None = None,
    schedule: tuple[int, float] | None = None,
) -> None:
    """Adam epochs; ``masks`` are held (gradients and weights zeroed); ``schedule`` =
    (total epochs, final sparsity) recomputes global magnitude masks each epoch (gradual)."""
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=lr)
    for epoch in range(epochs):
        if schedule is not None:
            total, final = schedule
            masks = pr.magnitude_masks(
                pr.prunable(net), pr.gradual_sparsity(epoch + 1, total, final)
            )
            pr.apply_masks(net, masks)
        for idx in torch.randperm(len(y), generator=gen).split(batch):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            if masks is not None:
                pr.mask_gradients(net, masks)
            opt.step()
            if masks is not None:
                pr.apply_masks(net, masks)


def train_methods(
    make: Callable[[], SmallCNN],
    x: Tensor,
    y: Tensor,
    *,
    epochs: int,
    finetune_epochs: int,
    rewind_epoch: int,
    sparsity: float,
    lr: float,
    batch: int,
    seed: int,
) -> dict[str, SmallCNN]:
    """The dense model and its four pruned counterparts, all from the same init."""
    gen = torch.Generator().manual_seed(seed)
    init = make()
    dense = copy.deepcopy(init)
    _epochs(dense, x, y, epochs=rewind_epoch, lr=lr, batch=batch, gen=gen)
    early = copy.deepcopy(dense)
    _epochs(dense, x, y, epochs=epochs - rewind_epoch, lr=lr, batch=batch, gen=gen)
    masks = pr.magnitude_masks(pr.prunable(dense), sparsity)
    finetuned = copy.deepcopy(dense)
    pr.apply_masks(finetuned, masks)
    _epochs(finetuned, x, y, epochs=finetune_epochs, lr=lr / 10, batch=batch, gen=gen, masks=masks)
    gradual = copy.deepcopy(init)
    _epochs(gradual, x, y, epochs=epochs, lr=lr, batch=batch, gen=gen, schedule=(epochs, sparsity))
    rewound = copy.deepcopy(early)
    masks_r = {k: v.clone() for k, v in masks.items()}
    pr.apply_masks(rewound, masks_r)
    _epochs(rewound, x, y, epochs=epochs - rewind_epoch, lr=lr, batch=batch, gen=gen, masks=masks_r)
    popup = to_edge_popup(copy.deepcopy(init), 1.0 - sparsity)
    _epochs(popup, x, y, epochs=epochs, lr=lr, batch=batch, gen=gen)
    return dict(zip(METHODS, (dense, finetuned, gradual, rewound, popup), strict=True))


@torch.no_grad()
def summarise(net: SmallCNN, x: Tensor, y: Tensor) -> dict[str, float]:
    """Accuracy, mean angle to the true class direction (degrees), mean ‖h‖, mean margin."""
    net.eval()
    h = net.features(x)
    w, b = net.last_layer()
    geo = logit_geometry(h, w, b, y)
    return {
        "acc": float((net.fc2(h).argmax(1) == y).float().mean()),
        "angle": float(torch.rad2deg(geo.angle).mean()),
        "length": float(geo.length.mean()),
        "margin": float(geo.margin.mean()),
    }
