"""Dynamical systems whose Koopman eigenvalues are known, and errors against them.

Built for koopman_ib (Cheng et al., "Information Shapes Koopman Representation",
arXiv:2510.13025), whose miniature learns Koopman representations of two systems:

* the **slow manifold** ẋ₁ = μx₁, ẋ₂ = λ(x₂ − x₁²): span{x₁, x₂, x₁²} is an exact invariant
  subspace of the Koopman operator, with continuous eigenvalues μ, λ, 2μ, so sampled every Δt
  the discrete eigenvalues are e^{μΔt}, e^{λΔt}, e^{2μΔt}. The flow has a closed form
  (:func:`slow_manifold_flow`), so trajectories are exact, not integrated;
* the **damped pendulum** q̈ = −sin q − γq̇ observed through a fixed random lift
  tanh(W[cos q, sin q, p]): its fixed point is a stable focus, whose principal Koopman
  eigenvalues are those of the linearisation, s = −γ/2 ± i√(1 − γ²/4) (Mauroy & Mezić 2016),
  i.e. e^{sΔt} sampled every Δt. Integrated with RK4 on a fine sub-step.

Metrics: the EDMD / ridge least-squares Koopman matrix on a dictionary (:func:`edmd`), the
eigenvalues of largest modulus (:func:`top_eigenvalues`), the matched eigenvalue error
(:func:`eigenvalue_error`: optimal one-to-one matching of true to estimated eigenvalues) and the
rollout NRMSE (:func:`nrmse`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

SYSTEMS = ("slow_manifold", "pendulum")


@dataclass(frozen=True)
class DynamicsWorld:
    """Trajectories of a system with their analytic truth.

    ``states``: (n_traj, n_steps, state_dim) exact states; ``obs``: (n_traj, n_steps, obs_dim)
    what a model sees; ``eigenvalues``: the known discrete-time Koopman eigenvalues (complex),
    largest modulus first; ``dt``: the sampling interval.
    """

    name: str
    states: np.ndarray
    obs: np.ndarray
    eigenvalues: np.ndarray
    dt: float


def slow_manifold_flow(x0: np.ndarray, t: np.ndarray, mu: float, lam: float) -> np.ndarray:
    """Exact flow of ẋ₁ = μx₁, ẋ₂ = λ(x₂ − x₁²) from ``x0`` (n, 2) at times ``t`` (m,):
    (n, m, 2). With b = λ/(λ − 2μ), x₂ − b·x₁² decays as e^{λt} and x₁² as e^{2μt}."""
    if math.isclose(lam, 2 * mu):
        raise ValueError(f"slow manifold: lam = 2 mu = {lam} is resonant (no closed form used)")
    x0 = np.asarray(x0, dtype=np.float64)
    if x0.ndim != 2 or x0.shape[1] != 2:
        raise ValueError(f"slow manifold: x0 must be (n, 2), got {x0.shape}")
    b = lam / (lam - 2 * mu)
    x1 = x0[:, :1] * np.exp(mu * t)[None, :]
    y0 = x0[:, 1:] - b * x0[:, :1] ** 2
    x2 = b * x1**2 + y0 * np.exp(lam * t)[None, :]
    return np.stack([x1, x2], axis=-1)


def slow_manifold(
    n_traj: int, n_steps: int, *, mu: float, lam: float, dt: float, seed: int
) -> DynamicsWorld:
    """``n_traj`` exact trajectories of ``n_steps`` samples from x₀ ~ U[−1, 1]²; observations
    are the states. Eigenvalues e^{μΔt}, e^{λΔt}, e^{2μΔt} (sorted by modulus)."""
    _check_counts(n_traj, n_steps, dt)
    if mu >= 0 or lam >= 0:
        raise ValueError(f"slow manifold: mu and lam must be negative (stable), got {mu}, {lam}")
    rng = np.random.default_rng(seed)
    x0 = rng.uniform(-1.0, 1.0, size=(n_traj, 2))
    states = slow_manifold_flow(x0, dt * np.arange(n_steps), mu, lam)
    eig = np.exp(np.array([mu, lam, 2 * mu], dtype=np.complex128) * dt)
    return DynamicsWorld("slow_manifold", states, states.copy(), _by_modulus(eig), dt)


def pendulum_field(state: np.ndarray, damping: float) -> np.ndarray:
    """The vector field (q̇, ṗ) = (p, −sin q − γp) of the damped pendulum, row-wise."""
    q, p = state[..., 0], state[..., 1]
    return np.stack([p, -np.sin(q) - damping * p], axis=-1)


def rk4(state: np.ndarray, h: float, damping: float) -> np.ndarray:
    """One classical Runge–Kutta step of the pendulum."""
    k1 = pendulum_field(state, damping)
    k2 = pendulum_field(state + 0.5 * h * k1, damping)
    k3 = pendulum_field(state + 0.5 * h * k2, damping)
    k4 = pendulum_field(state + h * k3, damping)
    return state + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)


def pendulum_eigenvalues(damping: float, dt: float) -> np.ndarray:
    """Principal discrete Koopman eigenvalues of the damped pendulum's stable focus:
    e^{sΔt}, s = −γ/2 ± i√(1 − γ²/4) (underdamped: 0 < γ < 2)."""
    if not 0 < damping < 2:
        raise ValueError(f"pendulum: damping must be in (0, 2) (underdamped), got {damping}")
    s = complex(-damping / 2, math.sqrt(1 - damping**2 / 4))
    return np.exp(np.array([s, s.conjugate()]) * dt)


def pendulum(
    n_traj: int,
    n_steps: int,
    *,
    damping: float,
    dt: float,
    obs_dim: int,
    max_angle: float,
    seed: int,
    substeps: int = 10,
) -> DynamicsWorld:
    """Damped pendulum from q₀ ~ U[−a, a], p₀ ~ U[−a, a] (a = ``max_angle``), RK4 with
    ``substeps`` sub-steps per sample, observed as tanh(W[cos q, sin q, p]) with W (obs_dim × 3)
    drawn once per ``seed``, entries N(0, 1)."""
    _check_counts(n_traj, n_steps, dt)
    eig = pendulum_eigenvalues(damping, dt)
    if obs_dim < 3 or substeps < 1 or not 0 < max_angle < math.pi:
        raise ValueError(
            f"pendulum: need obs_dim >= 3, substeps >= 1 and 0 < max_angle < pi, got "
            f"{obs_dim}, {substeps}, {max_angle}"
        )
    rng = np.random.default_rng(seed)
    state = rng.uniform(-max_angle, max_angle, size=(n_traj, 2))
    states = np.empty((n_traj, n_steps, 2))
    h = dt / substeps
    for t in range(n_steps):
        states[:, t] = state
        for _ in range(substeps):
            state = rk4(state, h, damping)
    w = rng.standard_normal((obs_dim, 3))
    feats = np.stack([np.cos(states[..., 0]), np.sin(states[..., 0]), states[..., 1]], axis=-1)
    return DynamicsWorld("pendulum", states, np.tanh(feats @ w.T), eig, dt)


def edmd(x: np.ndarray, y: np.ndarray, ridge: float = 0.0) -> np.ndarray:
    """Koopman matrix K minimising ‖xK − y‖² + ridge‖K‖² for dictionary rows x → y (n, m):
    K = (xᵀx + ridge·I)⁻¹ xᵀy, so a row vector of features is advanced as z ↦ zK."""
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"edmd: x and y must be (n, m) of one shape, got {x.shape}, {y.shape}")
    g = x.T @ x + ridge * np.eye(x.shape[1])
    return np.linalg.solve(g, x.T @ y)


def monomials(x: np.ndarray, degree: int) -> np.ndarray:
    """All monomials of the columns of ``x`` (n, d) of degrees 1..``degree`` (no constant),
    graded order: x₁, x₂, x₁², x₁x₂, x₂², ..."""
    if degree < 1:
        raise ValueError(f"monomials: degree must be >= 1, got {degree}")
    cols = [x[:, i] for i in range(x.shape[1])]
    out, last = list(cols), [(i, c) for i, c in enumerate(cols)]
    for _ in range(degree - 1):
        nxt = [(j, prod * cols[j]) for i, prod in last for j in range(i, len(cols))]
        out += [c for _, c in nxt]
        last = nxt
    return np.stack(out, axis=1)


def top_eigenvalues(k_matrix: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` eigenvalues of largest modulus of a square matrix (complex, largest first)."""
    if k_matrix.ndim != 2 or k_matrix.shape[0] != k_matrix.shape[1]:
        raise ValueError(f"top_eigenvalues: need a square matrix, got {k_matrix.shape}")
    if not 1 <= k <= k_matrix.shape[0]:
        raise ValueError(f"top_eigenvalues: k must be in [1, {k_matrix.shape[0]}], got {k}")
    return _by_modulus(np.linalg.eigvals(k_matrix))[:k]


