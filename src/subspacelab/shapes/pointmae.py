"""Point-MAE (Pang et al., arXiv:2203.06604) and its Gaussian-splat form, Gaussian-MAE (Ma et
al., ShapeSplat, arXiv 2408.10906), in miniature.

A cloud (B, N, C) has xyz in its first three columns and any further per-point attributes
(a splat's opacity, scale, rotation, colour) after them. It is cut into G groups: centres by
farthest-point sampling and their k nearest neighbours, both in the *grouping space* — xyz
(Point-MAE, Gaussian-MAE's E(xyz)) or every column (Gaussian-MAE's feature-space grouping);
members keep their xyz relative to the centre, so position stays in the token. A mini-PointNet
embeds each group (max-pooled, or the learned soft *splats pooling*), a transformer encodes the
visible tokens (60 % masked at random) with a positional embedding of the centres added before
every block, and a light decoder with mask tokens reconstructs each masked group: Chamfer-L2 on
xyz plus, for the other attributes, the squared error to the nearest (in xyz) member both ways.
Heads: classification on mean+max pooled tokens, segmentation by feature propagation from the
centres to every point (3-NN inverse distance) with the object's class as input.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from subspacelab.shapes.chamfer import chamfer

POOLINGS = ("max", "splats")
GROUP_SPACES = ("xyz", "feature")


def fps(x: Tensor, m: int, start: Tensor | None = None) -> Tensor:
    """(B, m) indices of ``m`` farthest points of each cloud ``x`` (B, N, D), starting at
    ``start`` (B,) or at point 0 (as Point-MAE's CUDA kernel does)."""
    b, n, _ = x.shape
    if not 1 <= m <= n:
        raise ValueError(f"fps needs 1 <= m <= N ({n}), got {m}")
    last = torch.zeros(b, dtype=torch.long, device=x.device) if start is None else start
    idx = torch.zeros(b, m, dtype=torch.long, device=x.device)
    idx[:, 0] = last
    dist = torch.full((b, n), float("inf"), device=x.device, dtype=x.dtype)
    rows = torch.arange(b, device=x.device)
    for i in range(1, m):
        d = (x - x[rows, last][:, None]).pow(2).sum(-1)
        dist = torch.minimum(dist, d)
        last = dist.argmax(1)
        idx[:, i] = last
    return idx


def knn(query: Tensor, x: Tensor, k: int) -> Tensor:
    """(B, M, k) indices of the ``k`` nearest points of ``x`` (B, N, D) to each ``query``
    (B, M, D), nearest first."""
    if not 1 <= k <= x.shape[1]:
        raise ValueError(f"knn needs 1 <= k <= N ({x.shape[1]}), got {k}")
    d = torch.cdist(query, x, compute_mode="donot_use_mm_for_euclid_dist")
    return d.topk(k, dim=2, largest=False).indices


def gather(x: Tensor, idx: Tensor) -> Tensor:
    """Rows of ``x`` (B, N, C) at ``idx`` (B, ...) -> (B, ..., C)."""
    flat = idx.reshape(idx.shape[0], -1)
    out = torch.gather(x, 1, flat[..., None].expand(-1, -1, x.shape[-1]))
    return out.reshape(*idx.shape, x.shape[-1])


def group(x: Tensor, groups: int, size: int, space: str) -> tuple[Tensor, Tensor, Tensor]:
    """Centres' xyz (B, G, 3), members (B, G, k, C) with xyz relative to their centre, and the
    members' indices (B, G, k); FPS and kNN in ``space`` ("xyz" or "feature": all columns)."""
    if space not in GROUP_SPACES:
        raise ValueError(f"unknown grouping space {space!r}; allowed: {GROUP_SPACES}")
    where = x[..., :3] if space == "xyz" else x
    centres = fps(where, groups)
    members = knn(gather(where, centres), where, size)
    centre_xyz = gather(x[..., :3], centres)
    grouped = gather(x, members)
    rel = grouped[..., :3] - centre_xyz[:, :, None]
    return centre_xyz, torch.cat([rel, grouped[..., 3:]], -1), members


class TokenEmbed(nn.Module):
    """Point-MAE's mini-PointNet on each group's members (B, G, k, C) -> (B, G, dim): per-member
    MLP, pooled, the pool concatenated back to every member, a second MLP, pooled again.
    ``pooling``: "max" or "splats" (softmax weights over the members from a learned score per
    channel, Gaussian-MAE's splats pooling). LayerNorm stands in for Point-MAE's BatchNorm."""

    def __init__(self, in_dim: int, dim: int, pooling: str) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; allowed: {POOLINGS}")
        hidden = max(dim, 32)
        self.pooling = pooling
        self.first = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.ReLU(), nn.Linear(hidden, hidden)
        )
        self.second = nn.Sequential(
            nn.Linear(2 * hidden, 2 * hidden), nn.LayerNorm(2 * hidden), nn.ReLU(),
            nn.Linear(2 * hidden, dim),
        )  # fmt: skip
        self.scores = (
            nn.ModuleList([nn.Linear(hidden, hidden), nn.Linear(dim, dim)])
            if pooling == "splats"
            else None
        )

    def _pool(self, f: Tensor, level: int) -> Tensor:
        if self.scores is None:
            return f.max(dim=2).values
        w = torch.softmax(self.scores[level](f), dim=2)
        return (w * f).sum(dim=2)

    def forward(self, members: Tensor) -> Tensor:
        """Tokens of the groups."""
        f = self.first(members)
        g = self._pool(f, 0)
        f = self.second(torch.cat([f, g[:, :, None].expand_as(f)], -1))
        return self._pool(f, 1)


