"""CM³'s encoder, losses and diagnostics, and the LightGCN baselines (Zhou, Wang, Shen 2025,
arXiv:2508.01226; LightGCN: He et al. 2020; DirectAU: Wang et al. 2022).

Every arm propagates node states over the same normalised user-item graph Â = D^-½ A D^-½
(LightGCN, ``layers`` layers, the layer outputs summed) and scores a (user, item) pair by the
inner product of the unnormalised final embeddings.

* ``bpr`` / ``directau`` — ID embeddings; BPR, or DirectAU's alignment + uniformity.
* ``cm3`` — three channels per node (visual: user preference ∥ MLP_v(v_i); text: preference ∥
  MLP_t(t_i); shared: ID preference ∥ the spherical fusion f_i of the two modalities), each
  L2-normalised; users weight the channel blocks by a per-user softmax, items add one layer of
  the multimodal item-item kNN graph. Loss: alignment + γ (uniformity of users + calibrated
  uniformity of the batch items) / 2, where the pair (i, j) is repelled with the weight
  exp(-4 s_ij), s_ij = clamp(cos(f_i, f_j), min_sim, max_sim).
* ``cm3_nocal`` (s_ij = 0: plain uniformity) and ``cm3_noslerp`` (f_i = normalised mean of the
  two modalities instead of the slerp) are the ablations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from subspacelab.api import TrainEnv

ARMS = ("bpr", "directau", "cm3", "cm3_nocal", "cm3_noslerp")


def normalised_adjacency(n_users: int, n_items: int, pairs: np.ndarray) -> Tensor:
    """Sparse Â = D^-½ A D^-½ of the bipartite graph (users first, then items)."""
    u, i = pairs[:, 0], pairs[:, 1] + n_users
    rows = np.concatenate([u, i])
    cols = np.concatenate([i, u])
    n = n_users + n_items
    deg = np.bincount(rows, minlength=n).astype(np.float64)
    inv = _inv_sqrt(deg)
    vals = inv[rows] * inv[cols]
    idx = torch.from_numpy(np.stack([rows, cols]))
    return torch.sparse_coo_tensor(
        idx, torch.from_numpy(vals).float(), (n, n), check_invariants=True
    ).coalesce()


def _inv_sqrt(deg: np.ndarray) -> np.ndarray:
    """deg^-½ where deg > 0, else 0 (isolated nodes)."""
    return np.power(deg, -0.5, out=np.zeros_like(deg), where=deg > 0)


def knn_graph(features: np.ndarray, k: int) -> Tensor:
    """Symmetric-normalised cosine kNN graph (k neighbours, self excluded) as a dense matrix."""
    f = features / np.linalg.norm(features, axis=1, keepdims=True)
    sim = f @ f.T
    np.fill_diagonal(sim, -np.inf)
    nn_idx = np.argsort(-sim, axis=1)[:, :k]
    a = np.zeros_like(sim)
    np.put_along_axis(a, nn_idx, 1.0, axis=1)
    deg = a.sum(axis=1)
    inv = _inv_sqrt(deg)
    return torch.from_numpy(inv[:, None] * a * inv[None, :]).float()


def slerp(p: Tensor, q: Tensor, lam: Tensor) -> Tensor:
    """Spherical interpolation of unit vectors: sin(λθ)p + sin((1-λ)θ)q over sin θ (θ ≥ 1e-3).

    As in the paper's equation, λ weights p through sin(λθ) (λ = 0.5: the midpoint)."""
    theta = torch.arccos((p * q).sum(dim=1).clamp(-1 + 1e-7, 1 - 1e-7)).clamp(min=1e-3)
    lam = lam.unsqueeze(1)
    t = theta.unsqueeze(1)
    return (torch.sin(lam * t) * p + torch.sin((1 - lam) * t) * q) / torch.sin(t)


def _mlp(d_in: int, d: int) -> nn.Module:
    return nn.Sequential(nn.Linear(d_in, 4 * d), nn.LeakyReLU(), nn.Linear(4 * d, d))


