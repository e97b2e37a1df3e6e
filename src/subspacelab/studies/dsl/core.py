"""The miniature's networks for dsl (arXiv 2206.09068); the method is in
``subspacelab.modules.subspace_learners``.

* :func:`cnn` — the spec's 4-layer CNN (16-32-64-64 channels), conv3×3-BN-ReLU layers; strided
  (2, 2, 2, 1) so that a 48×48 image gives a 6×6 map, the miniature of ResNet-50's 7×7;
* :func:`embedder` — that backbone under DSL's attention head and the linear embedding;
* :class:`Classifier` — the cross-entropy baseline: the same backbone, average pooling, the same
  linear embedding and a linear classifier on it (its embedding is what retrieval uses, its last
  feature map what Grad-CAM explains).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from subspacelab.modules.subspace_learners import AttentionEmbedder


def cnn(widths: Sequence[int], strides: Sequence[int]) -> nn.Sequential:
    """conv3×3 (stride) – BatchNorm – ReLU per width, from 3 input channels."""
    if len(widths) != len(strides) or not widths:
        raise ValueError(f"one stride per width, got {list(widths)} and {list(strides)}")
    layers: list[nn.Module] = []
    cin = 3
    for cout, stride in zip(widths, strides, strict=True):
        layers += [nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.ReLU()]
        cin = cout
    return nn.Sequential(*layers)


def embedder(
    widths: Sequence[int],
    strides: Sequence[int],
    head: Sequence[int],
    dim: int,
    dropout: float,
    beta: float,
) -> AttentionEmbedder:
    """DSL's model on the miniature backbone."""
    return AttentionEmbedder(cnn(widths, strides), widths[-1], head, dim, dropout, beta)


class Classifier(nn.Module):
    """Backbone → average pooling → linear embedding → linear classifier (cross-entropy)."""

    def __init__(self, backbone: nn.Module, channels: int, dim: int, n_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.embed = nn.Linear(channels, dim)
        self.classify = nn.Linear(dim, n_classes)

    def features(self, x: Tensor) -> Tensor:
        """The last feature map (where Grad-CAM looks)."""
        return self.backbone(x)

    def head(self, f: Tensor) -> Tensor:
        """Logits from a feature map."""
        return self.classify(self.embed(f.mean(dim=(2, 3))))

    def embedding(self, x: Tensor) -> Tensor:
        """The embedding retrieval and clustering use."""
        return self.embed(self.features(x).mean(dim=(2, 3)))

    def forward(self, x: Tensor) -> Tensor:
        """Logits."""
        return self.head(self.features(x))
