"""worlds.active: the ridge world's truth, the gradient active subspace and the errors, on known
answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from subspacelab.worlds import active


def _world(seed: int = 0, n: int = 200) -> active.RidgeWorld:
    return active.ridge_world(n_train=n, n_test=50, d=10, support_size=4, noise=0.0, seed=seed)


def test_world_is_seeded_and_its_truth_is_consistent() -> None:
    w, again = _world(3), _world(3)
    np.testing.assert_array_equal(w.x_train, again.x_train)
    assert not np.array_equal(w.x_train, _world(4).x_train)
    assert w.support.size == 4 and np.all(np.diff(w.support) > 0)
    off = np.setdiff1d(np.arange(10), w.support)
    assert np.all(w.a[off] == 0) and np.all(w.b[off] == 0)
    assert np.linalg.norm(w.a) == pytest.approx(1) and np.linalg.norm(w.b) == pytest.approx(1)
    np.testing.assert_allclose(w.y_train, active.ridge_value(w.x_train, w.a, w.b))  # no noise
    np.testing.assert_allclose(w.basis.T @ w.basis, np.eye(2), atol=1e-12)


def test_gradient_matches_finite_differences() -> None:
    w = _world()
    x, h = w.x_test[:5], 1e-6
    fd = np.stack(
        [
            (active.ridge_value(x + h * e, w.a, w.b) - active.ridge_value(x - h * e, w.a, w.b))
            / (2 * h)
            for e in np.eye(10)
        ],
        axis=1,
    )
    np.testing.assert_allclose(active.ridge_gradient(x, w.a, w.b), fd, atol=1e-7)


def test_closed_form_gradient_covariance_matches_monte_carlo() -> None:
    w = _world()
    x = np.random.default_rng(1).standard_normal((400_000, 10))
    vals, vecs = active.gradient_active_subspace(active.ridge_gradient(x, w.a, w.b))
    exact = active.true_gradient_covariance(w.a, w.b)
    np.testing.assert_allclose(vecs @ np.diag(vals) @ vecs.T, exact, atol=6e-3)
    assert np.all(np.diff(vals) <= 0) and vals[2] < 1e-12  # rank 2, descending
    assert active.max_angle_degrees(vecs[:, :2], w.basis) < 0.5
    # ½(1 + e^-2) a aᵀ: the trace is the sum of the two coefficients for unit a, b
    assert np.trace(exact) == pytest.approx(0.5 * (1 + math.exp(-2)) + 1)


def test_local_linear_gradients_are_exact_for_an_affine_function() -> None:
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((100, 5)), rng.standard_normal(5)
    g = active.local_linear_gradients(x, x @ w + 3.0, n_points=7, n_neighbors=12, seed=0)
    np.testing.assert_allclose(g, np.tile(w, (7, 1)), atol=1e-10)
    with pytest.raises(ValueError, match="n_neighbors"):
        active.local_linear_gradients(x, x @ w, n_points=7, n_neighbors=5, seed=0)
    with pytest.raises(ValueError, match="y must have shape"):
        active.local_linear_gradients(x, w, n_points=7, n_neighbors=12, seed=0)


def test_angles_and_projector_distance_known_answers() -> None:
    e = np.eye(4)
    assert active.max_angle_degrees(e[:, :2], e[:, [1, 0]]) == pytest.approx(0, abs=1e-6)
    assert active.max_angle_degrees(e[:, :2], e[:, [0, 2]]) == pytest.approx(90)
    tilted = np.stack([e[:, 0], math.cos(0.3) * e[:, 1] + math.sin(0.3) * e[:, 2]], axis=1)
    assert active.max_angle_degrees(tilted, e[:, :2]) == pytest.approx(math.degrees(0.3))
    assert active.spectral_projector_distance(tilted, e[:, :2]) == pytest.approx(math.sin(0.3))
    assert active.spectral_projector_distance(2 * e[:, :2], e[:, :2]) == pytest.approx(0, abs=1e-12)


def test_dimension_by_energy_and_support_recall() -> None:
    vals = np.array([5.0, 3.0, 1.5, 0.5])  # cumulative shares 0.5, 0.8, 0.95, 1.0
    assert active.dimension_by_energy(vals, 0.8) == 2
    assert active.dimension_by_energy(vals, 0.9) == 3
    assert active.dimension_by_energy(vals, 0.4) == 1
    assert active.dimension_by_energy(vals, 1.0) == 4
    with pytest.raises(ValueError, match="descending"):
        active.dimension_by_energy(np.array([1.0, 2.0]), 0.9)
    imp = np.array([0.1, 0.5, 0.0, 0.3, 0.1])
    assert active.support_recall(imp, np.array([1, 3])) == 1.0
    assert active.support_recall(imp, np.array([1, 2])) == 0.5


def test_bad_world_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="support_size"):
        active.ridge_world(n_train=10, n_test=10, d=5, support_size=6, noise=0.0, seed=0)
    with pytest.raises(ValueError, match="noise"):
        active.ridge_world(n_train=10, n_test=10, d=5, support_size=2, noise=-1.0, seed=0)
