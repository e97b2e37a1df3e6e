"""Feature gates as reusable modules: hydra's class-pair gate, squeeze-and-excitation and a
CBAM-style spatial attention (issue 14's comparison of attention/gating modules).

* :class:`ClassPairGate` — the feature filter of Hydra/SimLAP (Wu et al., "Rethinking Positive
  Pairs in Contrastive Learning", arXiv:2410.18200): a label embedding e(y); for a class pair
  (y₁, y₂) the fused embedding ē = (e(y₁) + e(y₂))/2, and the gate
  γ = sigmoid(Linear(BN(ReLU(Linear(BN(ReLU(ē))))))) ∈ (0, 1)^d (the authors' MLP order,
  ReLU-BN-Linear twice); without fusion γ = σ(MLP e(y₁)) ⊙ σ(MLP e(y₂)). One label alone is
  the pair (y, y). :class:`OpenGate` is the no-filter ablation (γ ≡ 1).
* :class:`FeatureFilter` — γ ⊙ z for features z of shape (b, d, ...) (a vector or a feature
  map, the gate broadcast over the trailing positions); with an :class:`OpenGate`, the identity.
* :class:`SqueezeExcitation` — Hu et al., arXiv:1709.01507: s = σ(W₂ ReLU(W₁ avgpool(x))),
  x ⊙ s per channel (reduction r: W₁ is C→C/r, W₂ is C/r→C, both with bias).
* :class:`SpatialAttention` — CBAM's spatial gate (Woo et al., arXiv:1807.06521): the channel
  mean and max maps, a k×k conv (2→1, no bias) and BatchNorm, σ, x ⊙ a per position.

The products x ⊙ s are :class:`Scale` modules. ``subspacelab.modules.count`` has no rule for
them (a parameter-free leaf counts 0 MACs): its MACs leave out one multiply per element of x.
The label embedding is a plain parameter (a lookup is no MAC), so ``count`` accepts the gate.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Scale(nn.Module):
    """``x * a``: a gate ``a`` (broadcast over ``x``) applied without a residual."""

    def forward(self, x: Tensor, a: Tensor) -> Tensor:
        """``x ⊙ a``."""
        return x * a


class OpenGate(nn.Module):
    """The all-open gate γ ≡ 1 of ``dim`` features (hydra's no-filter ablation)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"OpenGate needs dim >= 1, got {dim}")
        self.dim = dim

    def forward(self, y1: Tensor, y2: Tensor | None = None) -> Tensor:
        """Ones of shape (len(y1), dim)."""
        return torch.ones(len(y1), self.dim, device=y1.device)


class ClassPairGate(nn.Module):
    """Hydra/SimLAP's class-pair gate (arXiv:2410.18200): ``classes`` label embeddings of
    ``embed_dim``, an MLP ``embed_dim → hidden → dim``, sigmoid; ``fuse`` averages the pair's
    embeddings before the MLP, otherwise the two single-class gates are multiplied."""

    def __init__(
        self, classes: int, dim: int, embed_dim: int, hidden: int, *, fuse: bool = True
    ) -> None:
        super().__init__()
        if min(classes, dim, embed_dim, hidden) < 1:
            raise ValueError(
                f"ClassPairGate needs positive sizes, got classes={classes}, dim={dim}, "
                f"embed_dim={embed_dim}, hidden={hidden}"
            )
        self.classes, self.dim, self.fuse = classes, dim, fuse
        self.embedding = nn.Parameter(torch.randn(classes, embed_dim))  # nn.Embedding's init
        self.mlp = nn.Sequential(
            nn.ReLU(),
            nn.BatchNorm1d(embed_dim),
            nn.Linear(embed_dim, hidden),
            nn.ReLU(),
            nn.BatchNorm1d(hidden),
            nn.Linear(hidden, dim),
        )

    def _check(self, y: Tensor) -> None:
        if y.dtype not in (torch.int32, torch.int64) or y.dim() != 1:
            raise ValueError(f"labels must be a 1-D integer tensor, got {y.dtype} {tuple(y.shape)}")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.classes):
            raise ValueError(f"labels must lie in [0, {self.classes}), got {y.min()}..{y.max()}")

    def forward(self, y1: Tensor, y2: Tensor | None = None) -> Tensor:
        """γ(y₁, y₂) of shape (len(y1), dim), in (0, 1); ``y2=None`` is the pair (y₁, y₁)."""
        self._check(y1)
        if y2 is None:
            return torch.sigmoid(self.mlp(self.embedding[y1]))
        self._check(y2)
        if len(y2) != len(y1):
            raise ValueError(f"y1 and y2 differ in length: {len(y1)} != {len(y2)}")
        if self.fuse:
            return torch.sigmoid(self.mlp((self.embedding[y1] + self.embedding[y2]) / 2))
        return torch.sigmoid(self.mlp(self.embedding[y1])) * torch.sigmoid(
            self.mlp(self.embedding[y2])
        )

    def statistics(self) -> tuple[float, float]:
        """The single-class gates' mean activation (features open per class, summed over the
        dim features and averaged over classes) and mean Bernoulli entropy (nats); the model's
        mode is left as it was (BN uses running statistics: call it in eval mode)."""
        with torch.no_grad():
            g = self(torch.arange(self.classes, device=self.embedding.device))
            p = g.clamp(1e-12, 1 - 1e-12)
            entropy = -(p * p.log() + (1 - p) * (1 - p).log())
        return float(g.sum(1).mean()), float(entropy.mean())


