"""Metrics of the recommendation group: AUC and log-loss for CTR, full-ranking Recall/NDCG@K.

Written once for unified_embedding (arXiv:2305.12102), optfs (arXiv:2301.10909) and cm3
(arXiv:2508.01226). Ranking metrics rank *every* item for each user (no sampled negatives) with
the user's training items masked, as RecBole/MMRec evaluate.
"""

from __future__ import annotations

import numpy as np
import torch


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic with average ranks for ties."""
    from scipy.stats import rankdata

    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} differ in shape")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both positive and negative labels")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities (clipped to [eps, 1 - eps])."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    p = np.clip(np.asarray(probs, dtype=np.float64).ravel(), eps, 1 - eps)
    return float(-(y * np.log(p) + (1 - y) * np.log1p(-p)).mean())


def _as_sets(n_users: int, pairs: np.ndarray) -> list[np.ndarray]:
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    order = np.argsort(pairs[:, 0], kind="stable")
    users, items = pairs[order, 0], pairs[order, 1]
    bounds = np.searchsorted(users, np.arange(n_users + 1))
    return [items[bounds[u] : bounds[u + 1]] for u in range(n_users)]


def full_ranking(
    scores: torch.Tensor,
    train: np.ndarray,
    test: np.ndarray,
    ks: tuple[int, ...] = (10, 20),
    chunk: int = 1024,
) -> dict[str, float]:
    """Recall@K and NDCG@K over all items, training items masked, averaged over test users.

    ``scores``: (n_users, n_items); ``train``/``test``: (user, item) pairs. Users without test
    items are skipped (the same users for every model on the same split).
    """
    n_users, n_items = scores.shape
    train_sets, test_sets = _as_sets(n_users, train), _as_sets(n_users, test)
    kmax = max(ks)
    if kmax > n_items:
        raise ValueError(f"K = {kmax} exceeds the {n_items} items")
    discounts = 1.0 / np.log2(np.arange(2, kmax + 2))
    sums = {f"{name}@{k}": 0.0 for k in ks for name in ("recall", "ndcg")}
    n_eval = 0
    for start in range(0, n_users, chunk):
        block = scores[start : start + chunk].detach().to(torch.float64).clone()
        for r, u in enumerate(range(start, min(start + chunk, n_users))):
            if train_sets[u].size:
                block[r, torch.from_numpy(train_sets[u])] = -torch.inf
        top = torch.topk(block, kmax, dim=1).indices.numpy()
        for r, u in enumerate(range(start, min(start + chunk, n_users))):
            truth = test_sets[u]
            if truth.size == 0:
                continue
            n_eval += 1
            hit = np.isin(top[r], truth)
            for k in ks:
                sums[f"recall@{k}"] += hit[:k].sum() / truth.size
                ideal = discounts[: min(k, truth.size)].sum()
                sums[f"ndcg@{k}"] += (discounts[:k] * hit[:k]).sum() / ideal
    if n_eval == 0:
        raise ValueError("no user has test items")
    return {name: total / n_eval for name, total in sums.items()}
