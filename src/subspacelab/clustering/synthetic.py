"""Generated clustering data: unions of subspaces and manifolds, and attributed graphs (CSBM)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


def union_of_subspaces(
    n_per: int,
    n_clusters: int,
    dim: int,
    ambient: int,
    noise: float,
    seed: int,
    warp: str = "none",
    offset: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """``n_clusters`` random ``dim``-dimensional subspaces of R^ambient, ``n_per`` points each.

    Coordinates are standard normal in a random orthonormal basis per subspace; rows are scaled
    to unit norm, then each subspace is moved by a centre of norm ``offset`` in a random
    direction (``offset=0``: linear subspaces through the origin; ``offset > 0`` gives affine
    ones that a centroid method can partly tell apart). ``warp="tanh"`` then applies an
    elementwise tanh(2x·√ambient)/√ambient-style warp (a nonlinear union of subspaces); Gaussian
    noise of std ``noise`` comes last. The default ``offset=0`` draws the same points as before
    the parameter existed. Returns (x of shape (n_per·n_clusters, ambient) float32, labels int64).
    """
    if dim >= ambient or min(n_per, n_clusters, dim) < 1 or offset < 0:
        raise ValueError("need 1 <= dim < ambient, positive sizes and offset >= 0")
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for c in range(n_clusters):
        basis, _ = np.linalg.qr(rng.standard_normal((ambient, dim)))
        pts = rng.standard_normal((n_per, dim)) @ basis.T
        pts = pts / np.linalg.norm(pts, axis=1, keepdims=True)
        if offset > 0:
            centre = rng.standard_normal(ambient)
            pts = pts + offset * centre / np.linalg.norm(centre)
        xs.append(pts)
        ys.append(np.full(n_per, c))
    x = np.concatenate(xs)
    if warp == "tanh":
        scale = np.sqrt(ambient)
        x = np.tanh(2.0 * scale * x) / scale
    elif warp != "none":
        raise ValueError(f"warp must be 'none' or 'tanh', got {warp!r}")
    x = x + noise * rng.standard_normal(x.shape)
    return x.astype(np.float32), np.concatenate(ys).astype(np.int64)


def union_of_manifolds(
    n_per: int,
    n_clusters: int,
    dim: int,
    ambient: int,
    hidden: int,
    noise: float,
    seed: int,
    latent: int,
    offset: float,
) -> tuple[np.ndarray, np.ndarray]:
    """A union of curved manifolds (after MLC's miniature, arXiv:2301.01805): per cluster
    u ~ U[−1,1]^dim mapped by its own random 2-layer tanh MLP (dim→hidden→latent, output bias
    of std ``offset``), all clusters then embedded in R^ambient by one shared random orthonormal
    map, plus Gaussian noise of std ``noise``.

    With ``latent`` small the dim-dimensional manifolds interpenetrate inside the shared
    latent space (two generic 3-d manifolds meet in 6-d), so a kNN graph links clusters where
    they cross; ``offset`` sets how far apart their centres lie, i.e. how much a centroid method
    can separate. The MLP's output weights are scaled by √(ambient/latent) so the manifolds
    keep the extent they would have with latent = ambient.
    """
    if not 1 <= dim <= latent <= ambient or min(n_per, n_clusters, hidden) < 1 or offset < 0:
        raise ValueError("need 1 <= dim <= latent <= ambient, positive sizes and offset >= 0")
    rng = np.random.default_rng(seed)
    embed, _ = np.linalg.qr(rng.standard_normal((ambient, latent)))
    xs, ys = [], []
    for c in range(n_clusters):
        w1 = rng.standard_normal((dim, hidden)) * 1.5
        b1 = rng.standard_normal(hidden) * 0.5
        w2 = rng.standard_normal((hidden, latent)) * np.sqrt(ambient / latent / hidden)
        b2 = rng.standard_normal(latent) * offset
        u = rng.uniform(-1.0, 1.0, size=(n_per, dim))
        pts = (np.tanh(u @ w1 + b1) @ w2 + b2) @ embed.T
        xs.append(pts + noise * rng.standard_normal(pts.shape))
        ys.append(np.full(n_per, c))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.int64)


@dataclass(frozen=True)
class AttributedGraph:
    """An undirected graph (symmetric CSR adjacency, no self-loops), node attributes and labels."""

    adjacency: sp.csr_matrix
    features: sp.csr_matrix
    labels: np.ndarray

    @property
    def n_nodes(self) -> int:
        """Number of nodes."""
        return int(self.adjacency.shape[0])


def csbm(
    n: int,
    k: int,
    mean_degree: float,
    ratio: float,
    n_words: int,
    words_per_node: int,
    topic_weight: float,
    seed: int,
) -> AttributedGraph:
    """Contextual SBM: k equal blocks, expected degree ``mean_degree`` with p_in/p_out = ratio;
    each node draws ``words_per_node`` words from topic_weight·topic_c + (1−topic_weight)·background
    over ``n_words`` words (topics are sparse random word distributions). Edges are sampled in
    O(edges), so it scales to 10^5–10^6 nodes."""
    if k < 2 or n < 2 * k or ratio <= 0:
        raise ValueError("need k >= 2, n >= 2k and ratio > 0")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % k)
    # expected degree d = p_in (n/k) + p_out (n - n/k);  p_in = ratio * p_out
    p_out = mean_degree / (ratio * n / k + n - n / k)
    p_in = ratio * p_out
    m_in = rng.poisson(p_in * n * n / k / 2)
    m_out = rng.poisson(p_out * n * (n - n / k) / 2)
    order = np.argsort(labels, kind="stable")  # node ids grouped by block
    sizes = np.bincount(labels, minlength=k)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    cls = rng.integers(0, k, m_in)
    src_in = order[starts[cls] + (rng.random(m_in) * sizes[cls]).astype(np.int64)]
    dst_in = order[starts[cls] + (rng.random(m_in) * sizes[cls]).astype(np.int64)]
    src_out = rng.integers(0, n, m_out)
    dst_out = rng.integers(0, n, m_out)
    same = labels[src_out] == labels[dst_out]
    src = np.concatenate([src_in, src_out[~same]])
    dst = np.concatenate([dst_in, dst_out[~same]])
    keep = src != dst
    src, dst = src[keep], dst[keep]
    adj = sp.coo_matrix((np.ones(src.size), (src, dst)), shape=(n, n)).tocsr()
    adj = ((adj + adj.T) > 0).astype(np.float64).tocsr()
    # bag-of-words attributes
    background = rng.dirichlet(np.ones(n_words))
    topics = rng.dirichlet(np.full(n_words, 0.05), size=k)
    probs = topic_weight * topics + (1.0 - topic_weight) * background[None, :]
    cdf = np.cumsum(probs, axis=1)
    draws = rng.random((n, words_per_node))
    words = np.empty((n, words_per_node), dtype=np.int64)
    for c in range(k):
        rows = labels == c
        words[rows] = np.minimum(np.searchsorted(cdf[c], draws[rows]), n_words - 1)
    feats = sp.coo_matrix(
        (np.ones(words.size), (np.repeat(np.arange(n), words_per_node), words.ravel())),
        shape=(n, n_words),
    ).tocsr()
    return AttributedGraph(adj, feats, labels.astype(np.int64))
