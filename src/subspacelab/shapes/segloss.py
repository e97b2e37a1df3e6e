"""Point-cloud segmentation losses and scores: Lovász-softmax, IoU, and the cross-scene
cluster-contrast loss of Feng et al. (ICCV 2023, arXiv:2307.14605).

* :func:`lovasz_softmax` — the convex Lovász extension of the Jaccard loss (Berman et al.,
  arXiv:1705.08790), averaged over the classes present;
* :func:`confusion`, :func:`iou` — the confusion matrix and per-class IoU (NaN for a class
  absent from both prediction and truth), whose nan-mean is the mIoU;
* :func:`sinkhorn` — the equipartition (Sinkhorn-Knopp) assignment of the paper's online
  clustering, in float64 with an iteration cap (spec §9);
* :class:`ClusterContrast` — K sub-centroids per class (EMA-updated, unit norm), hard/easy
  anchor sampling, Sinkhorn sub-class labels ŷ = c·K + k, and the three contrasts the paper
  sums (point vs sub-centroids, point vs points of the batch, point vs a per-sub-class memory
  queue that carries features across scenes and batches).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def lovasz_grad(gt_sorted: Tensor) -> Tensor:
    """The gradient of the Lovász extension of the Jaccard loss at errors sorted decreasingly
    (``gt_sorted``: the 0/1 truth in that order)."""
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1.0 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if len(gt_sorted) > 1:
        jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


def lovasz_softmax(probs: Tensor, labels: Tensor, ignore: int | None = None) -> Tensor:
    """Lovász-softmax of class probabilities ``probs`` (P, C) against ``labels`` (P,), averaged
    over the classes present in ``labels``; points labelled ``ignore`` are left out. 0 on a
    perfect (one-hot, correct) prediction."""
    if probs.dim() != 2 or labels.shape != probs.shape[:1]:
        raise ValueError(f"want probs (P, C) and labels (P,), got {probs.shape}, {labels.shape}")
    if ignore is not None:
        keep = labels != ignore
        probs, labels = probs[keep], labels[keep]
    losses = []
    for c in labels.unique():
        fg = (labels == c).to(probs.dtype)
        errors = (fg - probs[:, c]).abs()
        errors_sorted, perm = errors.sort(descending=True)
        losses.append(errors_sorted @ lovasz_grad(fg[perm]))
    if not losses:
        return probs.sum() * 0.0
    return torch.stack(losses).mean()


def confusion(pred: Tensor, labels: Tensor, n_classes: int, ignore: int | None = None) -> Tensor:
    """The (C, C) confusion matrix, rows the truth and columns the prediction (int64)."""
    if pred.shape != labels.shape:
        raise ValueError(f"pred and labels differ in shape: {pred.shape} vs {labels.shape}")
    keep = labels != ignore if ignore is not None else torch.ones_like(labels, dtype=torch.bool)
    bad = (labels[keep] < 0) | (labels[keep] >= n_classes) | (pred[keep] < 0)
    if bool(bad.any()) or bool((pred[keep] >= n_classes).any()):
        raise ValueError(f"labels and predictions must lie in [0, {n_classes})")
    flat = labels[keep].long() * n_classes + pred[keep].long()
    return torch.bincount(flat, minlength=n_classes * n_classes).view(n_classes, n_classes)


def iou(conf: Tensor) -> Tensor:
    """Per-class IoU from a confusion matrix: TP / (TP + FP + FN); NaN where the class is in
    neither truth nor prediction. ``iou(conf).nanmean()`` is the mIoU."""
    tp = conf.diag().double()
    denom = conf.sum(0).double() + conf.sum(1).double() - tp
    return torch.where(denom > 0, tp / denom.clamp(min=1), torch.full_like(tp, float("nan")))


def sinkhorn(scores: Tensor, power: float, tol: float, max_iter: int) -> Tensor:
    """Equipartition assignment of N points to K clusters (the paper's online clustering):
    Sinkhorn-Knopp on ``scores ** power`` ((N, K), non-negative) with uniform marginals, in
    float64, until the column scaling changes by less than ``tol`` (relative) or ``max_iter``
    iterations; returns the hard labels (N,) (argmax of the balanced plan)."""
    p = scores.detach().double().clamp(min=1e-300).pow(power).T  # K x N
    p = p / p.max()
    k, n = p.shape
    c = torch.ones(n, dtype=p.dtype, device=p.device) / n
    for _ in range(max_iter):
        r = (1.0 / k) / (p @ c).clamp(min=1e-300)
        c_new = (1.0 / n) / (r @ p).clamp(min=1e-300)
        err = ((c_new / c) - 1.0).abs().nansum()
        c = c_new
        if err < tol:
            break
    plan = p * r[:, None] * c[None, :]
    return plan.argmax(0)


def _contrast(
    anchors: Tensor, keys: Tensor, positive: Tensor, tau: float, exclude: Tensor | None
) -> Tensor:
    """The paper's supervised contrast: for each anchor and each positive key,
    −log(e^{s⁺} / (e^{s⁺} + Σ_neg e^{s⁻})), s = a·k/τ, averaged over positives then over the
    anchors that have one. ``positive`` (A, M) marks positives; ``exclude`` (A, M) drops
    pairs from both (an anchor against itself)."""
    logits = anchors @ keys.T / tau
    logits = logits - logits.max(1, keepdim=True).values.detach()
    if exclude is not None:
        positive = positive & ~exclude
    negative = ~positive if exclude is None else ~positive & ~exclude
    neg_sum = (logits.exp() * negative).sum(1, keepdim=True)
    log_prob = logits - torch.log(logits.exp() + neg_sum)
    n_pos = positive.sum(1)
    has = n_pos > 0
    if not bool(has.any()):
        return anchors.sum() * 0.0
    mean_pos = (log_prob * positive).sum(1)[has] / n_pos[has]
    return -mean_pos.mean()


class ClusterContrast(nn.Module):
    """The cluster-contrast loss with ``k`` sub-clusters per class (arXiv 2307.14605 §3).

    Buffers: sub-centroids (C, K, D) (random unit vectors at start, EMA ``momentum``), a memory
    queue of ``queue`` features per sub-class (C·K, Q, D) filled ``enqueue`` at a time, and the
    queue's fill counts. ``forward(emb, labels, pred)`` samples at most ``max_samples`` anchors
    over the classes of the batch (≤ ``max_views`` per class, half hard: predicted wrong, half
    easy), labels them by Sinkhorn within their class, updates centroids and queue (training
    mode only) and returns 0.5 · (point-vs-queue + point-vs-point + point-vs-sub-centroid),
    each scaled by τ / τ_base. Anchor sampling uses the module's own generator (``seed``), so
    members trained side by side draw independently of each other.
    """

    def __init__(
        self,
        n_classes: int,
        k: int,
        dim: int,
        *,
        momentum: float,
        tau: float,
        tau_base: float,
        power: float,
        max_samples: int,
        max_views: int,
        queue: int,
        enqueue: int,
        sinkhorn_tol: float,
        sinkhorn_iter: int,
        seed: int,
        ignore: int | None = None,
    ) -> None:
        super().__init__()
        if k < 1 or n_classes < 1 or dim < 1:
            raise ValueError(f"need k, n_classes, dim >= 1, got {k}, {n_classes}, {dim}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        gen = torch.Generator().manual_seed(seed)
        protos = F.normalize(torch.randn(n_classes, k, dim, generator=gen), dim=-1)
        self.register_buffer("protos", protos)
        self.register_buffer("queue", torch.zeros(n_classes * k, queue, dim))
        self.register_buffer("filled", torch.zeros(n_classes * k, dtype=torch.long))
        self.register_buffer("cursor", torch.zeros(n_classes * k, dtype=torch.long))
        self.n_classes, self.k, self.momentum = n_classes, k, momentum
        self.tau, self.scale, self.power = tau, tau / tau_base, power
        self.max_samples, self.max_views = max_samples, max_views
        self.enqueue, self.tol, self.max_iter = enqueue, sinkhorn_tol, sinkhorn_iter
        self.ignore = ignore
        self.gen = gen

    def assign(self, emb: Tensor, labels: Tensor) -> Tensor:
        """Sub-cluster labels (within each point's class, by Sinkhorn on softmax(x P_cᵀ))."""
        out = torch.zeros_like(labels)
        for c in labels.unique().tolist():
            m = labels == c
            sim = F.softmax(emb[m].detach() @ self.protos[c].T, dim=1)
            out[m] = sinkhorn(sim, self.power, self.tol, self.max_iter).to(labels.dtype)
        return out

    def nearest(self, emb: Tensor, labels: Tensor) -> Tensor:
        """Each point's nearest sub-centroid of its own class (test-time sub-clusters)."""
        return torch.einsum("nd,nkd->nk", emb, self.protos[labels]).argmax(1)

    def _sample(self, labels: Tensor, pred: Tensor) -> Tensor:
        """Anchor indices: per class ≤ n_view, half hard and half easy (topped up from the
        other kind when one runs short)."""
        classes = labels.unique()
        if self.ignore is not None:
            classes = classes[classes != self.ignore]
        if len(classes) == 0:
            return labels.new_zeros(0)
        n_view = min(self.max_views, max(1, self.max_samples // len(classes)))
        picked = []
        for c in classes.tolist():
            hard = ((labels == c) & (pred != c)).nonzero().squeeze(1)
            easy = ((labels == c) & (pred == c)).nonzero().squeeze(1)
            n_hard = min(len(hard), n_view // 2)
            n_easy = min(len(easy), n_view - n_hard)
            n_hard = min(len(hard), n_view - n_easy)
            picked.append(hard[torch.randperm(len(hard), generator=self.gen)[:n_hard]])
            picked.append(easy[torch.randperm(len(easy), generator=self.gen)[:n_easy]])
        return torch.cat(picked)

    def forward(self, emb: Tensor, labels: Tensor, pred: Tensor) -> Tensor:
        """The loss on unit-norm embeddings ``emb`` (P, D), truth and predictions (P,)."""
        idx = self._sample(labels, pred)
        if len(idx) < 2:
            return emb.sum() * 0.0
        x, y = emb[idx], labels[idx]
        sub = self.assign(x, y)
        fine = y * self.k + sub
        centroids = self.protos.reshape(-1, self.protos.shape[-1]).clone()  # updated below
        # point vs sub-centroids: its own is the positive, all others (every class) negatives
        one_hot = F.one_hot(fine, len(centroids)).bool()
        l_centroid = _contrast(x, centroids, one_hot, self.tau, None)
        # point vs point in the batch: anchors sharing ŷ are positives
        same = fine[:, None] == fine[None, :]
        eye = torch.eye(len(fine), dtype=torch.bool, device=fine.device)
        l_point = _contrast(x, x, same, self.tau, eye)
        # point vs the memory queue (features of earlier batches and scenes)
        slots = torch.arange(self.queue.shape[1], device=fine.device)
        valid = (slots[None, :] < self.filled[:, None]).reshape(-1)
        keys = self.queue.reshape(-1, self.queue.shape[-1])[valid]
        owner = torch.arange(len(self.queue), device=fine.device).repeat_interleave(
            self.queue.shape[1]
        )[valid]
        l_queue = (
            _contrast(x, keys, fine[:, None] == owner[None, :], self.tau, None)
            if len(keys)
            else x.sum() * 0.0
        )
        if self.training:
            self._update(x.detach(), fine)
        return 0.5 * self.scale * (l_queue + l_point + l_centroid)

    @torch.no_grad()
    def _update(self, x: Tensor, fine: Tensor) -> None:
        """EMA of each used sub-centroid towards its points' mean (re-normalised); enqueue."""
        for f in fine.unique().tolist():
            m = fine == f
            c, k = f // self.k, f % self.k
            mean = x[m].mean(0)
            self.protos[c, k] = F.normalize(
                self.momentum * self.protos[c, k] + (1 - self.momentum) * mean, dim=0
            )
            new = x[m][: self.enqueue]
            size = self.queue.shape[1]
            pos = (self.cursor[f] + torch.arange(len(new), device=x.device)) % size
            self.queue[f, pos] = new
            self.cursor[f] = (self.cursor[f] + len(new)) % size
            self.filled[f] = torch.clamp(self.filled[f] + len(new), max=size)
