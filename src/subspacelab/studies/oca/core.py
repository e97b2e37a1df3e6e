"""OCA miniature: a 1-D CNN embedder and leave-one-out retrieval metrics (arXiv:2408.08793)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from subspacelab.adapters import OrthogonalLayer


class Embedder(nn.Module):
    """Conv1d (k5, stride 2) stack → linear embedding, L2-normalised; a linear classifier,
    optionally behind OCA's orthogonal layer."""

    def __init__(
        self, length: int, channels: list[int], dim: int, n_classes: int, ortho: bool, bias: bool
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out in zip([1, *channels[:-1]], channels, strict=True):
            layers += [nn.Conv1d(c_in, c_out, 5, stride=2, padding=2), nn.ReLU()]
            length = (length + 1) // 2
        self.conv = nn.Sequential(*layers, nn.Flatten())
        self.embed_layer = nn.Linear(channels[-1] * length, dim)
        self.ortho = OrthogonalLayer(dim, bias=bias) if ortho else None
        self.classifier = nn.Linear(dim, n_classes)

    def embed(self, x: Tensor) -> Tensor:
        """L2-normalised embedding h."""
        return F.normalize(self.embed_layer(self.conv(x.unsqueeze(1))), dim=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(class logits of W_c Q h — or W_c h without Q —, h)."""
        h = self.embed(x)
        z = self.ortho(h) if self.ortho is not None else h
        return self.classifier(z), h


def retrieval(query: Tensor, gallery: Tensor, labels: Tensor) -> tuple[float, float]:
    """(CMC top-1, mAP) with cosine similarity, leave-one-out: query i and gallery item i are
    the same sample, which is excluded. Features are truncated to the smaller dimension and
    re-normalised."""
    d = min(query.shape[1], gallery.shape[1])
    q, g = F.normalize(query[:, :d], dim=1), F.normalize(gallery[:, :d], dim=1)
    sims = q @ g.T
    sims.fill_diagonal_(-float("inf"))
    order = sims.argsort(dim=1, descending=True)[:, :-1]  # drop the query itself (last)
    rel = (labels[order] == labels[:, None]).double()
    top1 = float(rel[:, 0].mean())
    hits = rel.cumsum(dim=1)
    ranks = torch.arange(1, rel.shape[1] + 1, dtype=torch.float64)
    ap = (rel * hits / ranks).sum(dim=1) / rel.sum(dim=1).clamp(min=1)
    return top1, float(ap.mean())