class Recommender(nn.Module):
    """One arm: its node states, LightGCN propagation and, for CM³, the multimodal channels."""

    def __init__(
        self,
        arm: str,
        adjacency: Tensor,
        item_graph: Tensor,
        text: Tensor,
        image: Tensor,
        n_users: int,
        dim: int,
        layers: int,
        beta_alpha: float,
    ) -> None:
        super().__init__()
        if arm not in ARMS:
            raise ValueError(f"unknown arm {arm!r}; allowed: {', '.join(ARMS)}")
        self.arm, self.n_users, self.layers = arm, n_users, layers
        self.adj, self.item_graph = adjacency, item_graph
        self.text, self.image = text, image
        n_items = text.shape[0]
        self.beta = torch.distributions.Beta(beta_alpha, beta_alpha)
        if arm in ("bpr", "directau"):
            self.emb = nn.Parameter(torch.empty(n_users + n_items, dim))
            nn.init.xavier_uniform_(self.emb)
            return
        self.prefs = nn.Parameter(torch.empty(3, n_users, dim))
        nn.init.xavier_uniform_(self.prefs)
        self.channel_logits = nn.Parameter(torch.zeros(n_users, 3))
        self.mlp_v, self.mlp_t = _mlp(image.shape[1], dim), _mlp(text.shape[1], dim)
        self.lin_v, self.lin_t = nn.Linear(image.shape[1], dim), nn.Linear(text.shape[1], dim)

    def fused(self) -> Tensor:
        """f_i: the spherical fusion of the projected modalities (λ ~ Beta(α, α) in training,
        the mean 0.5 in evaluation), or their normalised mean for ``cm3_noslerp``."""
        p = nn.functional.normalize(self.lin_t(self.text), dim=1)
        q = nn.functional.normalize(self.lin_v(self.image), dim=1)
        if self.arm == "cm3_noslerp":
            return nn.functional.normalize(p + q, dim=1)
        lam = self.beta.sample((p.shape[0],)) if self.training else torch.full((p.shape[0],), 0.5)
        return slerp(p, q, lam)

    def _propagate(self, x: Tensor) -> Tensor:
        out, h = x, x
        for _ in range(self.layers):
            h = torch.sparse.mm(self.adj, h)
            out = out + h
        return out

    def embeddings(self) -> tuple[Tensor, Tensor, Tensor | None]:
        """(users, items, f) final embeddings (f only for the CM³ arms)."""
        if self.arm in ("bpr", "directau"):
            h = self._propagate(self.emb)
            return h[: self.n_users], h[self.n_users :], None
        f = self.fused()
        items = [self.mlp_v(self.image), self.mlp_t(self.text), f]
        blocks = [
            nn.functional.normalize(torch.cat([self.prefs[c], items[c]]), dim=1) for c in range(3)
        ]
        h = self._propagate(torch.cat(blocks, dim=1))
        users, its = h[: self.n_users], h[self.n_users :]
        w = torch.softmax(self.channel_logits, dim=1).repeat_interleave(users.shape[1] // 3, 1)
        return users * w, its + self.item_graph @ its, f

    def loss(self, batch: Tensor, gamma: float, min_sim: float, max_sim: float) -> Tensor:
        """The arm's loss on a batch of (user, positive, negative) rows."""
        users, items, f = self.embeddings()
        u, i, j = users[batch[:, 0]], items[batch[:, 1]], items[batch[:, 2]]
        if self.arm == "bpr":
            diff = (u * i).sum(1) - (u * j).sum(1)
            reg = (u.pow(2).sum() + i.pow(2).sum() + j.pow(2).sum()) / (2 * len(batch))
            return -nn.functional.logsigmoid(diff).mean() + 1e-4 * reg
        un, pn = nn.functional.normalize(u, dim=1), nn.functional.normalize(i, dim=1)
        align = (un - pn).pow(2).sum(1).mean()
        uniq_u = nn.functional.normalize(users[torch.unique(batch[:, 0])], dim=1)
        if self.arm == "directau":
            uniq_i = nn.functional.normalize(items[torch.unique(batch[:, 1])], dim=1)
            return align + gamma * (uniformity(uniq_u) + uniformity(uniq_i)) / 2
        neg = torch.unique(batch[:, 2])
        s = None
        if self.arm != "cm3_nocal" and f is not None:
            fn = f[neg]
            s = (fn @ fn.T).clamp(min_sim, max_sim)
        items_n = nn.functional.normalize(items[neg], dim=1)
        return align + gamma * (uniformity(uniq_u) + uniformity(items_n, s)) / 2

    @torch.no_grad()
    def scores(self) -> Tensor:
        """(users, items) scores: inner products of the unnormalised final embeddings."""
        users, items, _ = self.embeddings()
        return users @ items.T


def uniformity(x: Tensor, s: Tensor | None = None) -> Tensor:
    """log mean_{i≠j} exp(-2(‖x_i - x_j‖² - 2 + 2 s_ij)) of unit rows (s = 0: Wang & Isola's)."""
    n = x.shape[0]
    if n < 2:
        return x.new_zeros(())
    sq = (2 - 2 * x @ x.T).clamp(min=0)
    if s is not None:
        sq = sq - 2 + 2 * s
    off = ~torch.eye(n, dtype=torch.bool)
    return torch.logsumexp(-2 * sq[off], dim=0) - np.log(n * (n - 1))


def similar_pair_cosine(items: Tensor, f: Tensor, threshold: float) -> tuple[float, int]:
    """Mean cosine of the final item embeddings over pairs whose fused features have cosine
    above ``threshold``, and how many such pairs there are."""
    fn = nn.functional.normalize(f, dim=1)
    mask = torch.triu(fn @ fn.T > threshold, diagonal=1)
    if not mask.any():
        return float("nan"), 0
    e = nn.functional.normalize(items, dim=1)
    return float((e @ e.T)[mask].mean()), int(mask.sum())


def triples(train: np.ndarray, n_items: int, epochs: int, seed: int) -> Tensor:
    """``epochs`` shuffled passes over the training pairs, each with a uniform negative the user
    has not interacted with in training, as one (epochs x pairs, 3) tensor."""
    rng = np.random.default_rng(seed)
    seen = {(int(u), int(i)) for u, i in train}
    out = []
    for _ in range(epochs):
        order = rng.permutation(len(train))
        neg = rng.integers(0, n_items, len(train))
        users = train[order, 0]
        clash = [(int(u), int(n)) in seen for u, n in zip(users, neg, strict=True)]
        for k in np.flatnonzero(clash):
            while (int(train[order[k], 0]), int(neg[k])) in seen:
                neg[k] = rng.integers(0, n_items)
        out.append(np.stack([train[order, 0], train[order, 1], neg], axis=1))
    return torch.from_numpy(np.concatenate(out)).long()


def train_arms(
    env: TrainEnv,
    arms: Sequence[Recommender],
    batches: Tensor,
    *,
    batch_size: int,
    lr: float,
    weight_decay: float,
    gamma: float,
    min_sim: float,
    max_sim: float,
    label: str,
) -> None:
    """One pass over ``batches`` (already ``epochs`` shuffled passes), every arm on each batch:
    the arms are members of one joint run (:func:`subspacelab.api.train_joint`), each trained
    as a run of its own would train it."""
    from subspacelab.api import Member, tensor_loader, train_joint

    def member(arm: Recommender) -> Member:
        return Member(
            arm,
            lambda rows: arm.loss(rows, gamma, min_sim, max_sim),
            lr=lr,
            weight_decay=weight_decay,
        )

    train_joint(
        env,
        [member(arm) for arm in arms],
        epochs=1,
        loader=tensor_loader(batches, batch_size=batch_size, seed=None),
        label=label,
    )
