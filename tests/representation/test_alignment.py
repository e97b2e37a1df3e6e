"""CCA, Procrustes, the affine map and the alignment scores against known answers
(subspacelab.representation.alignment; plato, arXiv:2503.05283)."""

from __future__ import annotations

import numpy as np
import pytest

from subspacelab.representation import alignment as al


def _planted(n: int = 400, shared: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """x (n, 10) and t (n, 15): invertible mixes of a shared 3-d signal and private noise."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, shared))
    x = np.hstack([z, rng.standard_normal((n, 10 - shared))]) @ rng.standard_normal((10, 10))
    t = np.hstack([z, rng.standard_normal((n, 15 - shared))]) @ rng.standard_normal((15, 15))
    return x + 3.0, t - 1.0


def test_cca_recovers_a_planted_shared_subspace_with_correlation_one() -> None:
    x, t = _planted()
    fit = al.cca(x, t)
    assert fit.corr.shape == (10,) and fit.a.shape == (10, 10) and fit.b.shape == (15, 10)
    np.testing.assert_allclose(fit.corr[:3], 1.0, atol=1e-10)
    assert fit.corr[3] < 0.5  # private noise: only chance correlation (n = 400)
    assert np.all(np.diff(fit.corr) <= 1e-12)
    top = fit.top(3)
    xs, ts = top.project_x(x), top.project_t(t)
    np.testing.assert_allclose(xs, ts, atol=1e-8)  # the shared variates coincide
    np.testing.assert_allclose(xs.T @ xs / len(x), np.eye(3), atol=1e-8)  # and are whitened
    np.testing.assert_allclose(xs.mean(axis=0), 0.0, atol=1e-10)  # centred with train means


def test_cca_ridge_shrinks_correlations_and_k_is_checked() -> None:
    # x = t with identity covariance: every correlation is 1 / (1 + ε)
    rng = np.random.default_rng(6)
    q, _ = np.linalg.qr(rng.standard_normal((200, 4)))
    z = q - q.mean(axis=0)
    z = z @ np.linalg.inv(np.linalg.cholesky(z.T @ z / 200)).T
    ridged = al.cca(z, z, k=3, ridge=0.1)
    np.testing.assert_allclose(ridged.corr, 1 / 1.1, atol=1e-10)
    x, t = _planted()
    with pytest.raises(ValueError, match="k must be"):
        al.cca(x, t, k=11)
    with pytest.raises(ValueError, match="k must be"):
        ridged.top(4)
    with pytest.raises(ValueError, match="same samples"):
        al.cca(x, t[:-1])
    with pytest.raises(ValueError, match="ridge"):
        al.cca(x, t, ridge=-1.0)
    with pytest.raises(ValueError, match="non-finite"):
        al.cca(np.full((4, 2), np.nan), t[:4])


def test_cca_on_rank_deficient_data_without_ridge_drops_null_directions() -> None:
    x, t = _planted()
    x = np.hstack([x, x[:, :1]])  # a duplicated column: singular covariance
    fit = al.cca(x, t)
    assert np.isfinite(fit.a).all()
    np.testing.assert_allclose(fit.corr[:3], 1.0, atol=1e-8)


def test_procrustes_recovers_a_known_rotation() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 6))
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    np.testing.assert_allclose(al.procrustes(x, x @ q), q, atol=1e-10)
    # rectangular: an isometric embedding of R^6 in R^9 (orthonormal rows)
    e, _ = np.linalg.qr(rng.standard_normal((9, 6)))
    w = al.procrustes(x, 2.0 * x @ e.T)
    np.testing.assert_allclose(w, e.T, atol=1e-10)
    np.testing.assert_allclose(w @ w.T, np.eye(6), atol=1e-10)


def test_ridge_affine_recovers_an_exact_map_and_shrinks_with_ridge() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((40, 4))
    w_true, b_true = rng.standard_normal((4, 3)), rng.standard_normal(3)
    w, b = al.ridge_affine(x, x @ w_true + b_true, ridge=0.0)
    np.testing.assert_allclose(w, w_true, atol=1e-10)
    np.testing.assert_allclose(b, b_true, atol=1e-10)
    w_r, _ = al.ridge_affine(x, x @ w_true + b_true, ridge=1.0)
    assert np.linalg.norm(w_r) < np.linalg.norm(w_true)


def test_retrieval_and_matching_are_perfect_on_identical_spaces() -> None:
    rng = np.random.default_rng(3)
    z = rng.standard_normal((30, 8))
    sim = al.cosine_similarity(z, z)
    assert al.retrieval_recall(sim, ks=(1, 5)) == {1: 1.0, 5: 1.0}
    assert al.matching_accuracy(sim) == 1.0
    assert al.mutual_knn(z, z, k=5) == 1.0
    # a rotated copy: unaligned, retrieval is near chance; Procrustes restores it
    q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    assert al.retrieval_recall(al.cosine_similarity(z, z @ q))[1] < 0.5
    w = al.procrustes(z, z @ q)
    assert al.retrieval_recall(al.cosine_similarity(z @ w, z @ q))[1] == 1.0


def test_retrieval_counts_ranks_and_shares_ties() -> None:
    sim = np.array([[0.1, 0.9, 0.5], [0.0, 0.5, 0.4], [0.3, 0.3, 0.3]])
    # row 0: true column ranks third; row 1: first; row 2: tied with two others
    got = al.retrieval_recall(sim, ks=(1, 2, 3))
    assert got[1] == pytest.approx((0 + 1 + 1 / 3) / 3)
    assert got[2] == pytest.approx((0 + 1 + 2 / 3) / 3)
    assert got[3] == pytest.approx(1.0)
    # an anti-diagonal pool: the assignment pairs every row with the wrong column
    assert al.matching_accuracy(np.eye(4)[::-1]) == 0.0
    with pytest.raises(ValueError, match="square"):
        al.retrieval_recall(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="k must"):
        al.retrieval_recall(np.eye(2), ks=(0,))


def test_mutual_knn_of_independent_spaces_is_near_chance() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((200, 5)), rng.standard_normal((200, 5))
    assert al.mutual_knn(a, b, k=10) < 0.15  # chance: k / (n − 1) ≈ 0.05
    with pytest.raises(ValueError, match="k must"):
        al.mutual_knn(a, b, k=200)


def test_principal_directions_and_cosine_checks() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((100, 3)) * np.array([5.0, 1.0, 0.1])
    mean, basis = al.principal_directions(x, 1)
    assert abs(basis[0, 0]) == pytest.approx(1.0, abs=1e-2)
    assert mean.shape == (3,)
    with pytest.raises(ValueError, match="one space"):
        al.cosine_similarity(x, x[:, :2])
    assert np.all(al.cosine_similarity(np.zeros((1, 3)), x) == 0.0)
