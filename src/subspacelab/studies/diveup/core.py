"""The maths of DiveUp's miniature (Liu & Fan, arXiv 2603.13571): the stand-in "foundation
models" with their injected pathologies, the relational (centre-of-mass) representation, the
spikiness score and the consensus target, the two training losses, and the evaluation metrics
(ridge linear probe, mIoU, boundary F1, spike propagation). Pure and IO-free; tested in
tests/studies/test_diveup.py. The upsampler itself is :mod:`subspacelab.modules.upsample`.

The training objective is reconstructed from the paper's abstract (spec §3): "DiveUp-like".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PATHOLOGIES = ("spikes", "shift", "blur", "clean")
STRIDE = 8  # every expert's token stride (pixels)


class Expert(nn.Module):
    """A small frozen stand-in VFM: three stride-2 3×3 convs (GELU) and a 1×1 projection to
    ``width`` channels, tokens at stride 8; a pixel-shuffle decoder used only by its brief
    denoising pre-training. ``pathology`` acts on its output (:meth:`features`)."""

    def __init__(self, width: int, hidden: int, pathology: str) -> None:
        super().__init__()
        if pathology not in PATHOLOGIES:
            raise ValueError(f"unknown pathology {pathology!r}: one of {PATHOLOGIES}")
        self.pathology, self.width = pathology, width
        self.encoder = nn.Sequential(
            nn.Conv2d(3, hidden // 2, 3, 2, 1),
            nn.GELU(),
            nn.Conv2d(hidden // 2, hidden, 3, 2, 1),
            nn.GELU(),
            nn.Conv2d(hidden, width, 3, 2, 1),
            nn.GELU(),
            nn.Conv2d(width, width, 1),
        )
        self.decoder = nn.Conv2d(width, 3 * STRIDE * STRIDE, 1)
        # the register-like direction its spikes take (a buffer: saved with the expert)
        self.register_buffer("direction", F.normalize(torch.randn(width), dim=0))

    def denoise(self, noisy: Tensor) -> Tensor:
        """The pre-training task's reconstruction of the clean image from ``noisy``."""
        return F.pixel_shuffle(self.decoder(self.encoder(noisy)), STRIDE)

    def features(
        self,
        image: Tensor,
        *,
        spike_prob: float,
        spike_norm: float,
        blur_sigma: float,
        generator: torch.Generator,
    ) -> tuple[Tensor, Tensor]:
        """Tokens (b, width, H/8, W/8) with the pathology, and the spike mask (b, H/8, W/8):
        ``spikes`` replaces each token with probability ``spike_prob`` by ``direction`` at
        ``spike_norm`` × the image's median token norm; ``shift`` encodes the image moved by
        half a token (4 px, down and right: a misaligned grid); ``blur`` smooths the tokens
        with a Gaussian of ``blur_sigma`` tokens; ``clean`` leaves them."""
        if self.pathology == "shift":
            h, w, half = image.shape[-2], image.shape[-1], STRIDE // 2
            image = F.pad(image, (half, 0, half, 0), mode="replicate")[..., :h, :w]
        feats = self.encoder(image)
        mask = torch.zeros(feats.shape[0], *feats.shape[-2:], dtype=torch.bool)
        if self.pathology == "spikes":
            mask = torch.rand(mask.shape, generator=generator) < spike_prob
            feats = inject_spikes(feats, mask, self.direction, spike_norm)
        elif self.pathology == "blur":
            feats = gaussian_blur(feats, blur_sigma)
        return feats, mask


def inject_spikes(feats: Tensor, mask: Tensor, direction: Tensor, strength: float) -> Tensor:
    """``feats`` with the tokens of ``mask`` replaced by ``direction`` scaled to ``strength``
    × each image's median token norm (high-norm register-like artifacts)."""
    scale = feats.norm(dim=1).flatten(1).median(dim=1).values * strength
    spike = direction.view(1, -1, 1, 1) * scale.view(-1, 1, 1, 1)
    return torch.where(mask[:, None], spike, feats)


