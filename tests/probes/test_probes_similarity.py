"""Representation similarity against known answers (arXiv:1511.07543)."""

from __future__ import annotations

import numpy as np
import pytest

from subspacelab.probes import similarity as sim


def _acts(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((500, 6))


def test_cka_and_svcca_invariances() -> None:
    a = _acts()
    q = np.linalg.qr(np.random.default_rng(1).standard_normal((6, 6)))[0]
    assert sim.linear_cka(a, 3.0 * a @ q + 1.0) == pytest.approx(1.0)
    assert sim.svcca(a, a @ np.diag([1, 2, 3, 4, 5, 6.0])) == pytest.approx(1.0)
    assert sim.linear_cka(a, _acts(5)) < 0.1


def test_bipartite_recovers_a_permutation_and_semi_is_above() -> None:
    a = _acts()
    perm = np.array([3, 0, 5, 1, 2, 4])
    b = a[:, perm] + 0.1 * _acts(2)
    partner, matched = sim.bipartite_match(sim.cross_correlation(a, b))
    np.testing.assert_array_equal(perm[partner], np.arange(6))
    corr = sim.cross_correlation(a, b)
    assert np.all(sim.semi_match(corr) >= matched - 1e-12)
    assert sim.cross_correlation(a, a)[0, 0] == pytest.approx(1.0)
    assert sim.live_units(np.c_[a, np.ones(500)]).tolist() == [True] * 6 + [False]


def test_sparse_prediction_beats_one_to_one_on_a_rotation() -> None:
    a = _acts()
    q = np.linalg.qr(np.random.default_rng(1).standard_normal((6, 6)))[0]
    b = a @ q
    r2_sparse, nnz = sim.sparse_prediction_r2(a[:250], b[:250], a[250:], b[250:], 1e-3)
    r2_one = sim.one_to_one_r2(a[:250], b[:250], a[250:], b[250:])
    assert r2_sparse > 0.99
    assert r2_one < 0.8
    assert 1 <= nnz <= 6


def test_sparse_prediction_matches_lasso_on_the_raw_samples() -> None:
    from sklearn.linear_model import Lasso
    from sklearn.metrics import r2_score

    rng = np.random.default_rng(2)
    a = np.maximum(rng.standard_normal((800, 6)) @ rng.standard_normal((6, 6)), 0.0)
    b = np.maximum(a @ rng.standard_normal((6, 5)) + rng.standard_normal((800, 5)), 0.0)
    for alpha in (0.003, 0.05):
        r2, nnz = sim.sparse_prediction_r2(a[:400], b[:400], a[400:], b[400:], alpha)
        xa, xt = sim._standardise(a[:400], a[400:])
        ya, yt = sim._standardise(b[:400], b[400:])
        ref = Lasso(alpha=alpha, max_iter=5000, tol=1e-8).fit(xa, ya)
        assert r2 == pytest.approx(r2_score(yt, ref.predict(xt)), abs=1e-4)
        assert nnz == pytest.approx((np.abs(ref.coef_) > 0).sum(axis=1).mean())