def _blocks(dim: int, heads: int, depth: int) -> nn.ModuleList:
    return nn.ModuleList(
        nn.TransformerEncoderLayer(
            dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        for _ in range(depth)
    )


def _pos(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, dim))


class GaussianMAE(nn.Module):
    """The masked autoencoder over groups of points or splats (see the module docstring);
    ``in_dim`` columns per point (xyz first); ``seed`` seeds the masks' own generator."""

    def __init__(
        self,
        in_dim: int,
        groups: int,
        group_size: int,
        dim: int,
        depth: int,
        heads: int,
        decoder_depth: int,
        mask_ratio: float,
        pooling: str,
        group_space: str,
        seed: int,
    ) -> None:
        super().__init__()
        if in_dim < 3 or not 0 < mask_ratio < 1 or group_space not in GROUP_SPACES:
            raise ValueError(
                f"need in_dim >= 3 (xyz first), 0 < mask_ratio < 1 and group_space in "
                f"{GROUP_SPACES}; got {in_dim}, {mask_ratio}, {group_space!r}"
            )
        self.in_dim, self.groups, self.group_size = in_dim, groups, group_size
        self.mask_ratio, self.group_space, self.dim = mask_ratio, group_space, dim
        self.embed = TokenEmbed(in_dim, dim, pooling)
        self.pos, self.blocks, self.norm = _pos(dim), _blocks(dim, heads, depth), nn.LayerNorm(dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.dec_pos, self.dec_blocks = _pos(dim), _blocks(dim, heads, decoder_depth)
        self.dec_norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, group_size * in_dim)
        self.gen = torch.Generator().manual_seed(seed)

    def _check(self, x: Tensor) -> None:
        if x.dim() != 3 or x.shape[2] != self.in_dim:
            raise ValueError(f"expected clouds (B, N, {self.in_dim}), got {tuple(x.shape)}")

    @staticmethod
    def _run(blocks: nn.ModuleList, h: Tensor, pos: Tensor) -> Tensor:
        for blk in blocks:
            h = blk(h + pos)
        return h

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Centres' xyz (B, G, 3) and every group's encoded token (B, G, dim), unmasked."""
        self._check(x)
        centres, members, _ = group(x, self.groups, self.group_size, self.group_space)
        h = self._run(self.blocks, self.embed(members), self.pos(centres))
        return centres, self.norm(h)

    def loss(self, x: Tensor) -> Tensor:
        """The pretraining loss on a batch: Chamfer-L2 of the masked groups' relative xyz plus
        the nearest-member squared error of their other attributes."""
        self._check(x)
        centres, members, _ = group(x, self.groups, self.group_size, self.group_space)
        b, g = centres.shape[:2]
        n_mask = max(1, min(g - 1, round(self.mask_ratio * g)))
        order = torch.rand(b, g, generator=self.gen).argsort(1).to(x.device)
        vis, masked = order[:, n_mask:], order[:, :n_mask]
        tokens = self.embed(members)
        h = self.norm(self._run(self.blocks, gather(tokens, vis), self.pos(gather(centres, vis))))
        pos = self.dec_pos(torch.cat([gather(centres, vis), gather(centres, masked)], 1))
        seq = torch.cat([h, self.mask_token.expand(b, n_mask, -1)], 1)
        out = self.dec_norm(self._run(self.dec_blocks, seq, pos))[:, -n_mask:]
        pred = self.head(out).reshape(b * n_mask, self.group_size, self.in_dim)
        target = gather(members.flatten(-2), masked).reshape(pred.shape)
        return reconstruction_loss(pred, target)


def reconstruction_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean over groups (n, k, C) of Chamfer-L2 on xyz plus, if C > 3, the squared error of
    the other attributes against the xyz-nearest member, both ways."""
    loss = chamfer(pred[..., :3], target[..., :3])
    if pred.shape[-1] > 3:
        d = torch.cdist(pred[..., :3], target[..., :3])
        to_t = gather(target[..., 3:], d.argmin(2))
        to_p = gather(pred[..., 3:], d.argmin(1))
        loss = loss + (pred[..., 3:] - to_t).pow(2).sum(-1).mean(1)
        loss = loss + (target[..., 3:] - to_p).pow(2).sum(-1).mean(1)
    return loss.mean()


