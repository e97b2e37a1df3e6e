"""Image-guided feature upsampling: an NAF-style neighbourhood-attention upsampler written with
plain tensor ops (the windows unfolded by index gathering; no NATTEN), and the bilinear
baseline.

The architecture of DiveUp (Liu & Fan, "DiveUp: Learning Feature Upsampling from Diverse Vision
Foundation Models", arXiv 2603.13571), which reuses NAF's: an image encoder E(I) (a 1×1 and a
3×3 conv stack, concatenated, average-pooled to the output size, 2-D RoPE) gives the queries
q = E(I) at the output resolution and the keys k = avg-pool(q) on the low-resolution token grid;
the values are the raw low-resolution features F (any channel count divisible by the heads).
Each output pixel p attends to the ``kernel``×``kernel`` tokens around the token that holds it
(NATTEN's window with dilation = the upsampling factor on the nearest-resized grid; as in
NATTEN, a window near the border is shifted to stay inside the grid, and a grid smaller than
the kernel is attended whole):

    F̂(p) = Σ_{u ∈ N(p)} softmax_u(⟨q_p, k_u⟩ / √d) F(u).

The weights depend only on the image, so F̂ is a convex combination of F's tokens and stays in
the source model's feature space: one upsampler serves any encoder.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def bilinear_upsample(feats: Tensor, size: tuple[int, int]) -> Tensor:
    """The baseline: ``feats`` (b, c, h, w) resized to ``size`` bilinearly (half-pixel
    centres, as ``align_corners=False``)."""
    return F.interpolate(feats, size=size, mode="bilinear", align_corners=False)


def _centres(n: int, device: torch.device) -> Tensor:
    """Pixel centres of an ``n``-cell axis in the normalised frame [-1, 1]."""
    return (torch.arange(n, device=device, dtype=torch.float32) + 0.5) / n * 2.0 - 1.0


def rope_2d(x: Tensor, heads: int, base: float, rescale: float) -> Tensor:
    """2-D rotary position embedding of ``x`` (b, dim, h, w): each head's channels split in
    halves rotated by the x and the y coordinate (pixel centres in [-1, 1] times ``rescale``),
    pairs at frequencies ``base^(-2i/d)``; ⟨rope(q)_p, rope(k)_u⟩ then depends on p − u."""
    b, dim, h, w = x.shape
    if dim % (4 * heads):
        raise ValueError(f"rope_2d needs dim divisible by 4 × heads ({4 * heads}), got {dim}")
    quarter = dim // heads // 4  # rotation pairs per axis and head
    freqs = base ** (-torch.arange(quarter, device=x.device, dtype=torch.float32) / quarter)
    ys, xs = _centres(h, x.device) * rescale, _centres(w, x.device) * rescale
    out = x.reshape(b, heads, 2, 2, quarter, h, w)  # head, axis (x, y), pair half, pair
    angles = (
        xs.view(1, 1, w) * freqs.view(-1, 1, 1),  # (quarter, 1, w)
        ys.view(1, h, 1) * freqs.view(-1, 1, 1),  # (quarter, h, 1)
    )
    rotated = []
    for axis, angle in enumerate(angles):
        a, c = out[:, :, axis, 0], out[:, :, axis, 1]
        cos, sin = torch.cos(angle), torch.sin(angle)
        rotated.append(torch.stack((a * cos - c * sin, a * sin + c * cos), dim=2))
    return torch.stack(rotated, dim=2).reshape(b, dim, h, w)


def window_index(n: int, kernel: int, device: torch.device | None = None) -> Tensor:
    """NATTEN's neighbourhood on an axis of ``n`` cells: (n, min(kernel, n)) indices, the
    window centred on each cell and shifted inwards at the borders."""
    k = min(kernel, n)
    start = (torch.arange(n, device=device) - kernel // 2).clamp(0, n - k)
    return start[:, None] + torch.arange(k, device=device)


class GuidanceEncoder(nn.Module):
    """E(I): a 1×1 and a 3×3 conv stack (``layers`` convs each, ``dim``/2 channels, GELU
    between), concatenated to ``dim`` channels and average-pooled to the output size."""

    def __init__(self, dim: int, layers: int, in_channels: int = 3) -> None:
        super().__init__()
        if dim % 2 or layers < 1:
            raise ValueError(f"GuidanceEncoder needs an even dim and layers >= 1 ({dim}, {layers})")
        self.stacks = nn.ModuleList(
            nn.Sequential(*self._stack(in_channels, dim // 2, layers, k)) for k in (1, 3)
        )

    @staticmethod
    def _stack(cin: int, cout: int, layers: int, k: int) -> list[nn.Module]:
        mods: list[nn.Module] = []
        for i in range(layers):
            if i:
                mods.append(nn.GELU())
            mods.append(nn.Conv2d(cin if i == 0 else cout, cout, k, padding=k // 2))
        return mods

    def forward(self, image: Tensor, size: tuple[int, int]) -> Tensor:
        """Guidance features (b, dim, *size)."""
        e = torch.cat([s(image) for s in self.stacks], dim=1)
        return e if tuple(e.shape[-2:]) == size else F.adaptive_avg_pool2d(e, size)


class NeighbourhoodUpsampler(nn.Module):
    """The NAF/DiveUp upsampler (module docstring): image-guided neighbourhood attention over
    the low-resolution tokens, ``heads`` heads each weighting its share of the value channels."""

    def __init__(
        self, dim: int, kernel: int, heads: int, layers: int, rope_base: float, rope_rescale: float
    ) -> None:
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"kernel must be odd and positive, got {kernel}")
        if dim % (4 * heads):
            raise ValueError(f"dim must be divisible by 4 × heads ({4 * heads}), got {dim}")
        self.encoder = GuidanceEncoder(dim, layers)
        self.kernel, self.heads = kernel, heads
        self.rope_base, self.rope_rescale = rope_base, rope_rescale

    def attention(self, image: Tensor, lr: tuple[int, ...], size: tuple[int, int]) -> Tensor:
        """Weights (b, heads, ky·kx, H, W) of every output pixel over the window of the ``lr``
        grid around its own token (row-major offsets from the window's corner,
        :func:`window_index`); ky = min(kernel, h), kx = min(kernel, w)."""
        (h, w), (big_h, big_w) = lr, size
        if big_h % h or big_w % w:
            raise ValueError(f"output size {size} must be a multiple of the token grid {lr}")
        sy, sx = big_h // h, big_w // w
        n = self.heads
        q = self.encoder(image, size)
        b, dim = q.shape[:2]
        k = F.adaptive_avg_pool2d(q, (h, w))
        q = rope_2d(q, n, self.rope_base, self.rope_rescale)
        k = rope_2d(k, n, self.rope_base, self.rope_rescale)
        kw = self._windows(k)  # (b, dim, ky, kx, h, w)
        kw = kw.reshape(b, n, dim // n, -1, h, w)
        qg = q.view(b, n, dim // n, h, sy, w, sx)
        logits = torch.einsum("bndhywx,bndkhw->bnkhywx", qg, kw) / math.sqrt(dim // n)
        return logits.softmax(dim=2).reshape(b, n, -1, big_h, big_w)

    def _windows(self, x: Tensor) -> Tensor:
        """``x`` (b, c, h, w) gathered over every cell's window: (b, c, ky, kx, h, w)."""
        iy = window_index(x.shape[-2], self.kernel, x.device)
        ix = window_index(x.shape[-1], self.kernel, x.device)
        return x[:, :, iy.T[:, None, :, None], ix.T[None, :, None, :]]

    def aggregate(self, weights: Tensor, feats: Tensor) -> Tensor:
        """Apply ``weights`` (from :meth:`attention`, b × heads × window × H × W) to ``feats``
        (b, c, h, w): one attention serves every source model's features."""
        b, c, h, w = feats.shape
        n = self.heads
        if c % n:
            raise ValueError(f"feature channels ({c}) must be divisible by the heads ({n})")
        big_h, big_w = weights.shape[-2:]
        k2 = min(self.kernel, h) * min(self.kernel, w)
        if weights.shape[:3] != (b, n, k2) or big_h % h or big_w % w:
            raise ValueError(f"weights {tuple(weights.shape)} do not fit features {(b, c, h, w)}")
        att = weights.view(b, n, k2, h, big_h // h, w, big_w // w)
        vw = self._windows(feats).reshape(b, n, c // n, k2, h, w)
        out = torch.einsum("bnkhywx,bnckhw->bnchywx", att, vw)
        return out.reshape(b, c, big_h, big_w)

    def forward(self, image: Tensor, feats: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """``feats`` (b, c, h, w) upsampled to ``size`` (default: the image's) under the
        guidance of ``image`` (b, 3, H, W); c must be divisible by the heads."""
        out_size = (image.shape[-2], image.shape[-1]) if size is None else size
        return self.aggregate(self.attention(image, feats.shape[-2:], out_size), feats)
