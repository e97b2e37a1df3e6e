"""Tests for subspacelab.geometry.bases."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from subspacelab.geometry import (
    effective_rank,
    grassmann_distance,
    is_orthonormal,
    orthonormality_error,
    orthonormalize,
    principal_angles,
    project,
    projection_residual,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_orthonormalize_spans_input_with_positive_diag():
    a = torch.randn(3, 12, 4, generator=_gen(), dtype=torch.float64)
    q = orthonormalize(a)
    assert q.shape == a.shape
    assert float(orthonormality_error(q).max()) < 1e-13
    # a = Q R with R upper triangular and positive diagonal
    r = q.transpose(-2, -1) @ a
    assert torch.allclose(torch.tril(r, diagonal=-1), torch.zeros_like(r), atol=1e-12)
    assert bool((torch.diagonal(r, dim1=-2, dim2=-1) > 0).all())
    assert torch.allclose(q @ r, a, atol=1e-12)


def test_orthonormalize_is_idempotent_up_to_rounding():
    q = orthonormalize(torch.randn(10, 3, generator=_gen(1), dtype=torch.float64))
    assert torch.allclose(orthonormalize(q), q, atol=1e-14)
    # any orthonormal input is a fixed point (R = I), whatever its column signs
    flipped = q * torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    assert torch.allclose(orthonormalize(flipped), flipped, atol=1e-14)
    # the sign convention makes the result independent of the QR backend's choices:
    # scaling columns by positive factors does not change Q
    scaled = q * torch.tensor([2.0, 0.5, 3.0], dtype=torch.float64)
    assert torch.allclose(orthonormalize(scaled), q, atol=1e-14)


def test_orthonormality_error_batched_and_is_orthonormal():
    q = orthonormalize(torch.randn(2, 5, 8, 3, generator=_gen(2), dtype=torch.float64))
    err = orthonormality_error(q)
    assert err.shape == (2, 5)
    assert err.dtype == torch.float64
    assert is_orthonormal(q, atol=1e-12)
    assert not is_orthonormal(2.0 * q, atol=1e-3)
    # ||(2Q)ᵀ(2Q) − I||_F = ||3 I||_F = 3 sqrt(k)
    assert torch.allclose(
        orthonormality_error(2.0 * q), torch.full((2, 5), 3 * math.sqrt(3.0)).double()
    )


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="k <= d"):
        orthonormalize(torch.randn(3, 5))
    with pytest.raises(ValueError, match=r"\(\.\.\., d, k\)"):
        orthonormality_error(torch.randn(5))
    with pytest.raises(ValueError, match="floating"):
        orthonormalize(torch.ones(4, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="same ambient"):
        principal_angles(torch.randn(5, 2), torch.randn(6, 2))
    with pytest.raises(ValueError, match=r"basis\.shape"):
        project(torch.randn(4, 5), torch.randn(6, 2))
    with pytest.raises(ValueError, match="mean"):
        projection_residual(torch.randn(4, 6), torch.randn(6, 2), mean=torch.zeros(5))


def test_project_and_residual():
    g = _gen(3)
    s = orthonormalize(torch.randn(6, 2, generator=g, dtype=torch.float64))
    mu = torch.randn(6, generator=g, dtype=torch.float64)
    x = torch.randn(7, 6, generator=g, dtype=torch.float64)
    coords = project(x - mu, s)
    assert coords.shape == (7, 2)
    xc = x - mu
    expected = (xc - xc @ s @ s.T).norm(dim=1)
    assert torch.allclose(projection_residual(x, s, mean=mu, squared=False), expected, atol=1e-13)
    assert torch.allclose(projection_residual(x, s, mean=mu), expected**2, atol=1e-13)
    # Pythagoras: ||x − μ||² = ||coords||² + residual²
    assert torch.allclose(
        xc.square().sum(1), coords.square().sum(1) + projection_residual(x, s, mean=mu), atol=1e-12
    )
    # points in the affine subspace have (numerically) zero residual
    inside = mu + torch.randn(5, 2, generator=g, dtype=torch.float64) @ s.T
    assert float(projection_residual(inside, s, mean=mu).max()) < 1e-28


def test_principal_angles_match_scipy_and_need_no_orthonormal_inputs():
    g = _gen(4)
    for p, q in [(3, 3), (2, 4), (4, 2), (1, 5)]:
        a = torch.randn(9, p, generator=g, dtype=torch.float64)
        b = torch.randn(9, q, generator=g, dtype=torch.float64)
        ours = principal_angles(a, b)
        ref = np.sort(scipy.linalg.subspace_angles(a.numpy(), b.numpy()))
        assert ours.shape == (min(p, q),)
        assert bool((ours[1:] >= ours[:-1]).all())
        np.testing.assert_allclose(ours.numpy(), ref, atol=1e-12)


def test_principal_angles_known_and_small():
    e = torch.eye(4, dtype=torch.float64)
    # span(e1, e2) vs span(e1, cos t e2 + sin t e3): angles (0, t)
    for t in [1e-9, 1e-4, 0.3, math.pi / 3]:
        b = torch.stack([e[0], math.cos(t) * e[1] + math.sin(t) * e[2]], dim=1)
        ang = principal_angles(e[:, :2], 3.0 * b)
        assert abs(float(ang[0])) < 1e-15
        # the sine branch keeps full relative accuracy for tiny angles (arccos alone would give 0
        # or ~1e-8 for t = 1e-9)
        assert float(ang[1]) == pytest.approx(t, rel=1e-10)
    # orthogonal subspaces
    assert torch.allclose(
        principal_angles(e[:, :2], e[:, 2:]), torch.full((2,), math.pi / 2, dtype=torch.float64)
    )


def test_principal_angles_dtype_and_batch():
    g = _gen(5)
    a = torch.randn(3, 7, 2, generator=g)
    b = torch.randn(7, 3, generator=g)
    ang = principal_angles(a, b)
    assert ang.shape == (3, 2) and ang.dtype == torch.float32
    for i in range(3):
        assert torch.allclose(ang[i], principal_angles(a[i], b), atol=1e-6)


def test_grassmann_distance():
    g = _gen(6)
    a = torch.randn(8, 3, generator=g, dtype=torch.float64)
    r = torch.randn(3, 3, generator=g, dtype=torch.float64)
    assert float(grassmann_distance(a, a @ r)) < 1e-7  # same span, different basis
    b = torch.randn(8, 3, generator=g, dtype=torch.float64)
    d_ab = grassmann_distance(a, b)
    assert torch.allclose(d_ab, principal_angles(a, b).norm())
    assert torch.allclose(d_ab, grassmann_distance(b, a), atol=1e-12)


def test_effective_rank():
    assert effective_rank(torch.tensor([1.0, 1.0, 1.0, 1.0])) == pytest.approx(4.0, rel=1e-12)
    assert effective_rank(torch.tensor([5.0, 0.0, 0.0])) == pytest.approx(1.0, rel=1e-12)
    sigma = torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)
    p = sigma / sigma.sum()
    assert effective_rank(sigma) == pytest.approx(math.exp(float(-(p * p.log()).sum())), rel=1e-12)
    # matrix input: U diag(σ) Vᵀ has the same effective rank as σ
    g = _gen(7)
    u = orthonormalize(torch.randn(10, 3, generator=g, dtype=torch.float64))
    v = orthonormalize(torch.randn(6, 3, generator=g, dtype=torch.float64))
    x = u @ torch.diag(sigma) @ v.T
    assert effective_rank(x) == pytest.approx(effective_rank(sigma), rel=1e-10)
    assert effective_rank(torch.zeros(3, 4)) == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        effective_rank(torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="shape"):
        effective_rank(torch.ones(2, 2, 2))
