"""Attention-based dynamic subspace learners (Adiga V. S., Dolz, Lombaert, arXiv:2206.09068).

The pieces of DSL and of its fixed-K parent, Divide and Conquer the Embedding Space (DivConq,
Sanakoyeu et al., CVPR 2019), written once and independent of any backbone:

* :class:`AttentionEmbedder` — a backbone's feature map F, the spatial attention head
  A = σ(conv3×3(ReLU(conv3×3(ReLU(conv3×3(F)))))), F' = F ⊙ A, average pooling, dropout and a
  linear embedding; the embedding is split into K *learners*, contiguous blocks ``bounds``
  (``[0, b_1, …, D]``), each L2-normalised on its own (:func:`normalise_blocks`);
* :func:`margin_loss` — the margin loss with distance-weighted negative sampling (Wu et al.,
  2017): l = [α + y(D_ap − β)]_+ over positive pairs and one sampled negative per pair;
* :class:`SubspaceLearners` — the training schedule of one model: every ``recluster`` epochs
  k-means (K clusters) on the full train embeddings, cluster k's mini-batches train only learner
  k; DSL starts at K = 1 and grows K by the dynamic split rule (:func:`plateaued`,
  :func:`taylor_importance`, :func:`split_last_learner`); DivConq keeps K fixed; from
  ``finetune`` on, K = 1 and the whole embedding trains jointly;
* evaluation: :func:`kmeans_nmi`, :func:`recall_at_k`, :func:`grad_cam`, :func:`map_to_mask`
  and :func:`dice` (attention maps or Grad-CAM maps as proxy masks against ground truth).

No I/O and no Lightning: a study wraps :meth:`SubspaceLearners.loss` as a joint-training member
and calls :meth:`SubspaceLearners.end_epoch` from an epoch-end callback.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from torch import Tensor, nn

from subspacelab.clustering.metrics import evaluate

MODES = ("dynamic", "fixed")


class AttentionHead(nn.Module):
    """DSL's spatial attention: three 3×3 convolutions ``channels[0] → … → 1`` with ReLUs between
    them and a sigmoid at the end (2048→256→64→1 on ResNet-50; 64→8→2→1 in the miniature)."""

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        widths = [*channels, 1]
        if len(widths) < 2 or any(c < 1 for c in widths):
            raise ValueError(f"attention channels must be positive, got {list(channels)}")
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(itertools.pairwise(widths)):
            layers.append(nn.Conv2d(cin, cout, 3, padding=1))
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, f: Tensor) -> Tensor:
        """The attention map A (b, 1, h, w) in (0, 1)."""
        return torch.sigmoid(self.net(f))


class AttentionEmbedder(nn.Module):
    """Backbone → F, A = head(F), embedding = linear(dropout(avgpool(F ⊙ A))), plus the learnable
    margin-loss boundary β (one scalar, as the spec's ``β = 1.2 learnable``)."""

    def __init__(
        self,
        backbone: nn.Module,
        channels: int,
        head: Sequence[int],
        dim: int,
        dropout: float,
        beta: float,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.attention = AttentionHead([channels, *head])
        self.drop = nn.Dropout(dropout)
        self.embed = nn.Linear(channels, dim)
        self.beta = nn.Parameter(torch.tensor(float(beta)))

    def features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The feature map F and the attention map A of ``x``."""
        f = self.backbone(x)
        return f, self.attention(f)

    def forward(self, x: Tensor) -> Tensor:
        """The raw (un-normalised) embedding (b, D)."""
        f, a = self.features(x)
        return self.embed(self.drop((f * a).mean(dim=(2, 3))))


def check_bounds(bounds: Sequence[int], dim: int) -> None:
    """Raise ``ValueError`` unless ``bounds`` is ``[0, …, dim]`` strictly increasing."""
    b = list(bounds)
    if len(b) < 2 or b[0] != 0 or b[-1] != dim or any(x >= y for x, y in itertools.pairwise(b)):
        raise ValueError(f"learner bounds must increase strictly from 0 to {dim}, got {b}")


def even_bounds(dim: int, k: int) -> list[int]:
    """K contiguous learners of (nearly) equal size: DivConq's split of the embedding."""
    if not 1 <= k <= dim:
        raise ValueError(f"need 1 <= K <= dim ({dim}), got K={k}")
    return [round(i * dim / k) for i in range(k + 1)]


def normalise_blocks(emb: Tensor, bounds: Sequence[int]) -> Tensor:
    """Each learner's block of ``emb`` L2-normalised separately (the concatenation)."""
    check_bounds(bounds, emb.shape[1])
    blocks = [F.normalize(emb[:, lo:hi], dim=1) for lo, hi in itertools.pairwise(bounds)]
    return torch.cat(blocks, dim=1)


def margin_loss(
    emb: Tensor,
    labels: Tensor,
    beta: Tensor,
    margin: float,
    gen: torch.Generator,
    *,
    cutoff: float = 0.5,
    nonzero_cutoff: float = 1.4,
) -> Tensor:
    """Margin loss on L2-normalised ``emb`` (b, d) with distance-weighted negatives.

    For each ordered positive pair (a, p) one negative n is drawn with probability ∝ 1/q(D_an),
    q(D) ∝ D^(d−2) (1 − D²/4)^((d−3)/2) the density of distances between uniform points on the
    sphere (D clipped below at ``cutoff``, pairs beyond ``nonzero_cutoff`` never drawn), and
    l = [α + D_ap − β]_+ + [α − D_an + β]_+, averaged over the terms that are non-zero
    (Wu et al., "Sampling matters in deep embedding learning", 2017). A batch with no positive
    pair gives 0 (connected to the graph)."""
    b, d = emb.shape
    if labels.shape != (b,):
        raise ValueError(f"labels must be ({b},), got {tuple(labels.shape)}")
    dist = torch.cdist(emb, emb).clamp(min=1e-8)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(b, dtype=torch.bool, device=emb.device)
    pos = same & ~eye
    if not pos.any():
        return emb.sum() * 0.0
    with torch.no_grad():
        dc = dist.clamp(min=cutoff)
        log_w = (2.0 - d) * dc.log() - (d - 3) / 2.0 * (1.0 - 0.25 * dc**2).clamp(min=1e-8).log()
        allowed = ~same & (dist < nonzero_cutoff)
        log_w = log_w.masked_fill(~allowed, -math.inf)
        w = torch.exp(log_w - log_w.max(dim=1, keepdim=True).values.clamp(min=-1e30))
        w = torch.where(allowed, w, torch.zeros_like(w))
        anchors, positives = pos.nonzero(as_tuple=True)
        has_neg = w[anchors].sum(dim=1) > 0
        anchors, positives = anchors[has_neg], positives[has_neg]
        if anchors.numel() == 0:
            return emb.sum() * 0.0
        negatives = torch.multinomial(w[anchors].cpu(), 1, generator=gen).squeeze(1)
        negatives = negatives.to(emb.device)
    pos_loss = F.relu(margin + dist[anchors, positives] - beta)
    neg_loss = F.relu(margin - dist[anchors, negatives] + beta)
    active = ((pos_loss > 0).sum() + (neg_loss > 0).sum()).clamp(min=1)
    return (pos_loss.sum() + neg_loss.sum()) / active


def kmeans(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means labels of the rows of ``x`` (sklearn, 3 restarts, seeded)."""
    if not 1 <= k <= len(x):
        raise ValueError(f"k-means needs 1 <= k <= n ({len(x)}), got {k}")
    if k == 1:
        return np.zeros(len(x), dtype=np.int64)
    return KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(x).astype(np.int64)


def kmeans_nmi(emb: np.ndarray, labels: np.ndarray, k: int, seed: int) -> float:
    """NMI of the k-means clustering (k = number of classes) of ``emb`` against ``labels``."""
    return evaluate(labels, kmeans(emb, k, seed))["nmi"]


def recall_at_k(emb: np.ndarray, labels: np.ndarray, ks: Sequence[int]) -> dict[int, float]:
    """Recall@k: the share of queries with a same-class item among their k nearest neighbours
    (Euclidean, the query itself left out), every item a query of the rest."""
    x = np.asarray(emb, dtype=np.float64)
    y = np.asarray(labels)
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"need >= 2 items with one label each, got {len(x)} and {len(y)}")
    if any(not 1 <= k < len(x) for k in ks):
        raise ValueError(f"every k must be in [1, {len(x) - 1}], got {list(ks)}")
    sq = (x**2).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2 * x @ x.T
    np.fill_diagonal(d2, np.inf)
    order = np.argsort(d2, axis=1, kind="stable")[:, : max(ks)]
    hit = y[order] == y[:, None]
    return {k: float(hit[:, :k].any(axis=1).mean()) for k in ks}


def plateaued(history: Sequence[float], since: int, patience: int) -> bool:
    """DSL's trigger: validation NMI (one value per epoch, ``history``) has not improved for
    ``patience`` epochs since its best epoch, counting only epochs from ``since`` on (the last
    split or the start)."""
    if patience < 1:
        raise ValueError(f"patience must be >= 1, got {patience}")
    window = list(history[since:])
    if not window:
        return False
    best = int(np.argmax(window))  # first best epoch: ties do not restart the count
    return len(window) - 1 - best >= patience


def taylor_importance(acts: Sequence[Tensor], grads: Sequence[Tensor]) -> Tensor:
    """First-order Taylor importance of each neuron j over batches of its activation a_j and
    gradient ∂L/∂a_j (each (b, n)): s_j = |mean(a_j · ∂L/∂a_j)|, divided by ‖s‖, then min-max
    scaled to [0, 1] (all zeros when every neuron scores the same)."""
    if not acts or len(acts) != len(grads):
        raise ValueError("need one gradient batch per activation batch, at least one")
    prod = torch.cat([a * g for a, g in zip(acts, grads, strict=True)], dim=0)
    s = prod.mean(dim=0).abs()
    s = s / s.norm().clamp(min=1e-30)
    span = s.max() - s.min()
    return (s - s.min()) / span if span > 0 else torch.zeros_like(s)


def can_split(size: int, important: int, min_size: int, min_important: int) -> bool:
    """The spec's guard: the last learner has more than ``min_size`` neurons and at least
    ``min_important`` of them are important."""
    return size > min_size and important >= min_important


def split_last_learner(
    layer: nn.Linear,
    bounds: Sequence[int],
    important: Tensor,
    gen: torch.Generator,
    optimizer: torch.optim.Optimizer | None = None,
) -> list[int]:
    """Split the last learner ``[lo, hi)`` of ``layer``'s output rows: its ``important`` neurons
    (indices within the learner) move, weights and bias, to rows ``lo … lo+|I|−1`` (the learner
    it keeps), rows ``lo+|I| … hi−1`` are re-initialised (Xavier-uniform weights, zero bias) and
    become a new learner. The optimiser's per-row state (Adam moments, SGD momentum) follows the
    moved rows and is zeroed for the new ones. Returns the new bounds."""
    check_bounds(bounds, layer.out_features)
    lo, hi = bounds[-2], bounds[-1]
    keep = torch.as_tensor(important, dtype=torch.long).unique()
    if keep.numel() == 0 or keep.numel() >= hi - lo or keep.min() < 0 or keep.max() >= hi - lo:
        raise ValueError(f"important neurons must be a proper subset of 0..{hi - lo - 1}")
    cut = lo + keep.numel()
    rows = lo + keep
    bound = math.sqrt(6.0 / (layer.in_features + layer.out_features))
    fresh = (torch.rand(hi - cut, layer.in_features, generator=gen) * 2 - 1) * bound
    with torch.no_grad():
        params: list[tuple[Tensor, Tensor]] = [(layer.weight, fresh.to(layer.weight))]
        if layer.bias is not None:
            params.append((layer.bias, torch.zeros(hi - cut).to(layer.bias)))
        for p, new in params:
            p[lo:cut] = p[rows].clone()
            p[cut:hi] = new
            state = optimizer.state.get(p, {}) if optimizer is not None else {}
            for value in state.values():
                if isinstance(value, Tensor) and value.shape == p.shape:
                    value[lo:cut] = value[rows].clone()
                    value[cut:hi] = 0
    return [*bounds[:-1], cut, hi]


@dataclass(frozen=True)
class LearnerSchedule:
    """What one model's training does: ``mode`` ``"dynamic"`` (DSL, starts at K = 1) or
    ``"fixed"`` (DivConq with ``k`` learners); the margin α; batch size; epochs; re-clustering
    period; the epoch the joint fine-tuning starts; the split rule's patience, importance
    threshold, minimum last-learner size and minimum important neurons; the batches the Taylor
    scores average over; the number of classes (k-means for validation NMI)."""

    mode: str
    k: int
    margin: float
    batch: int
    epochs: int
    recluster: int
    finetune: int
    patience: int
    threshold: float
    min_size: int
    min_important: int
    taylor_batches: int
    n_classes: int

    def check(self, dim: int) -> None:
        """Raise ``ValueError`` naming the first field that cannot run."""
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not 1 <= self.k <= dim:
            raise ValueError(f"k must be in [1, {dim}], got {self.k}")
        if self.batch < 2 or self.epochs < 1 or self.recluster < 1 or self.patience < 1:
            raise ValueError("batch >= 2, epochs, recluster and patience >= 1")
        if not 0 <= self.finetune <= self.epochs:
            raise ValueError(f"finetune must be in [0, epochs={self.epochs}]")
        if not 0.0 < self.threshold < 1.0 or self.taylor_batches < 1 or self.n_classes < 2:
            raise ValueError("threshold in (0, 1), taylor_batches >= 1, n_classes >= 2")


@dataclass
class Event:
    """What happened at one epoch's end: the validation NMI (dynamic mode), K after the epoch,
    and whether a split was tried / made."""

    epoch: int
    nmi: float | None
    k: int
    tried: bool = False
    split: bool = False


@dataclass
class SubspaceLearners:
    """The DSL / DivConq schedule of one :class:`AttentionEmbedder`.

    ``loss()`` draws the next mini-batch (from the cluster of the learner whose turn it is, the
    learners taking turns step by step) and returns the margin loss of that learner's
    normalised block; ``end_epoch(epoch, optimizer)`` re-clusters, evaluates and splits."""

    model: AttentionEmbedder
    schedule: LearnerSchedule
    x: Tensor
    y: Tensor
    x_val: Tensor
    y_val: Tensor
    seed: int
    bounds: list[int] = field(init=False)
    events: list[Event] = field(init=False, default_factory=list)
    k_found: int = field(init=False)

    def __post_init__(self) -> None:
        dim = self.model.embed.out_features
        self.schedule.check(dim)
        if len(self.x) != len(self.y) or len(self.x_val) != len(self.y_val) or len(self.x) < 2:
            raise ValueError("train and validation images need one label each, >= 2 train")
        k = self.schedule.k if self.schedule.mode == "fixed" else 1
        self.bounds = even_bounds(dim, k)
        self.k_found = k
        self.gen = torch.Generator().manual_seed(self.seed)
        self.rng = np.random.default_rng(self.seed)
        self.clusters: list[np.ndarray] = [np.arange(len(self.x))]
        self.turn = 0
        self.nmi: list[float] = []
        self.since = 0
        self.joint = False
        if self.k > 1:  # DivConq clusters the initial embedding before its first epoch
            self.recluster()

    @property
    def k(self) -> int:
        """The current number of learners."""
        return len(self.bounds) - 1

    def _batch(self, pool: np.ndarray) -> np.ndarray:
        if len(pool) < 2:  # a near-empty cluster: draw from the whole train set
            pool = np.arange(len(self.x))
        size = min(self.schedule.batch, len(pool))
        return self.rng.choice(pool, size=size, replace=False)

    def loss(self) -> Tensor:
        """The margin loss of the learner whose turn it is, on a batch of its cluster."""
        k = self.turn % self.k
        self.turn += 1
        idx = torch.as_tensor(self._batch(self.clusters[k % len(self.clusters)]))
        emb = self.model(self.x[idx])[:, self.bounds[k] : self.bounds[k + 1]]
        return margin_loss(
            F.normalize(emb, dim=1), self.y[idx], self.model.beta, self.schedule.margin, self.gen
        )

    @torch.no_grad()
    def embed(self, x: Tensor, batch: int = 500) -> Tensor:
        """The raw embeddings of ``x`` in eval mode (the model's mode is restored)."""
        was = self.model.training
        self.model.eval()
        out = torch.cat([self.model(x[i : i + batch]) for i in range(0, len(x), batch)])
        self.model.train(was)
        return out

    def recluster(self) -> None:
        """k-means with K clusters on the full train embeddings (normalised as in evaluation);
        cluster k trains learner k."""
        emb = F.normalize(self.embed(self.x), dim=1).numpy()
        labels = kmeans(emb, self.k, self.seed + len(self.events))
        self.clusters = [np.flatnonzero(labels == c) for c in range(self.k)]

    def importance(self) -> Tensor:
        """Taylor scores of the last learner's neurons over ``taylor_batches`` train batches
        (eval mode, no parameter changes)."""
        lo, hi = self.bounds[-2], self.bounds[-1]
        acts, grads = [], []
        was = self.model.training
        self.model.eval()
        with torch.enable_grad():
            for _ in range(self.schedule.taylor_batches):
                idx = torch.as_tensor(self._batch(np.arange(len(self.x))))
                a = self.model(self.x[idx])[:, lo:hi]
                loss = margin_loss(
                    F.normalize(a, dim=1),
                    self.y[idx],
                    self.model.beta,
                    self.schedule.margin,
                    self.gen,
                )
                (g,) = torch.autograd.grad(loss, a, allow_unused=True)
                acts.append(a.detach())
                grads.append(torch.zeros_like(a) if g is None else g.detach())
        self.model.train(was)
        return taylor_importance(acts, grads)

    def end_epoch(self, epoch: int, optimizer: torch.optim.Optimizer | None) -> Event:
        """After epoch ``epoch`` (0-based): enter fine-tuning (K = 1) at ``finetune``; in dynamic
        mode before it, record validation NMI and split the last learner when it plateaued;
        re-cluster every ``recluster`` epochs and right after a split."""
        s = self.schedule
        nxt = epoch + 1
        if nxt >= s.finetune and not self.joint:
            self.joint = True
            self.k_found = self.k
            self.bounds = [0, self.bounds[-1]]
            self.clusters = [np.arange(len(self.x))]
            event = Event(epoch, None, self.k)
            self.events.append(event)
            return event
        event = Event(epoch, None, self.k)
        if s.mode == "dynamic" and not self.joint:
            emb = F.normalize(self.embed(self.x_val), dim=1).numpy()
            event.nmi = kmeans_nmi(emb, self.y_val.numpy(), s.n_classes, self.seed)
            self.nmi.append(event.nmi)
            if plateaued(self.nmi, self.since, s.patience):
                event.tried = True
                self.since = len(self.nmi) - 1
                scores = self.importance()
                important = torch.nonzero(scores > s.threshold).squeeze(1)
                if can_split(len(scores), len(important), s.min_size, s.min_important):
                    self.bounds = split_last_learner(
                        self.model.embed, self.bounds, important, self.gen, optimizer
                    )
                    event.split = True
        if not self.joint and self.k > 1 and (event.split or nxt % s.recluster == 0):
            self.recluster()
        event.k = self.k
        self.events.append(event)
        if not self.joint:
            self.k_found = self.k
        return event


def grad_cam(
    features: Callable[[Tensor], Tensor],
    head: Callable[[Tensor], Tensor],
    x: Tensor,
    target: Tensor,
) -> Tensor:
    """Grad-CAM (Selvaraju et al., 2017) of class ``target`` (b,) at the feature map
    ``features(x)`` (b, c, h, w) of a classifier ``head(F)`` → logits: the channel weights
    α_c = mean_hw ∂y_target/∂F_c, the map ReLU(Σ_c α_c F_c) (b, h, w)."""
    with torch.enable_grad():
        f = features(x).detach().requires_grad_(True)
        logits = head(f)
        score = logits.gather(1, target.view(-1, 1)).sum()
        (g,) = torch.autograd.grad(score, f)
    alpha = g.mean(dim=(2, 3), keepdim=True)
    return F.relu((alpha * f.detach()).sum(dim=1))


def map_to_mask(maps: Tensor, size: int, threshold: float) -> Tensor:
    """Proxy masks from low-resolution maps (b, h, w): bilinear upsampling to ``size``², per-image
    min-max scaling to [0, 1], then ``> threshold`` (an all-constant map gives an empty mask)."""
    up = F.interpolate(maps[:, None].float(), size=(size, size), mode="bilinear")[:, 0]
    lo = up.amin(dim=(1, 2), keepdim=True)
    span = up.amax(dim=(1, 2), keepdim=True) - lo
    scaled = torch.where(span > 0, (up - lo) / span.clamp(min=1e-30), torch.zeros_like(up))
    return scaled > threshold


def dice(pred: Tensor | np.ndarray, truth: Tensor | np.ndarray) -> np.ndarray:
    """Per-image Dice 2|P∩T| / (|P| + |T|) of boolean masks (b, h, w); 1 when both are empty."""
    p = np.asarray(pred, dtype=bool)
    t = np.asarray(truth, dtype=bool)
    if p.shape != t.shape:
        raise ValueError(f"masks must have one shape, got {p.shape} and {t.shape}")
    inter = (p & t).reshape(len(p), -1).sum(1)
    total = p.reshape(len(p), -1).sum(1) + t.reshape(len(t), -1).sum(1)
    return np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0)
