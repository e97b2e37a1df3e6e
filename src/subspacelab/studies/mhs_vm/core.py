"""The miniature VM-UNet of mhs_vm (Ji, arXiv 2406.05992): a two-level U-Net of visual state-space
blocks whose token mixer is VM-UNet's SS2D or MHS-VM's multi-head scan (``subspacelab.modules.
scan``), the BCE + Dice loss, paired flips/rotations of image and mask, and the segmentation
metrics (over all test pixels, as VM-UNet's confusion matrix), tested in tests/studies/
test_mhs_vm.py."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from subspacelab.modules.scan import SS2D, MultiHeadScan

ARMS = ("ss2d", "mhs_sum", "mhs_gfu")  # VM-UNet's SS2D, MHS h heads summed, MHS h heads + GFU


class DropPath(nn.Module):
    """Stochastic depth: drops the residual branch per sample with probability ``p`` (train)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand(x.shape[0], *([1] * (x.dim() - 1)), dtype=x.dtype) >= self.p
        return x * keep / (1.0 - self.p)


class VSSBlock(nn.Module):
    """x + DropPath(mixer(LayerNorm(x))) on channel-last (b, H, W, D) tokens."""

    def __init__(self, mixer: nn.Module, d: int, drop_path: float) -> None:
        super().__init__()
        self.norm, self.mixer, self.drop = nn.LayerNorm(d), mixer, DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.drop(self.mixer(self.norm(x)))


def mixer(
    arm: str, d: int, side: int, d_state: int, expand: int, heads: int, gfu_t: float
) -> nn.Module:
    """The token mixer of ``arm`` at width ``d`` on a ``side``×``side`` grid."""
    if arm == "ss2d":
        return SS2D(d, d_state, expand, side, side)
    if arm == "mhs_sum":
        return MultiHeadScan(d, d_state, heads, None, side, side)
    if arm == "mhs_gfu":
        return MultiHeadScan(d, d_state, heads, gfu_t, side, side)
    raise ValueError(f"unknown arm {arm!r}; expected one of {ARMS}")