class FeatureFilter(nn.Module):
    """γ ⊙ z with γ = ``gate(y1, y2)`` (b, d) broadcast over z's trailing dims (b, d, ...)."""

    def __init__(self, gate: ClassPairGate | OpenGate) -> None:
        super().__init__()
        self.gate = gate
        self.scale = Scale()

    def forward(self, z: Tensor, y1: Tensor, y2: Tensor | None = None) -> Tensor:
        """The gated features, z's shape."""
        g = self.gate(y1, y2)
        if z.dim() < 2 or z.shape[:2] != g.shape:
            raise ValueError(f"features {tuple(z.shape)} do not match the gate {tuple(g.shape)}")
        return self.scale(z, g.view(*g.shape, *([1] * (z.dim() - 2))))


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation (arXiv:1709.01507) on ``channels`` with reduction ``reduction``."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        if reduction < 1 or channels < reduction or channels % reduction:
            raise ValueError(
                f"SE needs a reduction dividing the channels: {channels} % {reduction} != 0"
            )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(channels, channels // reduction)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(channels // reduction, channels)
        self.sigmoid = nn.Sigmoid()
        self.scale = Scale()

    def weights(self, x: Tensor) -> Tensor:
        """The channel weights s (b, C, 1, 1) in (0, 1)."""
        s = self.sigmoid(self.fc2(self.relu(self.fc1(self.pool(x).flatten(1)))))
        return s[:, :, None, None]

    def forward(self, x: Tensor) -> Tensor:
        """x ⊙ s (x's shape)."""
        return self.scale(x, self.weights(x))


class SpatialAttention(nn.Module):
    """CBAM's spatial attention (arXiv:1807.06521): σ(BN(conv_k([mean_c x; max_c x]))) ⊙ x."""

    def __init__(self, kernel_size: int, bn_momentum: float = 0.1) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"the spatial kernel must be odd and positive, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, momentum=bn_momentum)
        self.sigmoid = nn.Sigmoid()
        self.scale = Scale()

    def map(self, x: Tensor) -> Tensor:
        """The attention map (b, 1, h, w) in (0, 1)."""
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return self.sigmoid(self.bn(self.conv(pooled)))

    def forward(self, x: Tensor) -> Tensor:
        """x ⊙ a (x's shape)."""
        return self.scale(x, self.map(x))
