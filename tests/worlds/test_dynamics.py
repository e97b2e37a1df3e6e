"""Known answers for the dynamical-systems world (koopman_ib's miniature)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from subspacelab.worlds import dynamics as dyn


def test_slow_manifold_flow_solves_the_ode() -> None:
    mu, lam = -0.05, -1.0
    x0 = np.array([[0.7, -0.3]])
    t = np.linspace(0.0, 6.0, 13)
    exact = dyn.slow_manifold_flow(x0, t, mu, lam)[0]
    ivp = solve_ivp(
        lambda _t, x: [mu * x[0], lam * (x[1] - x[0] ** 2)],
        (0.0, 6.0),
        x0[0],
        t_eval=t,
        rtol=1e-11,
        atol=1e-12,
    )
    np.testing.assert_allclose(exact, ivp.y.T, atol=1e-8)


def test_slow_manifold_edmd_on_its_invariant_subspace_is_exact() -> None:
    w = dyn.slow_manifold(20, 30, mu=-0.05, lam=-1.0, dt=0.1, seed=3)
    np.testing.assert_allclose(
        w.eigenvalues, np.exp(np.array([-0.05, -0.1, -1.0]) * 0.1), rtol=0, atol=1e-15
    )
    s = w.states
    feats = dyn.monomials(s.reshape(-1, 2), 2)[:, [0, 1, 2]]  # x1, x2, x1^2
    feats = feats.reshape(20, 30, 3)
    k = dyn.edmd(feats[:, :-1].reshape(-1, 3), feats[:, 1:].reshape(-1, 3))
    eig = dyn.top_eigenvalues(k, 3)
    assert dyn.eigenvalue_error(eig, w.eigenvalues) < 1e-9
    # a dictionary missing x1^2 cannot close: its eigenvalues are off
    k2 = dyn.edmd(feats[:, :-1, :2].reshape(-1, 2), feats[:, 1:, :2].reshape(-1, 2))
    assert dyn.eigenvalue_error(dyn.top_eigenvalues(k2, 2), w.eigenvalues[[0, 2]]) > 1e-3


def test_pendulum_small_angles_recover_the_linearisation() -> None:
    w = dyn.pendulum(10, 60, damping=0.2, dt=0.1, obs_dim=8, max_angle=1e-3, seed=0)
    assert w.obs.shape == (10, 60, 8) and w.states.shape == (10, 60, 2)
    s = w.states
    k = dyn.edmd(s[:, :-1].reshape(-1, 2), s[:, 1:].reshape(-1, 2))
    assert dyn.eigenvalue_error(dyn.top_eigenvalues(k, 2), w.eigenvalues) < 1e-6
    np.testing.assert_allclose(np.abs(w.eigenvalues), np.exp(-0.1 * 0.1))
    assert np.isclose(w.eigenvalues[0], np.conj(w.eigenvalues[1]))
    # RK4 without damping keeps the energy p^2/2 - cos q
    state = np.array([[1.0, 0.0]])
    energy = 0.5 * state[0, 1] ** 2 - np.cos(state[0, 0])
    for _ in range(1000):
        state = dyn.rk4(state, 0.01, 0.0)
    assert abs(0.5 * state[0, 1] ** 2 - np.cos(state[0, 0]) - energy) < 1e-8


def test_worlds_are_seeded() -> None:
    a = dyn.pendulum(3, 5, damping=0.2, dt=0.1, obs_dim=4, max_angle=1.0, seed=1)
    b = dyn.pendulum(3, 5, damping=0.2, dt=0.1, obs_dim=4, max_angle=1.0, seed=1)
    c = dyn.pendulum(3, 5, damping=0.2, dt=0.1, obs_dim=4, max_angle=1.0, seed=2)
    np.testing.assert_array_equal(a.obs, b.obs)
    assert not np.allclose(a.obs, c.obs)


def test_matching_monomials_top_and_nrmse_known_values() -> None:
    truth = np.array([0.9, 0.5 + 0.1j, 0.5 - 0.1j])
    est = np.array([0.5 - 0.1j, 0.0, 0.92, 0.5 + 0.13j])
    np.testing.assert_allclose(dyn.matched_distances(est, truth), [0.02, 0.03, 0.0], atol=1e-12)
    assert dyn.eigenvalue_error(est, truth) == pytest.approx(0.05 / 3)
    np.testing.assert_allclose(dyn.monomials(np.array([[2.0, 3.0]]), 2), [[2, 3, 4, 6, 9]])
    np.testing.assert_allclose(
        dyn.monomials(np.array([[2.0, 3.0]]), 3), [[2, 3, 4, 6, 9, 8, 12, 18, 27]]
    )
    np.testing.assert_allclose(dyn.top_eigenvalues(np.diag([0.5, -0.9, 0.1]), 2), [-0.9, 0.5])
    target = np.array([[1.0, 0.0], [3.0, 2.0]])
    assert dyn.nrmse(target, target) == 0.0
    assert dyn.nrmse(np.tile(target.mean(0), (2, 1)), target) == pytest.approx(1.0)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="stable"):
        dyn.slow_manifold(2, 5, mu=0.1, lam=-1.0, dt=0.1, seed=0)
    with pytest.raises(ValueError, match="resonant"):
        dyn.slow_manifold_flow(np.zeros((1, 2)), np.arange(3.0), -0.5, -1.0)
    with pytest.raises(ValueError, match="underdamped"):
        dyn.pendulum_eigenvalues(2.5, 0.1)
    with pytest.raises(ValueError, match="len"):
        dyn.matched_distances(np.array([1.0]), np.array([1.0, 0.5]))
    with pytest.raises(ValueError, match="square"):
        dyn.top_eigenvalues(np.zeros((2, 3)), 1)
    with pytest.raises(ValueError, match="constant"):
        dyn.nrmse(np.ones((3, 2)), np.ones((3, 2)))
