"""Tests for subspacelab.geometry.pca."""

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from subspacelab.geometry import (
    StreamingMoments,
    explained_variance_rank,
    fit_pca,
    orthonormality_error,
    pca_from_moments,
)


def _data(n: int = 300, d: int = 8, seed: int = 0, offset: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scales = torch.linspace(3.0, 0.1, d, dtype=torch.float64)
    mix = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64)).Q
    z = torch.randn(n, d, generator=g, dtype=torch.float64) * scales
    return z @ mix.T + offset + torch.randn(d, generator=g, dtype=torch.float64)


def test_streaming_uneven_batches_match_one_shot():
    x = _data(offset=1e4)  # large offset: naive E[xxᵀ] − μμᵀ would lose ~8 digits here
    m = StreamingMoments()
    for lo, hi in [(0, 1), (1, 8), (8, 8), (8, 107), (107, 108), (108, 300)]:
        m.update(x[lo:hi])
    assert m.count == 300 and m.d == 8
    ref_mean = x.mean(0)
    xc = x - ref_mean
    ref_cov = xc.T @ xc / 299
    assert torch.allclose(m.mean, ref_mean, rtol=0, atol=1e-10)
    assert torch.allclose(m.covariance(), ref_cov, rtol=0, atol=1e-10)
    assert torch.allclose(m.covariance(ddof=0), xc.T @ xc / 300, rtol=0, atol=1e-10)
    assert m.mean.dtype == torch.float64


def test_streaming_float32_input_accumulates_in_float64():
    x = _data(n=64).float()
    m = StreamingMoments().update(x[:10]).update(x[10:])
    x64 = x.double()
    assert m.covariance().dtype == torch.float64
    assert torch.allclose(m.covariance(), torch.cov(x64.T), rtol=0, atol=1e-12)


def test_merge_two_halves_equals_whole():
    x = _data(n=201)
    whole = StreamingMoments().update(x)
    a = StreamingMoments().update(x[:77])
    b = StreamingMoments().update(x[77:150]).update(x[150:])
    merged = a.merge(b)
    assert merged is a and merged.count == 201
    assert torch.allclose(merged.mean, whole.mean, rtol=0, atol=1e-12)
    assert torch.allclose(merged.m2, whole.m2, rtol=0, atol=1e-10)
    assert StreamingMoments().merge(whole).count == 201  # merge into empty
    assert whole.merge(StreamingMoments()).count == 201  # merge empty


def test_streaming_errors():
    m = StreamingMoments()
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        m.update(torch.zeros(5))
    with pytest.raises(ValueError, match="no data"):
        _ = m.mean
    m.update(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="expected 3 features"):
        m.update(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="ddof=1"):
        m.covariance()


def test_explained_variance_rank_off_by_one():
    ev = torch.tensor([4.0, 3.0, 2.0, 1.0])
    assert explained_variance_rank(ev, 0.7) == 2  # cum = 0.4, 0.7 >= 0.7
    assert explained_variance_rank(ev, 0.71) == 3
    assert explained_variance_rank(ev, 0.4) == 1
    assert explained_variance_rank(ev, 0.39) == 1
    assert explained_variance_rank(ev, 1.0) == 4
    assert explained_variance_rank(ev.flip(0), 0.7) == 2  # order does not matter
    assert explained_variance_rank(torch.tensor([1.0, 0.0, -1e-17]), 1.0) == 1
    assert explained_variance_rank(torch.zeros(3), 0.5) == 1
    for bad in [0.0, 1.5, -0.1]:
        with pytest.raises(ValueError, match="threshold"):
            explained_variance_rank(ev, bad)


def test_pca_matches_sklearn():
    x = _data(n=250, d=7, seed=3)
    res = fit_pca(x, batch_size=33)
    sk = PCA(svd_solver="full").fit(x.numpy())
    assert res.k == 7
    np.testing.assert_allclose(res.mean.numpy(), sk.mean_, atol=1e-12)
    np.testing.assert_allclose(res.eigenvalues.numpy(), sk.explained_variance_, rtol=1e-10)
    np.testing.assert_allclose(
        res.explained_variance_ratio.numpy(), sk.explained_variance_ratio_, atol=1e-12
    )
    # components agree up to sign (eigenvalues are well separated)
    cos = (res.components.T.numpy() * sk.components_).sum(axis=1)
    np.testing.assert_allclose(np.abs(cos), 1.0, atol=1e-10)
    assert float(orthonormality_error(res.components)) < 1e-13


def test_pca_rank_selection_and_shapes():
    x = _data(n=120, d=6, seed=4)
    m = StreamingMoments().update(x)
    full = pca_from_moments(m)
    by_threshold = pca_from_moments(m, threshold=0.9)
    k_expected = explained_variance_rank(full.eigenvalues, 0.9)
    assert by_threshold.k == k_expected
    assert by_threshold.components.shape == (6, k_expected)
    assert by_threshold.eigenvalues.shape == (6,)
    assert bool((full.eigenvalues[:-1] >= full.eigenvalues[1:]).all())
    assert torch.allclose(by_threshold.components, full.components[:, :k_expected])
    # deterministic sign: largest-magnitude entry of each component is positive
    comps = full.components
    assert bool((comps.gather(0, comps.abs().argmax(0, keepdim=True)) > 0).all())
    assert pca_from_moments(m, k=2).k == 2
    with pytest.raises(ValueError, match="at most one"):
        pca_from_moments(m, threshold=0.5, k=2)
    with pytest.raises(ValueError, match="k must be"):
        pca_from_moments(m, k=7)


def test_pca_rank_deficient_eigenvalues_clamped():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(50, 2, generator=g, dtype=torch.float64) @ torch.randn(
        2, 5, generator=g, dtype=torch.float64
    )
    res = fit_pca(x, threshold=1.0)
    assert bool((res.eigenvalues >= 0).all())
    assert res.k <= 5
    assert float(res.eigenvalues[2:].max()) < 1e-12