def gaussian_blur(feats: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian smoothing of every channel (sd ``sigma`` grid cells, radius
    ceil(2σ), reflected borders); ``sigma`` 0 returns ``feats``."""
    if sigma == 0:
        return feats
    r = max(1, int(torch.tensor(2 * sigma).ceil()))
    t = torch.arange(-r, r + 1, dtype=feats.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = feats.shape[1]
    x = F.pad(feats, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _window(x: Tensor, radius: int) -> tuple[Tensor, Tensor, Tensor]:
    """``x`` (b, c, h, w) unfolded over the (2r+1)² window of every cell: (b, c, K, h, w), the
    window's offsets (K, 2) as (dy, dx), and which window cells lie inside the grid (K, h, w)."""
    b, c, h, w = x.shape
    k = 2 * radius + 1
    u = F.unfold(x, k, padding=radius).view(b, c, k * k, h, w)
    inside = F.unfold(torch.ones(1, 1, h, w, dtype=x.dtype), k, padding=radius)
    d = torch.arange(-radius, radius + 1, dtype=x.dtype)
    offsets = torch.stack(torch.meshgrid(d, d, indexing="ij"), dim=-1).view(-1, 2)
    return u, offsets, inside.view(k * k, h, w) > 0


def com_field(feats: Tensor, radius: int, tau: float) -> Tensor:
    """The relational representation (b, 2, h, w): at each cell p, the centre of mass
    Σ_u a_pu (u − p) of the window N(p) (radius ``radius``, inside the grid) under
    a_pu = softmax_u(cos(G_p, G_u) / τ); (dy, dx) in grid cells, dimension-free."""
    g = F.normalize(feats, dim=1)
    u, offsets, inside = _window(g, radius)
    cos = (u * g[:, :, None]).sum(dim=1)  # (b, K, h, w)
    a = (cos / tau).masked_fill(~inside, float("-inf")).softmax(dim=1)
    return torch.einsum("bkhw,kc->bchw", a, offsets)


def spikiness(feats: Tensor) -> Tensor:
    """The high-norm artifact score (b, h, w): each token's norm over the image's median token
    norm (≈ 1 for ordinary tokens)."""
    norm = feats.norm(dim=1)
    return norm / norm.flatten(1).median(dim=1).values.clamp_min(1e-12).view(-1, 1, 1)


def consensus_com(coms: list[Tensor], spiky: list[Tensor], radius: int, threshold: float) -> Tensor:
    """The DiveUp-like target (b, 2, h, w): at each cell, the mean COM of the experts whose
    window N(p) holds no token with spikiness above ``threshold`` (a spike distorts the COM of
    its neighbours too); where every expert is spiky, the COM of the least spiky (the lowest
    window maximum)."""
    worst = torch.stack([F.max_pool2d(s[:, None], 2 * radius + 1, 1, radius)[:, 0] for s in spiky])
    com = torch.stack(coms)  # (m, b, 2, h, w)
    ok = (worst <= threshold).to(com.dtype)  # (m, b, h, w)
    best = F.one_hot(worst.argmin(dim=0), len(coms)).permute(3, 0, 1, 2).to(com.dtype)
    weight = torch.where(ok.sum(dim=0, keepdim=True) > 0, ok, best)
    return (weight[:, :, None] * com).sum(dim=0) / weight.sum(dim=0)[:, None]


def com_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared distance between two COM fields (b, 2, h, w)."""
    return (pred - target).pow(2).sum(dim=1).mean()


def selfrecon_loss(pred: Tensor, target: Tensor) -> Tensor:
    """The self-reconstruction baseline's loss (NAF/JAFAR-style): MSE to the source model's
    own features of the 2× image, per channel and cell."""
    return F.mse_loss(pred, target)


def ridge_probe(xtx: Tensor, xty: Tensor, ridge: float) -> Tensor:
    """A linear probe in closed form (one-hot least squares), from the moments of rows with a
    trailing constant column: ``xtx`` = XᵀX (d+1, d+1), ``xty`` = XᵀY (d+1, k). Ridge on the
    centred covariance Σ: W = (Σ + λ·tr(Σ)/d·I)⁻¹ Cov(X, Y), bias ȳ − μᵀW (so a large feature
    mean neither dominates the penalty nor the fit); returns (d+1, k), the bias last, float64."""
    xtx, xty = xtx.double(), xty.double()
    n = xtx[-1, -1]
    mu, ybar = xtx[:-1, -1] / n, xty[-1] / n
    cov = xtx[:-1, :-1] / n - torch.outer(mu, mu)
    cxy = xty[:-1] / n - torch.outer(mu, ybar)
    d = cov.shape[0]
    reg = torch.eye(d, dtype=torch.float64) * ridge * float(cov.trace()) / d
    w = torch.linalg.solve(cov + reg, cxy)
    return torch.cat([w, (ybar - mu @ w)[None]], dim=0)


def with_bias(pixels: Tensor) -> Tensor:
    """Features (b, c, h, w) as rows (b·h·w, c + 1) with a constant column (dtype kept)."""
    rows = pixels.permute(0, 2, 3, 1).reshape(-1, pixels.shape[1])
    return torch.cat([rows, torch.ones(len(rows), 1, dtype=rows.dtype)], dim=1)


def confusion(pred: Tensor, labels: Tensor, classes: int) -> Tensor:
    """Confusion counts (classes, classes): rows the truth, columns the prediction; pixels
    labelled -1 (void) are left out."""
    keep = labels.flatten() >= 0
    idx = labels.flatten()[keep] * classes + pred.flatten()[keep]
    return torch.bincount(idx, minlength=classes * classes).view(classes, classes)


def miou(conf: Tensor) -> float:
    """Mean intersection over union of the classes present (in truth or prediction)."""
    c = conf.double()
    inter = c.diagonal()
    union = c.sum(0) + c.sum(1) - inter
    present = union > 0
    return float((inter[present] / union[present]).mean())


def boundaries(labels: Tensor) -> Tensor:
    """Boundary pixels (b, h, w) of label maps: a 4-neighbour (inside the map) differs."""
    edge = torch.zeros_like(labels, dtype=torch.bool)
    dy = labels[:, 1:] != labels[:, :-1]
    dx = labels[:, :, 1:] != labels[:, :, :-1]
    edge[:, 1:] |= dy
    edge[:, :-1] |= dy
    edge[:, :, 1:] |= dx
    edge[:, :, :-1] |= dx
    return edge


def boundary_counts(pred: Tensor, labels: Tensor, tol: int) -> Tensor:
    """(predicted boundary pixels within ``tol`` of a true one, predicted boundary pixels, true
    boundary pixels within ``tol`` of a predicted one, true boundary pixels), summed."""
    bp, bt = boundaries(pred), boundaries(labels)
    k = 2 * tol + 1
    near_t = F.max_pool2d(bt[:, None].float(), k, 1, tol)[:, 0] > 0
    near_p = F.max_pool2d(bp[:, None].float(), k, 1, tol)[:, 0] > 0
    return torch.tensor(
        [(bp & near_t).sum(), bp.sum(), (bt & near_p).sum(), bt.sum()], dtype=torch.float64
    )


def boundary_f1(counts: Tensor) -> float:
    """F1 of boundary precision and recall from :func:`boundary_counts`' sums."""
    p = float(counts[0] / counts[1].clamp_min(1))
    r = float(counts[2] / counts[3].clamp_min(1))
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def spike_ring(mask: Tensor, scale: int) -> Tensor:
    """Output pixels (b, h·scale, w·scale) of the tokens next to a spike (8-neighbourhood),
    not themselves spikes: where an upsampler may spread a spike."""
    m = mask[:, None].float()
    near = (F.max_pool2d(m, 3, 1, 1) > 0) & (m == 0)
    return F.interpolate(near.float(), scale_factor=scale, mode="nearest")[:, 0] > 0


def spike_ratio(up: Tensor, mask: Tensor) -> Tensor:
    """Per image holding a spike (n,): the largest output norm next to a spike
    (:func:`spike_ring`) over the image's median output norm; 1 means nothing spread."""
    scale = up.shape[-1] // mask.shape[-1]
    ring = spike_ring(mask, scale)
    norm = up.norm(dim=1)
    median = norm.flatten(1).median(dim=1).values.clamp_min(1e-12)
    peak = norm.masked_fill(~ring, 0.0).flatten(1).max(dim=1).values
    has = ring.flatten(1).any(dim=1)
    return (peak / median)[has]
