"""Neural-collapse metrics and the deep-linear closed form against known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from subspacelab.probes import collapse as nc


@pytest.mark.parametrize(("n", "d", "k"), [(60, 8, 3), (200, 64, 10), (40, 3, 6)])
def test_nc1_equals_the_trace_with_the_pseudo_inverse(n: int, d: int, k: int) -> None:
    g = torch.Generator().manual_seed(n)
    y = torch.arange(n) % k
    h = (
        torch.randn(n, d, generator=g, dtype=torch.float64)
        + 2 * torch.randn(k, d, generator=g, dtype=torch.float64)[y]
    )
    mu = nc.class_means(h, y, k)
    centred = h - mu[y]
    mb = mu - mu.mean(dim=0)
    direct = torch.trace(
        centred.T @ centred / n @ torch.linalg.pinv(mb.T @ mb / k, rtol=1e-10, hermitian=True)
    )
    assert nc.nc1(h, y, k) == pytest.approx(float(direct) / k, rel=1e-9)


def test_nc1_zero_at_collapse_and_known_value() -> None:
    means = torch.eye(3, dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    assert nc.nc1(means[y], y, 3) == pytest.approx(0.0, abs=1e-12)
    # within-class spread ±e along the first axis of class 0 only
    h = means[y].clone()
    h[0, 0] += 0.1
    h[1, 0] -= 0.1
    sigma_w = torch.zeros(3, 3, dtype=torch.float64)
    sigma_w[0, 0] = 2 * 0.01 / 6
    mb = means - means.mean(0)
    expected = torch.trace(sigma_w @ torch.linalg.pinv(mb.T @ mb / 3)) / 3
    assert nc.nc1(h, y, 3) == pytest.approx(float(expected))
    with pytest.raises(ValueError, match="every class"):
        nc.class_means(h, y, 4)


def test_nc2_nc3_nc4_known_geometries() -> None:
    k = 4
    etf = nc.etf_gram(k)
    means = torch.linalg.cholesky(etf + 1e-12 * torch.eye(k, dtype=torch.float64))
    assert nc.nc2_etf(3.0 * means) == pytest.approx(0.0, abs=1e-5)
    assert nc.nc2_orthogonal(2.0 * torch.eye(k, dtype=torch.float64)) == pytest.approx(0.0)
    assert nc.nc2_etf(torch.eye(k, dtype=torch.float64)) == pytest.approx(0.0, abs=1e-12)
    m = torch.randn(k, 6, dtype=torch.float64)
    assert nc.nc3(5.0 * (m - m.mean(0)), m) == pytest.approx(0.0, abs=1e-12)
    h = torch.eye(k, dtype=torch.float64)
    logits = h.clone()
    assert nc.nc4(h, logits, torch.eye(k, dtype=torch.float64)) == 0.0
    assert nc.nc4(h, logits.flip(1), torch.eye(k, dtype=torch.float64)) == 1.0


def test_closed_form_reduces_to_plain_ufm_for_one_layer() -> None:
    counts, lam = [200, 100, 50, 50], 5e-4
    geo = nc.deep_linear_geometry(counts, 1, lam, lam)
    n = sum(counts)
    expected = np.clip([1 - n * math.sqrt(lam * lam / c) for c in counts], 0, None)
    np.testing.assert_allclose(geo.wh_diag, expected, rtol=1e-9)
    # collapse threshold n_k <= N² λ_W λ_H
    big = nc.deep_linear_geometry(counts, 1, 0.02, 0.02)
    assert n**2 * 0.02**2 > 50
    np.testing.assert_array_equal(big.x[2:], 0.0)
    assert big.x[0] > 0


def test_closed_form_roots_solve_the_equation() -> None:
    counts, lam, m = [200, 100, 50, 50], 5e-4, 3
    geo = nc.deep_linear_geometry(counts, m, lam, lam)
    n = sum(counts)
    b = m * n * (n * lam**m * lam) ** (1 / m)
    for x, c in zip(geo.x, counts, strict=True):
        assert b / c == pytest.approx(m * x ** (m - 1) / (x**m + 1) ** 2, rel=1e-8)
    assert np.all(np.diff(geo.ww_diag) <= 0)  # majority classes get longer classifier rows
    with pytest.raises(ValueError):
        nc.deep_linear_geometry(counts, 0, lam, lam)
