"""Diversity of a dataset: coverage of a known attribute space, entropy, duplication, mean
pairwise distance of embeddings and the Vendi score.

The Vendi score (Friedman & Dieng, "The Vendi Score: A Diversity Evaluation Metric for Machine
Learning", arXiv:2210.02410) is the exponential of the Shannon (order ``q``: Rényi) entropy of the
eigenvalues of ``K / n``, ``K`` an ``n x n`` similarity matrix with unit diagonal: the effective
number of distinct items, 1 for ``n`` identical items and ``n`` for ``n`` mutually orthogonal ones.
For a linear kernel on unit-normalised embeddings ``X`` (``n x d``) the non-zero eigenvalues of
``X X^T / n`` are those of ``X^T X / n`` (the dual form), so the score costs a ``d x d``
eigenproblem whichever of ``n`` and ``d`` is smaller. Used by treesynth (arXiv:2503.17195) to
compare synthetic datasets; cross-checked in the tests against the ``vendi-score`` package.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from typing import Literal

import numpy as np

Metric = Literal["cosine", "euclidean"]


def coverage(items: Iterable[Hashable], universe: Iterable[Hashable]) -> float:
    """Fraction of ``universe`` that occurs among ``items`` (items outside it are ignored)."""
    space = set(universe)
    if not space:
        raise ValueError("coverage: the universe is empty")
    return len(space.intersection(items)) / len(space)


def entropy(items: Iterable[Hashable], base: float = math.e) -> float:
    """Shannon entropy of the empirical distribution of ``items`` (0 for one distinct item)."""
    counts = np.array(list(Counter(items).values()), dtype=np.float64)
    if counts.size == 0:
        raise ValueError("entropy: no items")
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum() / math.log(base))


def duplicate_rate(items: Sequence[Hashable]) -> float:
    """Fraction of ``items`` that repeat an earlier item (0: all distinct)."""
    if not items:
        raise ValueError("duplicate_rate: no items")
    return 1.0 - len(set(items)) / len(items)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"expected a non-empty (n, d) array, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("a zero row has no direction: cannot normalise it")
    return x / norms


def mean_pairwise_distance(x: np.ndarray, metric: Metric = "cosine") -> float:
    """Mean distance over the ``n (n - 1) / 2`` unordered pairs of rows of ``x`` (``n >= 2``).

    ``cosine``: ``1 - cos``, from the norm of the summed unit rows in ``O(n d)``;
    ``euclidean``: from the Gram matrix, ``O(n^2 d)``.
    """
    n = np.asarray(x).shape[0]
    if n < 2:
        raise ValueError("mean_pairwise_distance needs at least two rows")
    pairs = n * (n - 1) / 2
    if metric == "cosine":
        u = _unit_rows(x)
        s = u.sum(axis=0)
        sum_cos = (float(s @ s) - n) / 2  # sum over i < j of cos(x_i, x_j)
        return 1.0 - sum_cos / pairs
    if metric == "euclidean":
        x = np.asarray(x, dtype=np.float64)
        sq = (x * x).sum(axis=1)
        d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0)
        return float(np.sqrt(d2)[np.triu_indices(n, 1)].sum() / pairs)
    raise ValueError(f"unknown metric {metric!r}; use 'cosine' or 'euclidean'")


def _entropy_exp(w: np.ndarray, q: float) -> float:
    w = w[w > 1e-12]
    w = w / w.sum()
    if q == 1:
        return float(np.exp(-(w * np.log(w)).sum()))
    if math.isinf(q):
        return float(1.0 / w.max())
    return float(((w**q).sum()) ** (1.0 / (1.0 - q)))


def vendi_kernel(k: np.ndarray, q: float = 1.0) -> float:
    """Vendi score of a symmetric PSD similarity matrix with unit diagonal (order ``q``:
    ``q = 1`` Shannon, ``q = inf`` the inverse largest eigenvalue share)."""
    k = np.asarray(k, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] == 0:
        raise ValueError(f"expected a non-empty square matrix, got shape {k.shape}")
    if not np.allclose(np.diag(k), 1.0, atol=1e-6):
        raise ValueError("the similarity matrix must have a unit diagonal")
    if q < 0:
        raise ValueError(f"order q must be >= 0, got {q}")
    return _entropy_exp(np.linalg.eigvalsh(k / k.shape[0]), q)


def vendi(x: np.ndarray, q: float = 1.0) -> float:
    """Vendi score of the rows of ``x`` under the cosine kernel (rows unit-normalised), in the
    dual form: the eigenvalues of the ``d x d`` matrix ``X^T X / n`` (or of ``X X^T / n`` when
    ``n < d``)."""
    if q < 0:
        raise ValueError(f"order q must be >= 0, got {q}")
    u = _unit_rows(x)
    n, d = u.shape
    gram = u.T @ u if d <= n else u @ u.T
    return _entropy_exp(np.linalg.eigvalsh(gram / n), q)