class VMUNet(nn.Module):
    """VM-UNet (Ruan & Xiang) with a chosen token mixer: patch embedding (patch p, dims[0]) ->
    per level ``enc_depths[i]`` blocks then patch merging (2×2 -> dims[i+1]) | from the
    bottleneck up, patch expanding (dims[i+1] -> dims[i], 2×) + the encoder's skip, then
    ``dec_depths`` blocks -> final ×p expanding -> 1×1 conv to one logit per pixel. Drop-path
    rates rise linearly to ``drop_path`` over the encoder's blocks and fall back over the
    decoder's (VM-UNet's)."""

    def __init__(
        self,
        arm: str,
        image: int,
        patch: int,
        dims: list[int],
        enc_depths: list[int],
        dec_depths: list[int],
        d_state: int,
        expand: int,
        heads: int,
        gfu_t: float,
        drop_path: float,
    ) -> None:
        super().__init__()
        levels = len(dims)
        if image % (patch * 2 ** (levels - 1)):
            raise ValueError(f"image side {image} must be divisible by patch·2^(levels−1)")
        sides = [image // patch // 2**i for i in range(levels)]
        self.patch = patch
        self.embed = nn.Conv2d(3, dims[0], patch, stride=patch)
        self.embed_norm = nn.LayerNorm(dims[0])
        enc_dpr = torch.linspace(0, drop_path, sum(enc_depths)).tolist()
        dec_dpr = torch.linspace(0, drop_path, sum(dec_depths)).flip(0).tolist()

        def stage(i: int, depth: int, rates: list[float]) -> nn.Sequential:
            return nn.Sequential(
                *[
                    VSSBlock(
                        mixer(arm, dims[i], sides[i], d_state, expand, heads, gfu_t), dims[i], r
                    )
                    for r in rates[:depth]
                ]
            )

        self.enc, self.merge_norm, self.merge = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        k = 0
        for i, depth in enumerate(enc_depths):
            self.enc.append(stage(i, depth, enc_dpr[k:]))
            k += depth
            if i < levels - 1:
                self.merge_norm.append(nn.LayerNorm(4 * dims[i]))
                self.merge.append(nn.Linear(4 * dims[i], dims[i + 1], bias=False))
        self.dec, self.expand, self.expand_norm = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        k = 0
        for j, depth in enumerate(dec_depths):  # from the bottleneck up
            i = levels - 1 - j
            if i < levels - 1:
                self.expand.append(nn.Linear(dims[i + 1], 4 * dims[i], bias=False))
                self.expand_norm.append(nn.LayerNorm(dims[i]))
            self.dec.append(stage(i, depth, dec_dpr[k:]))
            k += depth
        self.final = nn.Linear(dims[0], patch * patch * (dims[0] // 4), bias=False)
        self.final_norm = nn.LayerNorm(dims[0] // 4)
        self.head = nn.Conv2d(dims[0] // 4, 1, 1)

    @staticmethod
    def _unpatch(x: Tensor, p: int) -> Tensor:
        """(b, h, w, p·p·c) -> (b, p·h, p·w, c)."""
        b, h, w, pc = x.shape
        c = pc // (p * p)
        return x.view(b, h, w, p, p, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h * p, w * p, c)

    def forward(self, img: Tensor) -> Tensor:
        """(b, 3, S, S) images -> (b, S, S) logits."""
        x = self.embed_norm(self.embed(img).permute(0, 2, 3, 1))
        skips = []
        for i, blocks in enumerate(self.enc):
            x = blocks(x)
            skips.append(x)
            if i < len(self.merge):
                b, h, w, d = x.shape
                x = x.view(b, h // 2, 2, w // 2, 2, d).permute(0, 1, 3, 4, 2, 5)
                x = self.merge[i](self.merge_norm[i](x.reshape(b, h // 2, w // 2, 4 * d)))
        for j, blocks in enumerate(self.dec):
            if j > 0:
                up = self.expand_norm[j - 1](self._unpatch(self.expand[j - 1](x), 2))
                x = up + skips[len(self.enc) - 1 - j]
            x = blocks(x)
        out = self.final_norm(self._unpatch(self.final(x), self.patch))
        return self.head(out.permute(0, 3, 1, 2)).squeeze(1)


def bce_dice(logits: Tensor, mask: Tensor) -> Tensor:
    """VM-UNet's BceDiceLoss (weights 1:1): BCE on the probabilities + 1 − Dice (smooth 1) per
    image, averaged over the batch."""
    prob = torch.sigmoid(logits)
    bce = F.binary_cross_entropy_with_logits(logits, mask)
    p, m = prob.flatten(1), mask.flatten(1)
    dice = (2 * (p * m).sum(1) + 1) / (p.sum(1) + m.sum(1) + 1)
    return bce + (1 - dice).mean()


def augment(batch: Tensor, gen: torch.Generator) -> Tensor:
    """Random horizontal and vertical flips (p = 0.5 each) and a rotation by an angle uniform in
    [0°, 360°) (nearest neighbour, zero fill), the same per sample on every channel: images and
    masks travel stacked as (b, 4, S, S)."""
    b = batch.shape[0]
    flips = torch.rand(b, 2, generator=gen) < 0.5
    out = torch.where(flips[:, 0, None, None, None], batch.flip(-1), batch)
    out = torch.where(flips[:, 1, None, None, None], out.flip(-2), out)
    theta = torch.rand(b, generator=gen) * 2 * math.pi
    cos, sin = torch.cos(theta), torch.sin(theta)
    mat = torch.stack(
        [torch.stack([cos, -sin, torch.zeros(b)], 1), torch.stack([sin, cos, torch.zeros(b)], 1)], 1
    )
    grid = F.affine_grid(mat, list(out.shape), align_corners=False)
    return F.grid_sample(out, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def seg_metrics(prob: Tensor, mask: Tensor, threshold: float) -> dict[str, float]:
    """mIoU (VM-UNet's: foreground IoU), DSC, accuracy, sensitivity and specificity of the
    thresholded probabilities over all pixels (one confusion matrix)."""
    pred, gt = prob >= threshold, mask >= 0.5
    tp = float((pred & gt).sum())
    fp = float((pred & ~gt).sum())
    fn = float((~pred & gt).sum())
    tn = float((~pred & ~gt).sum())
    return {
        "miou": tp / max(tp + fp + fn, 1.0),
        "dsc": 2 * tp / max(2 * tp + fp + fn, 1.0),
        "acc": (tp + tn) / max(tp + tn + fp + fn, 1.0),
        "sens": tp / max(tp + fn, 1.0),
        "spec": tn / max(tn + fp, 1.0),
    }
