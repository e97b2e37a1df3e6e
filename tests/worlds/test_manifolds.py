"""worlds.manifolds: known eigenfunctions and eigenvalues of the sphere, torus and circle of
bumps, the graph Laplacians and the spectral errors, on known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from subspacelab.worlds import manifolds as mf


def test_spherical_harmonics_are_orthonormal_and_degree_one_is_xyz() -> None:
    s = mf.sphere(60_000, 0.0, 3, seed=0)  # uniform: Monte-Carlo ∫ Yᵢ Yⱼ dA ≈ δᵢⱼ
    gram = 4 * math.pi * s.functions.T @ s.functions / len(s.points)
    np.testing.assert_allclose(gram, np.eye(16), atol=0.03)
    np.testing.assert_allclose(s.eigenvalues, [0] + [2] * 3 + [6] * 5 + [12] * 7)
    assert mf.energy_captured(s.points, s.functions[:, 1:4]) == pytest.approx(1.0)
    assert mf.energy_captured(s.points, s.functions[:, 4:9]) < 1e-3


def test_degree_two_harmonics_are_eigenfunctions() -> None:
    """Δ_S² Y = −6 Y for l = 2, checked on 3x² − 1 ∝ Y₂⁰ inside the span of degree 2."""
    s = mf.sphere(500, 0.3, 2, seed=1)
    f = 3 * s.points[:, 2:3] ** 2 - 1
    assert mf.energy_captured(s.functions[:, 4:9], f) == pytest.approx(1.0)


def test_sphere_density_is_tilted_as_declared() -> None:
    s = mf.sphere(40_000, 0.8, 0, seed=2)
    # E[x₃] under ρ ∝ 1 + c x₃ is c/3
    assert s.points[:, 2].mean() == pytest.approx(0.8 / 3, abs=0.01)
    np.testing.assert_allclose(s.density, (1 + 0.8 * s.points[:, 2]) / (4 * math.pi))
    with pytest.raises(ValueError, match="tilt"):
        mf.sphere(10, 1.0, 1, seed=0)


def test_torus_modes_are_orthonormal_and_grouped() -> None:
    t = mf.flat_torus(80_000, 2, seed=0)
    gram = t.functions.T @ t.functions / len(t.points)
    np.testing.assert_allclose(gram, np.eye(25), atol=0.03)
    sizes = [len(g) for g in mf.eigenspace_groups(t.eigenvalues)]
    assert sizes == [1, 4, 4, 4, 8, 4]  # eigenvalues 0, 1, 2, 4, 5, 8
    np.testing.assert_allclose(np.unique(t.eigenvalues), [0, 1, 2, 4, 5, 8])


def test_circle_of_bumps_truth() -> None:
    c = mf.circle_of_bumps(2000, 32, 0.5, 0.0, 2, seed=0)
    assert c.points.shape == (2000, 32) and c.points.max() <= 1.0
    np.testing.assert_allclose(c.eigenvalues, [0, 1, 1, 4, 4])
    gram = c.functions.T @ c.functions / 2000
    np.testing.assert_allclose(gram, np.eye(5), atol=0.08)


def test_energy_captured_known_answers() -> None:
    e = np.eye(4)
    assert mf.energy_captured(e[:, :2], e[:, :2]) == pytest.approx(1.0)
    assert mf.energy_captured(e[:, :1], e[:, :2]) == pytest.approx(0.5)
    tilted = (math.cos(0.4) * e[:, 0] + math.sin(0.4) * e[:, 2])[:, None]
    assert mf.energy_captured(tilted, e[:, :1]) == pytest.approx(math.cos(0.4) ** 2)
    # a weighted inner product: with weight only on row 0 both are the same function
    w = np.array([1.0, 1e-12, 1e-12, 1e-12])
    assert mf.energy_captured(e[:, :1], (e[:, 0] + e[:, 1])[:, None], w) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="positive"):
        mf.energy_captured(e[:, :1], e[:, :1], np.zeros(4))


def test_graph_laplacians_of_a_ring() -> None:
    n = 12
    angles = 2 * math.pi * np.arange(n) / n
    ring = np.stack([np.cos(angles), np.sin(angles)], 1)
    w = mf.knn_graph(ring, 2, None)
    assert (w != w.T).nnz == 0 and np.all(np.asarray(w.sum(1)).ravel() == 2)
    lap = mf.graph_laplacian(w, "combinatorial").toarray()
    # the cycle graph's spectrum: 2 − 2 cos(2πj/n)
    exact = np.sort(2 - 2 * np.cos(2 * math.pi * np.arange(n) / n))
    np.testing.assert_allclose(np.linalg.eigvalsh(lap), exact, atol=1e-12)
    sym = mf.graph_laplacian(w, "symmetric").toarray()
    np.testing.assert_allclose(np.linalg.eigvalsh(sym), exact / 2, atol=1e-12)
    with pytest.raises(ValueError, match="no edges"):
        mf.graph_laplacian(sp.csr_matrix((3, 3)), "symmetric")


def test_eigenvalue_error_and_scale() -> None:
    ref = np.array([0.0, 1.0, 2.0])
    assert mf.eigenvalue_error(ref, ref) == 0.0
    assert mf.eigenvalue_error(np.array([0.0, 1.0, 2.5]), ref) == pytest.approx(0.25)
    assert mf.best_scale(ref / 3, ref) == pytest.approx(3.0)
