"""Linear self-expressive subspace clustering baselines: X ≈ X C with a zero or free diagonal.

Samples are rows of ``x`` (n×d); the coefficient matrix C is n×n with x ≈ C x.

* LSR (Lu et al., ECCV 2012): min ‖X − CX‖² + λ‖C‖², closed form.
* SSC (Elhamifar & Vidal, TPAMI 2013): per sample a Lasso on the others (scikit-learn).
* LRR (Liu et al., TPAMI 2013) with a Frobenius noise model, whose minimiser has a closed form
  (Favaro et al., CVPR 2011).
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import Lasso


def lsr(x: np.ndarray, lam: float, zero_diag: bool = True) -> np.ndarray:
    """LSR coefficients. Free diagonal: C = G (G + λI)^{-1} with G = XXᵀ; zero diagonal
    (LSR1): C = −D / diag(D) off the diagonal with D = (G + λI)^{-1}, as in Lu et al. (2012)."""
    if lam <= 0:
        raise ValueError("lam must be > 0")
    x = np.asarray(x, dtype=np.float64)
    gram = x @ x.T
    n = gram.shape[0]
    inv = np.linalg.inv(gram + lam * np.eye(n))
    if not zero_diag:
        return gram @ inv
    coef = -inv / np.diag(inv)[None, :]
    np.fill_diagonal(coef, 0.0)
    return coef


def ssc(x: np.ndarray, alpha: float, max_iter: int = 300) -> np.ndarray:
    """SSC coefficients: for each sample i, Lasso of x_i on the other samples (zero diagonal).

    ``alpha`` is scikit-learn's Lasso penalty on (1/(2d))‖x_i − Σ_j c_j x_j‖² + α‖c‖₁.
    """
    if alpha <= 0:
        raise ValueError("alpha must be > 0")
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    coef = np.zeros((n, n))
    model = Lasso(alpha=alpha, fit_intercept=False, max_iter=max_iter, tol=1e-3, warm_start=False)
    others = np.ones(n, dtype=bool)
    for i in range(n):
        others[i] = False
        # already float64 and Fortran-ordered: skip scikit-learn's per-fit input validation
        model.fit(np.asfortranarray(x[others].T), x[i].copy(), check_input=False)
        coef[i, others] = model.coef_
        others[i] = True
    return coef


def lrr(x: np.ndarray, tau: float) -> np.ndarray:
    """Low-rank representation with Frobenius noise, in closed form (Favaro, Vidal & Ravichandran,
    CVPR 2011): min ‖C‖_* + (τ/2)‖X − CX‖²_F is solved by C = V₁(I − Σ₁⁻²/τ)V₁ᵀ over the left
    singular pairs of X (rows are samples) with σ > 1/√τ. One SVD instead of an ADMM loop."""
    if tau <= 0:
        raise ValueError("tau must be > 0")
    u, s, _ = np.linalg.svd(np.asarray(x, dtype=np.float64), full_matrices=False)
    keep = s > 1.0 / np.sqrt(tau)
    u1 = u[:, keep]
    return (u1 * (1.0 - 1.0 / (tau * s[keep] ** 2))) @ u1.T
