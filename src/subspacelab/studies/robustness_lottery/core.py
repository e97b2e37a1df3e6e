"""Core of ``robustness_lottery`` (Li et al., arXiv:2206.07918): a small 1-D CNN (the
miniature; Conv-8 for CIFAR-10 is in ``full``), the edge-popup wrapping and the per-cell
geometry summaries (the five training/pruning methods are in ``training``). Pure and
IO-free."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from subspacelab.probes import pruning as pr
from subspacelab.probes.robustness import logit_geometry
from subspacelab.studies.robustness_lottery.full import Conv8

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
        return last_layer(self)


Classifier = SmallCNN | Conv8


def last_layer(net: Classifier) -> tuple[Tensor, Tensor]:
    """The effective final weight (masked for edge-popup) and bias of ``net.fc2``."""
    if isinstance(net.fc2, pr.EdgePopup):
        return net.fc2.layer.weight * net.fc2.mask(), net.fc2.layer.bias
    return net.fc2.weight, net.fc2.bias


def to_edge_popup(net: Classifier, keep: float, seed: int = 0) -> Classifier:
    """Wrap every Linear and Conv layer in an edge-popup supermask keeping ``keep`` of its
    weights (per layer, as edge-popup), the weights set to the scaled signed constant with the
    signs of their random init, the scores drawn from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear | nn.Conv1d | nn.Conv2d):
                setattr(parent, name, pr.EdgePopup(child, keep, gen))
    return net


@torch.no_grad()
def summarise(net: Classifier, x: Tensor, y: Tensor, batch: int = 2048) -> dict[str, float]:
    """Accuracy, mean angle to the true class direction (degrees), mean ‖h‖, mean margin
    (features computed ``batch`` inputs at a time on the network's device)."""
    net.eval()
    device = next(net.parameters()).device
    h = torch.cat([net.features(part.to(device)) for part in x.split(batch)])
    acc = float((net.fc2(h).argmax(1).cpu() == y).float().mean())
    w, b = last_layer(net)
    geo = logit_geometry(h.cpu(), w.cpu(), b.cpu(), y.cpu())
    return {
        "acc": acc,
        "angle": float(torch.rad2deg(geo.angle).mean()),
        "length": float(geo.length.mean()),
        "margin": float(geo.margin.mean()),
    }
