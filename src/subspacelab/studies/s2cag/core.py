"""S2CAG maths (Lin et al., KDD 2025, arXiv:2411.11074): normalised smoothed representation,
the rank-k subspace solver, the modularity variant M-S2CAG, SNEM rounding and the baselines.

Everything is numpy/scipy on CSR matrices; the n×n operators are never formed.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.utils.extmath import randomized_svd, svd_flip

from subspacelab.clustering import kmeans_baseline, spectral_clustering


def tfidf(counts: sp.spmatrix) -> sp.csr_matrix:
    """TF-IDF with L2-normalised rows (scikit-learn's smooth idf)."""
    return sp.csr_matrix(TfidfTransformer(norm="l2").fit_transform(counts))


def attribute_degree_normalise(x: sp.spmatrix) -> sp.csr_matrix:
    """X̂ = diag(d)^{-1/2} X with d_i = x_i · Σ_j x_j (the attribute-graph degree)."""
    x = sp.csr_matrix(x, dtype=np.float64)
    degree = x @ np.asarray(x.sum(axis=0)).ravel()
    return sp.csr_matrix(sp.diags(1.0 / np.sqrt(np.maximum(degree, 1e-12))) @ x)


def sym_normalised(adjacency: sp.spmatrix) -> sp.csr_matrix:
    """Â = D^{-1/2}(A + I)D^{-1/2}."""
    a = sp.csr_matrix(adjacency, dtype=np.float64) + sp.identity(adjacency.shape[0], format="csr")
    inv = 1.0 / np.sqrt(np.asarray(a.sum(axis=1)).ravel())
    return sp.csr_matrix(sp.diags(inv) @ a @ sp.diags(inv))


def propagation(adjacency: sp.spmatrix) -> sp.csr_matrix:
    """P = row-normalise(Â + I), the official code's operator (self-loops added twice)."""
    a = sym_normalised(adjacency) + sp.identity(adjacency.shape[0], format="csr")
    return sp.csr_matrix(sp.diags(1.0 / np.asarray(a.sum(axis=1)).ravel()) @ a)


def nsr_path(
    p: sp.spmatrix, x_hat: sp.spmatrix, steps: list[int], alpha: float
) -> dict[int, np.ndarray]:
    """Normalised smoothed representations for several T at one α, sharing the recursion:
    f₀ = X̂, f_{t+1} = α(P f_t + X̂), Z_T = c_T·f_T with c_T = (1−α)/(1−α^{T+1})
    (1/(T+1) at α = 1)."""
    xd = x_hat.toarray() if sp.issparse(x_hat) else np.asarray(x_hat, dtype=np.float64)
    wanted = set(steps)
    out: dict[int, np.ndarray] = {}
    f = xd.copy()
    for t in range(max(steps) + 1):
        if t in wanted:
            scale = 1.0 / (t + 1) if alpha == 1.0 else (1 - alpha) / (1 - alpha ** (t + 1))
            out[t] = scale * f
        f = alpha * (p @ f + xd)
    return out


def nsr(p: sp.spmatrix, x_hat: sp.spmatrix, steps: int, alpha: float) -> np.ndarray:
    """The normalised smoothed representation Z for one (T, α) (see :func:`nsr_path`)."""
    return nsr_path(p, x_hat, [steps], alpha)[steps]


def snem(q: np.ndarray, max_iter: int = 100) -> np.ndarray:
    """SNEM rounding: labels = argmax rows of Q, then repeat labels = argmax rows of Q(QᵀY)
    with Y = one-hot / √(cluster sizes) until a fixed point (at most ``max_iter`` times)."""
    n, k = q.shape
    labels = q.argmax(axis=1)
    for _ in range(max_iter):
        sizes = np.bincount(labels, minlength=k).astype(np.float64)
        y = np.zeros((n, k))
        y[np.arange(n), labels] = 1.0 / np.sqrt(np.maximum(sizes[labels], 1.0))
        new = (q @ (q.T @ y)).argmax(axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
    return labels


def top_left_singular_vectors(z: np.ndarray, k: int, power_iters: int, seed: int) -> np.ndarray:
    """Randomized SVD (Halko et al.; oversampling 10, ``power_iters`` power iterations): the top
    ``k`` left singular vectors of Z, signs fixed as :func:`sklearn.utils.extmath.svd_flip` does.

    When Z has fewer columns than rows the power iterations run on the d×d Gram ZᵀZ (subspace
    iteration, QR after each product), which spans the same range A(AᵀA)^q Ω as scikit-learn's
    :func:`~sklearn.utils.extmath.randomized_svd` with the same Gaussian Ω, at d²·k per
    iteration instead of two n·d·k passes over Z; otherwise scikit-learn's routine is used.
    """
    n, d = z.shape
    size = k + 10
    if d >= n:
        return randomized_svd(z, k, n_oversamples=10, n_iter=power_iters, random_state=seed)[0]
    w = np.random.RandomState(seed).normal(size=(d, size))  # scikit-learn's draw of Ω
    gram = z.T @ z
    for _ in range(power_iters):
        w, _ = np.linalg.qr(gram @ w)
    q, _ = np.linalg.qr(z @ w)
    u_b, _, vt = np.linalg.svd(q.T @ z, full_matrices=False)
    u, _ = svd_flip(q @ u_b, vt)
    return u[:, :k]


def s2cag(z: np.ndarray, k: int, power_iters: int, seed: int) -> np.ndarray:
    """S2CAG: U_k = left singular vectors 2..k+1 of Z (randomized SVD, oversampling 10,
    ``power_iters`` power iterations), then SNEM rounding of U_k."""
    return snem(top_left_singular_vectors(z, k + 1, power_iters, seed)[:, 1 : k + 1])


def _cholesky_qr(v: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """W = V R⁻¹ with R upper triangular and (ZW)ᵀ(ZW) = I, given G = ZᵀZ (CholeskyQR2: two
    passes, so the loss of orthogonality stays at rounding level). ZW equals the Householder Q
    of ZV up to column signs."""
    for _ in range(2):
        r = np.linalg.cholesky(v.T @ gram @ v).T
        v = np.linalg.solve(r.T, v.T).T
    return v


def _modularity_subspace_rows(
    zs: np.ndarray, k: int, gamma: float, power_iters: int, seed: int
) -> np.ndarray:
    """Orthogonal iteration on B = ZₛZₛᵀ − γ·rrᵀ/(1ᵀr) with n-dimensional iterates."""
    r = zs @ (zs.T @ np.ones(zs.shape[0]))
    total = max(float(r.sum()), 1e-300)
    q = np.random.default_rng(seed).standard_normal((zs.shape[0], k))
    for _ in range(power_iters):
        bq = zs @ (zs.T @ q) - gamma * np.outer(r, r @ q) / total
        q, _ = np.linalg.qr(bq)
    return q


def _modularity_subspace_cols(
    zs: np.ndarray, k: int, gamma: float, power_iters: int, seed: int
) -> np.ndarray:
    """The same orthogonal iteration with iterates kept as Q_t = Zₛ W_t (d < n).

    B = Zₛ M Zₛᵀ with M = I − γ·ssᵀ/(sᵀs), s = Zₛᵀ1 (so r = Zₛs and 1ᵀr = sᵀs); then
    B Q_t = Zₛ M G W_t with G = ZₛᵀZₛ, and the QR of each step is a CholeskyQR in the G inner
    product. Householder QR gives the same Q for inputs that differ by column signs, so the final
    Householder step returns the iterate of :func:`_modularity_subspace_rows` up to rounding.
    """
    s = zs.sum(axis=0)
    total = max(float(s @ s), 1e-300)
    gram = zs.T @ zs
    q0 = np.random.default_rng(seed).standard_normal((zs.shape[0], k))
    v = zs.T @ q0
    v -= gamma * np.outer(s, s @ v) / total
    for _ in range(power_iters - 1):
        v = gram @ _cholesky_qr(v, gram)
        v -= gamma * np.outer(s, s @ v) / total
    q, _ = np.linalg.qr(zs @ v)
    return q


def m_s2cag(z: np.ndarray, k: int, gamma: float, power_iters: int, seed: int) -> np.ndarray:
    """M-S2CAG: Z ← diag(√max(Z1, 0))Z; top-k subspace of B = ZZᵀ − γ·rrᵀ/(1ᵀr), r = ZZᵀ1, by
    orthogonal iteration with matvecs only; then SNEM rounding.

    With fewer attributes than nodes the iterates live in the d-dimensional column space of Z
    (:func:`_modularity_subspace_cols`); a rank-deficient Z falls back to n-dimensional iterates.
    """
    zs = np.sqrt(np.maximum(z.sum(axis=1), 0.0))[:, None] * z
    if zs.shape[1] < zs.shape[0]:
        try:
            return snem(_modularity_subspace_cols(zs, k, gamma, power_iters, seed))
        except np.linalg.LinAlgError:  # Gram of the iterate not positive definite
            pass
    return snem(_modularity_subspace_rows(zs, k, gamma, power_iters, seed))


def sgc_features(adjacency: sp.spmatrix, x: sp.spmatrix, steps: int) -> np.ndarray:
    """SGC smoothing Â^T X (Wu et al., 2019), rows L2-normalised (as the TF-IDF input)."""
    a = sym_normalised(adjacency)
    f = x.toarray() if sp.issparse(x) else np.asarray(x, dtype=np.float64)
    for _ in range(steps):
        f = a @ f
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def sagsc_style(
    adjacency: sp.spmatrix, x: sp.spmatrix, k: int, steps: int, lam: float, seed: int
) -> np.ndarray:
    """SAGSC-style baseline (after Fettal et al., AAAI 2023): SGC-smoothed attributes, the
    closed-form least-squares self-expression C = F(FᵀF + λI)⁻¹Fᵀ in factored form, and the
    spectral clustering of |C|, i.e. of its top singular directions U·diag(s²/(s²+λ))."""
    f = sgc_features(adjacency, x, steps)
    u, s, _ = randomized_svd(f, min(4 * k, min(f.shape) - 1), n_iter=5, random_state=seed)
    emb = u * (s**2 / (s**2 + lam))
    coef = np.abs(emb @ u.T)
    return spectral_clustering(coef, k, seed)


def feature_kmeans(x: sp.spmatrix, k: int, seed: int) -> np.ndarray:
    """Feature-only baseline: k-means on the L2-normalised TF-IDF rows."""
    return kmeans_baseline(x.toarray(), k, seed)


def graph_spectral(adjacency: sp.spmatrix, k: int, seed: int) -> np.ndarray:
    """Graph-only baseline: normalised spectral clustering of A + I (isolated nodes are safe)."""
    a = sp.csr_matrix(adjacency) + sp.identity(adjacency.shape[0], format="csr")
    return spectral_clustering(a, k, seed)
