"""Representation similarity: linear CKA, SVCCA, unit matching and sparse prediction.

Unit matching and sparse prediction follow Li, Yosinski, Clune, Lipson & Hopcroft, "Convergent
Learning: Do different neural networks learn the same representations?" (ICLR 2016,
arXiv:1511.07543); linear CKA is Kornblith et al. (ICML 2019) and SVCCA Raghu et al. (NeurIPS
2017). Activations are (samples, units) matrices; every function works in float64.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.linear_model import Lasso, LinearRegression
from sklearn.metrics import r2_score


def _centre(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a - a.mean(axis=0)


def linear_cka(a: np.ndarray, b: np.ndarray) -> float:
    """Linear CKA ``‖BᵀA‖²_F / (‖AᵀA‖_F ‖BᵀB‖_F)`` of centred (n, p) and (n, q) activations."""
    a, b = _centre(a), _centre(b)
    cross = np.linalg.norm(b.T @ a) ** 2
    return float(cross / (np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b)))


def _top_directions(a: np.ndarray, variance: float) -> np.ndarray:
    u, s, _ = np.linalg.svd(a, full_matrices=False)
    keep = int(np.searchsorted(np.cumsum(s**2) / np.sum(s**2), variance) + 1)
    return u[:, :keep] * s[:keep]


def svcca(a: np.ndarray, b: np.ndarray, variance: float = 0.99) -> float:
    """SVCCA: keep the top singular directions explaining ``variance`` of each centred set, then
    the mean canonical correlation between the two reduced sets."""
    ra, rb = _top_directions(_centre(a), variance), _top_directions(_centre(b), variance)
    qa, qb = np.linalg.qr(ra)[0], np.linalg.qr(rb)[0]
    return float(np.clip(np.linalg.svd(qa.T @ qb, compute_uv=False), 0.0, 1.0).mean())


def live_units(a: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Boolean mask of units with non-zero variance (dead units give NaN correlations)."""
    return np.asarray(a, dtype=np.float64).std(axis=0) > eps


def cross_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlations ``R_ij = corr(a_i, b_j)`` over samples: shape (p, q)."""
    a, b = _centre(a), _centre(b)
    a = a / np.linalg.norm(a, axis=0)
    b = b / np.linalg.norm(b, axis=0)
    return a.T @ b


def bipartite_match(corr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching maximising total correlation (Hungarian, scipy): for each row unit
    its partner column and the matched correlation."""
    rows, cols = linear_sum_assignment(corr, maximize=True)
    partner = np.full(corr.shape[0], -1)
    partner[rows] = cols
    return partner, corr[rows, cols]


def semi_match(corr: np.ndarray) -> np.ndarray:
    """Semi-matching: each row unit's best correlation, partners may repeat."""
    return corr.max(axis=1)


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, sd = train.mean(axis=0), train.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    return (train - mu) / sd, (test - mu) / sd


def _gram_design(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A (p, p) design ``R`` and targets ``Ỹ`` with ``RᵀR = XᵀX`` and ``RᵀỸ = XᵀY``.

    ``‖Ỹ − R W‖² = ‖Y − X W‖² − const``, so a least-squares (or Lasso) fit on (R, Ỹ) has the
    same minimiser as on (X, Y) at p rows instead of n (directions of zero variance dropped).
    """
    lam, vec = np.linalg.eigh(x.T @ x)
    keep = lam > lam.max() * 1e-12
    root = np.sqrt(lam[keep])
    return root[:, None] * vec[:, keep].T, (vec[:, keep].T @ (x.T @ y)) / root[:, None]


def sparse_prediction_r2(
    a_train: np.ndarray,
    b_train: np.ndarray,
    a_test: np.ndarray,
    b_test: np.ndarray,
    alpha: float,
) -> tuple[float, float]:
    """Predict every unit of B from all units of A by an L1-penalised linear map (Lasso on
    standardised activations, fit on train, scored on test).

    Returns the mean held-out R² over B's units and the mean number of non-zero weights. The
    Lasso objective ``‖y − Xw‖²/(2n) + α‖w‖₁`` depends on the data only through ``XᵀX`` and
    ``Xᵀy``; it is solved on the equivalent (p, p) design of :func:`_gram_design` (α scaled by
    n/p), so coordinate descent sweeps p rows instead of n. The standardised training data are
    centred, so there is no intercept.
    """
    xa, xt = _standardise(np.asarray(a_train, np.float64), np.asarray(a_test, np.float64))
    ya, yt = _standardise(np.asarray(b_train, np.float64), np.asarray(b_test, np.float64))
    design, target = _gram_design(xa, ya)
    scaled = alpha * xa.shape[0] / design.shape[0]
    model = Lasso(alpha=scaled, fit_intercept=False, max_iter=5000, tol=1e-4)
    coef = np.atleast_2d(model.fit(design, target).coef_)
    r2 = r2_score(yt, xt @ coef.T, multioutput="raw_values")
    return float(np.mean(r2)), float(np.mean((np.abs(coef) > 0).sum(axis=1)))


def one_to_one_r2(
    a_train: np.ndarray,
    b_train: np.ndarray,
    a_test: np.ndarray,
    b_test: np.ndarray,
) -> float:
    """The one-to-one extreme: each unit of B predicted by a scalar fit of its bipartite partner
    in A (matched on train correlations); mean held-out R²."""
    partner, _ = bipartite_match(cross_correlation(b_train, a_train))
    scores = []
    for j, i in enumerate(partner):
        fit = LinearRegression().fit(a_train[:, [i]], b_train[:, j])
        scores.append(r2_score(b_test[:, j], fit.predict(a_test[:, [i]])))
    return float(np.mean(scores))