class Classifier(nn.Module):
    """The pretrained encoder with a head on mean+max pooled tokens."""

    def __init__(self, backbone: GaussianMAE, n_classes: int) -> None:
        super().__init__()
        d = backbone.dim
        self.backbone = backbone
        self.head = nn.Sequential(nn.Linear(2 * d, d), nn.LayerNorm(d), nn.GELU(),
                                  nn.Linear(d, n_classes))  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        """Class logits (B, n_classes)."""
        _, h = self.backbone.encode(x)
        return self.head(torch.cat([h.mean(1), h.max(1).values], -1))

    def loss(self, x: Tensor, y: Tensor) -> Tensor:
        """Cross-entropy."""
        return F.cross_entropy(self(x), y)


class Segmenter(nn.Module):
    """The pretrained encoder with a per-point head: tokens propagated from the centres to each
    point (3-NN inverse-distance weights in xyz), the point's own attributes, the global
    max-pooled token and the object's class, through an MLP to part logits."""

    def __init__(self, backbone: GaussianMAE, n_parts: int, n_classes: int) -> None:
        super().__init__()
        d = backbone.dim
        self.backbone, self.n_classes = backbone, n_classes
        self.point = nn.Linear(backbone.in_dim, d)
        self.cls = nn.Linear(n_classes, d)
        self.head = nn.Sequential(nn.Linear(4 * d, d), nn.LayerNorm(d), nn.GELU(),
                                  nn.Linear(d, n_parts))  # fmt: skip

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Part logits (B, N, n_parts) of every point of ``x`` given the classes ``y``."""
        centres, h = self.backbone.encode(x)
        d = torch.cdist(x[..., :3], centres)
        near = d.topk(min(3, centres.shape[1]), dim=2, largest=False)
        w = 1.0 / (near.values + 1e-8)
        w = w / w.sum(-1, keepdim=True)
        interp = (gather(h, near.indices) * w[..., None]).sum(2)
        glob = h.max(1).values[:, None].expand_as(interp)
        cls = self.cls(F.one_hot(y, self.n_classes).to(x.dtype))[:, None].expand_as(interp)
        return self.head(torch.cat([interp, self.point(x), glob, cls], -1))

    def loss(self, x: Tensor, y: Tensor, parts: Tensor) -> Tensor:
        """Per-point cross-entropy."""
        return F.cross_entropy(self(x, y).flatten(0, 1), parts.flatten())
