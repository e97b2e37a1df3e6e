"""worlds.lowrank: the MoLRG generator and its exact metrics against known answers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from subspacelab.worlds import lowrank as lr


def _rotated_plane(theta: float, n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """span(e1, e2) and span(e1, cos θ e2 + sin θ e3): one principal angle θ, the other 0."""
    a = np.eye(n)[:, :2]
    b = a.copy()
    b[:, 1] = math.cos(theta) * np.eye(n)[:, 1] + math.sin(theta) * np.eye(n)[:, 2]
    return a, b


def test_orthogonal_generator_returns_its_truth() -> None:
    w = lr.molrg(12, [3, 2], [5, 7], seed=3)
    assert w.x.shape == (12, 12) and w.dims == (3, 2)
    assert list(w.labels) == [0] * 5 + [1] * 7
    assert np.allclose(w.weights, [5 / 12, 7 / 12])
    allb = np.concatenate(w.bases, axis=1)
    assert np.allclose(allb.T @ allb, np.eye(5), atol=1e-12)  # orthonormal and mutually orthogonal
    for k, b in enumerate(w.bases):  # every point lies on its own subspace
        pts = w.x[w.labels == k]
        assert np.allclose(pts - pts @ b @ b.T, 0.0, atol=1e-12)
    again = lr.molrg(12, [3, 2], [5, 7], seed=3)
    assert np.array_equal(again.x, w.x)
    assert not np.array_equal(lr.molrg(12, [3, 2], [5, 7], seed=4).x, w.x)


def test_random_subspaces_are_not_orthogonal_and_noise_leaves_them() -> None:
    w = lr.molrg(10, [3, 3], [4, 4], seed=0, subspaces="random", noise=0.1)
    cross = w.bases[0].T @ w.bases[1]
    assert np.abs(cross).max() > 0.05
    for b in w.bases:
        assert np.allclose(b.T @ b, np.eye(3), atol=1e-12)
    assert lr.union_residual(w.x, w.stacked()).min() > 0.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dims": [3], "counts": [2, 2]}, "one count per component"),
        ({"dims": [0], "counts": [2]}, "intrinsic dims"),
        ({"dims": [3], "counts": [0]}, "at least one point"),
        ({"dims": [4, 4], "counts": [2, 2]}, "orthogonal subspaces need"),
        ({"dims": [2], "counts": [2], "subspaces": "skew"}, "subspaces must be"),
        ({"dims": [2], "counts": [2], "noise": -1.0}, "noise"),
    ],
)
def test_generator_refuses_bad_input(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        lr.molrg(6, seed=0, **kwargs)


def test_unequal_dims_cannot_stack() -> None:
    with pytest.raises(ValueError, match="unequal"):
        lr.molrg(8, [2, 3], [2, 2], seed=0).stacked()


@pytest.mark.parametrize("theta", [0.0, 0.3, 1.0, math.pi / 2])
def test_projector_distance_and_principal_angles_known_answer(theta: float) -> None:
    a, b = _rotated_plane(theta)
    assert lr.projector_distance(a, b) == pytest.approx(math.sqrt(2) * math.sin(theta), abs=1e-12)
    angles = lr.principal_angles(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    assert np.allclose(angles, [0.0, theta], atol=1e-12)
    # e for one component: sqrt(2) sin θ / sqrt(2 d) = sin θ / sqrt(2)
    e = lr.subspace_error(a[None], b[None])
    assert e == pytest.approx(math.sin(theta) / math.sqrt(2), abs=1e-12)
    assert lr.captured_energy(a[None], b[None]) == pytest.approx(1 - e**2, abs=1e-12)


def test_projector_distance_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="one shape"):
        lr.projector_distance(np.eye(4)[:, :2], np.eye(4)[:, :3])


def test_subspace_error_is_permutation_invariant_and_basis_free() -> None:
    six = lr.molrg(20, [3] * 6, [1] * 6, seed=1).stacked()
    truth, other = six[:3], six[3:]
    rot = np.linalg.qr(np.random.default_rng(0).standard_normal((3, 3)))[0]
    est = np.stack([truth[2] @ rot, -truth[0], truth[1] @ rot.T])  # reordered, rotated, flipped
    assert lr.subspace_error(est, truth) == pytest.approx(0.0, abs=1e-7)
    first = lr.matched(est, truth)[0]
    assert np.allclose(first @ first.T, truth[0] @ truth[0].T)
    assert lr.subspace_error(other, truth) == pytest.approx(1.0, abs=1e-12)  # all orthogonal


def test_bottleneck_assignment_matches_brute_force() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        est = np.stack([np.linalg.qr(rng.standard_normal((6, 2)))[0] for _ in range(4)])
        truth = np.stack([np.linalg.qr(rng.standard_normal((6, 2)))[0] for _ in range(4)])
        cost = lr._pairwise(est, truth)
        brute = min(max(cost[i, p[i]] for i in range(4)) for p in itertools.permutations(range(4)))
        assert lr.subspace_error(est, truth) == pytest.approx(brute, abs=1e-12)


def test_union_residual_known_answer() -> None:
    bases = np.eye(4)[:, :2][None]
    x = np.array([[1.0, 2.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0], [1.0, 0.0, 1.0, 0.0]])
    assert np.allclose(lr.union_residual(x, bases), [0.0, 1.0, 1 / math.sqrt(2)])


def test_posterior_mean_is_the_bayes_posterior_mean() -> None:
    """Against the mixture posterior from Gaussian densities (scipy), non-orthogonal subspaces."""
    w = lr.molrg(6, [2, 2], [1, 1], seed=2, subspaces="random")
    u = w.stacked()
    pi = np.array([0.3, 0.7])
    s, gamma = 0.8, 0.6
    x_t = np.random.default_rng(1).standard_normal((5, 6))
    cov = [s**2 * b @ b.T + gamma**2 * np.eye(6) for b in u]
    logp = np.stack([multivariate_normal(np.zeros(6), c).logpdf(x_t) for c in cov], 1) + np.log(pi)
    resp = np.exp(logp - logp.max(1, keepdims=True))
    resp /= resp.sum(1, keepdims=True)
    expect = sum(resp[:, [k]] * (s / (s**2 + gamma**2)) * x_t @ u[k] @ u[k].T for k in range(2))
    got = lr.posterior_mean(
        torch.from_numpy(x_t),
        torch.from_numpy(u),
        s,
        torch.full((5,), gamma, dtype=torch.float64),
        torch.from_numpy(np.log(pi)),
    )
    assert np.allclose(got.numpy(), expect, atol=1e-10)


def test_posterior_mean_small_noise_does_not_overflow() -> None:
    u = torch.stack([torch.eye(4)[:, :2], torch.eye(4)[:, 2:]])
    x = torch.tensor([[30.0, 0.0, 0.1, 0.0]])
    out = lr.posterior_mean(x, u, 1.0, torch.tensor([1e-3]))
    assert torch.isfinite(out).all()
    assert torch.allclose(out, torch.tensor([[30.0, 0.0, 0.0, 0.0]]), atol=1e-3)
    with pytest.raises(ValueError, match="bases must be"):
        lr.posterior_mean(x, u[:, :3], 1.0, torch.tensor([1.0]))


def test_pca_is_exact_once_n_reaches_d() -> None:
    w = lr.molrg(10, [4], [4], seed=0)
    assert lr.subspace_error(lr.pca_basis(w.x, 4)[None], w.stacked()) == pytest.approx(0, abs=1e-7)
    short = lr.molrg(10, [4], [3], seed=0)
    assert lr.subspace_error(lr.pca_basis(short.x, 4)[None], short.stacked()) > 0.2


def test_k_subspaces_recovers_a_well_sampled_union_and_beats_nothing_below_d() -> None:
    w = lr.molrg(20, [3, 3], [15, 15], seed=4)
    est = lr.k_subspaces(w.x, 2, 3, seed=0, restarts=5)
    assert lr.subspace_error(est, w.stacked()) < 1e-6
    assert lr.ks_objective(w.x, est) == pytest.approx(float(np.square(w.x).sum()), rel=1e-9)
    assert lr.k_subspaces(w.x, 1, 3, seed=0, restarts=0).shape == (1, 20, 3)
    few = lr.molrg(20, [3, 3], [2, 2], seed=4)  # N_k < d: any split fits, truth not identifiable
    assert lr.subspace_error(lr.k_subspaces(few.x, 2, 3, seed=0, restarts=5), few.stacked()) > 0.1
    with pytest.raises(ValueError, match="restarts"):
        lr.k_subspaces(w.x, 2, 3, seed=0, restarts=-1)


def test_spectral_labels_split_orthogonal_subspaces() -> None:
    w = lr.molrg(20, [2, 2], [10, 10], seed=0)
    labels = lr.spectral_labels(w.x, 2, seed=0)
    agree = (labels == w.labels).mean()
    assert max(agree, 1 - agree) == 1.0