def matched_distances(estimated: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """|λ̂ − λ| for each true eigenvalue under the one-to-one matching of true to estimated
    eigenvalues that minimises the total distance (needs at least as many estimates)."""
    est, tru = np.asarray(estimated, np.complex128), np.asarray(truth, np.complex128)
    if est.ndim != 1 or tru.ndim != 1 or not len(tru) or len(est) < len(tru):
        raise ValueError(
            f"eigenvalue matching needs 1-D arrays with len(estimated) >= len(truth) >= 1, got "
            f"{est.shape} and {tru.shape}"
        )
    cost = np.abs(tru[:, None] - est[None, :])
    rows, cols = linear_sum_assignment(cost)
    return cost[rows, cols][np.argsort(rows)]


def eigenvalue_error(estimated: np.ndarray, truth: np.ndarray) -> float:
    """Mean matched distance between true and estimated eigenvalues (see
    :func:`matched_distances`)."""
    return float(matched_distances(estimated, truth).mean())


def nrmse(pred: np.ndarray, target: np.ndarray) -> float:
    """‖pred − target‖ / ‖target − mean(target)‖ over all entries (the mean per last axis)."""
    if pred.shape != target.shape:
        raise ValueError(f"nrmse: shapes differ, {pred.shape} vs {target.shape}")
    centred = target - target.reshape(-1, target.shape[-1]).mean(axis=0)
    denom = float(np.sqrt((centred**2).sum()))
    if denom == 0:
        raise ValueError("nrmse: the target is constant")
    return float(np.sqrt(((pred - target) ** 2).sum())) / denom


def _by_modulus(eig: np.ndarray) -> np.ndarray:
    order = np.lexsort((-eig.imag, -np.abs(eig)))
    return eig[order]


def _check_counts(n_traj: int, n_steps: int, dt: float) -> None:
    if n_traj < 1 or n_steps < 2 or not dt > 0:
        raise ValueError(
            f"need n_traj >= 1, n_steps >= 2 and dt > 0, got {n_traj}, {n_steps}, {dt}"
        )
