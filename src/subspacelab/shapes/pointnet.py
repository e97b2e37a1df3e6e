"""A PointNet-style encoder (Qi et al., arXiv:1612.00593): a shared per-point MLP (1×1 convs with
BatchNorm and ReLU) and a max pool over points, so the code is invariant to the points' order."""

from __future__ import annotations

from torch import Tensor, nn


class PointNet(nn.Module):
    """Clouds (b, n, in_dim) -> codes (b, widths[-1]) through per-point layers of ``widths``."""

    def __init__(self, widths: list[int], in_dim: int = 3) -> None:
        super().__init__()
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must be a non-empty list of positive sizes, got {widths}")
        layers: list[nn.Module] = []
        for cin, cout in zip([in_dim, *widths[:-1]], widths, strict=True):
            layers += [nn.Conv1d(cin, cout, 1), nn.BatchNorm1d(cout), nn.ReLU()]
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Max over points of the per-point features."""
        return self.mlp(x.transpose(1, 2)).max(dim=2).values
