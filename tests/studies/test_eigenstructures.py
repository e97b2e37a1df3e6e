"""eigenstructures: probes, the nested loss against its closed form, the batched point MLPs, the
eigenmaps baseline, and every claim decided three ways."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from subspacelab.registry import Metrics
from subspacelab.studies.eigenstructures import core
from subspacelab.studies.eigenstructures.study import STUDY
from subspacelab.worlds import manifolds as mf


def _ring(n: int) -> np.ndarray:
    t = 2 * np.pi * np.arange(n) / n
    return np.stack([np.cos(t), np.sin(t)], 1)


def test_smoother_is_row_stochastic_with_self_loops() -> None:
    dist = core.knn_distances(_ring(12), 2)
    s = core.smoother(dist, 0.5)
    np.testing.assert_allclose(np.asarray(s.sum(1)).ravel(), 1.0)
    assert np.all(s.diagonal() > 0) and s.nnz == 12 * 3
    w = np.exp(-((2 * np.sin(np.pi / 12)) ** 2) / (2 * 0.25))
    assert s[0, 1] == pytest.approx(w / (1 + 2 * w))


def test_probes_are_smooth_and_unit_rms() -> None:
    s = core.smoother(core.knn_distances(_ring(60), 2), 0.3)
    f = core.probes(s, 200, 30, np.random.default_rng(0))
    assert f.shape == (60, 200)
    assert f.pow(2).mean().item() == pytest.approx(1.0, rel=1e-5)
    rough = f.diff(dim=0).pow(2).mean().item()
    white = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, (60, 200)))
    assert rough < 0.05 * (white / white.pow(2).mean().sqrt()).diff(dim=0).pow(2).mean().item()


def test_nested_loss_meets_the_closed_form_at_its_eigenbasis() -> None:
    """With the mass fixed at uniform (first column constant) the top eigenvectors of the probe
    covariance attain the bound, and any other basis does worse."""
    n, k = 40, 5
    rng = np.random.default_rng(0)
    f = core.probes(core.smoother(core.knn_distances(_ring(n), 3), 0.4), 300, 10, rng).double()
    _, vecs = core.closed_form_loss(np.ones(n), f.numpy(), k)
    cov = f.numpy() @ f.numpy().T / f.shape[1]
    top = np.linalg.eigh(cov)[1][:, ::-1][:, :k]
    assert mf.energy_captured(vecs, top) == pytest.approx(1.0)
    # a basis whose first column is constant (uniform mass n·Q₁² = 1) inside the top span:
    # the loss equals the closed form computed with the same mass
    q = np.linalg.qr(np.concatenate([np.ones((n, 1)), top[:, 1:]], 1))[0]
    q[:, 0] = np.abs(q[:, 0])
    loss = core.nested_loss(torch.from_numpy(q), f).item()
    own, _ = core.closed_form_loss(n * q[:, 0] ** 2, f.numpy(), k)
    assert loss >= own - 1e-9
    random = np.linalg.qr(np.concatenate([np.ones((n, 1)), rng.standard_normal((n, k - 1))], 1))[0]
    assert core.nested_loss(torch.from_numpy(random), f).item() > loss
    errs = core.truncation_errors(torch.from_numpy(q), f).numpy()
    assert np.all(np.diff(errs) <= 1e-12)  # more columns never reconstruct worse
    lam = core.eigenvalue_estimates(errs)
    assert np.all(np.diff(lam) >= 0)
    with pytest.raises(ValueError, match="not positive"):
        core.eigenvalue_estimates(np.array([1.0, 0.0]))


def test_detached_mass_changes_the_gradient_not_the_loss() -> None:
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(40, 5, generator=g, dtype=torch.float64)
    f = torch.randn(40, 7, generator=g, dtype=torch.float64)
    grads = []
    for detach in (False, True):
        r = raw.clone().requires_grad_(True)
        loss = core.nested_loss(core.orthonormal(r), f, detach_mass=detach)
        loss.backward()
        grads.append((loss.item(), r.grad))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-12)
    assert not torch.allclose(grads[0][1], grads[1][1])
    # with the mass a constant, the loss is the plain projection error of fixed whitened probes
    w = core.orthonormal(raw)[:, :1].abs()
    r = raw.clone().requires_grad_(True)
    q = core.orthonormal(r)
    g_fixed = math.sqrt(40) * w * f
    errs = (g_fixed * g_fixed).sum(0)[None, :] - ((q.T @ g_fixed) ** 2).cumsum(0)
    (errs.mean(1).mean() / math.sqrt(5)).backward()
    torch.testing.assert_close(r.grad, grads[1][1])


def test_truncation_errors_equal_the_definition_with_g_formed() -> None:
    """The product form (no n × probes g) gives the definition's values and gradients: g = √n·w⊙f
    formed, errors mean_p(‖g‖² − cumsum ‖Q_mᵀ g‖²), the mass in the gradient."""
    gen = torch.Generator().manual_seed(1)
    raw = torch.randn(30, 6, generator=gen, dtype=torch.float64)
    f = torch.randn(30, 11, generator=gen, dtype=torch.float64)
    r1, r2 = raw.clone().requires_grad_(True), raw.clone().requires_grad_(True)
    fast = core.truncation_errors(core.orthonormal(r1), f)
    q = core.orthonormal(r2)
    g = math.sqrt(30) * q[:, :1].abs() * f
    slow = ((g * g).sum(0)[None, :] - ((q.T @ g) ** 2).cumsum(0)).mean(1)
    torch.testing.assert_close(fast, slow)
    weights = torch.arange(1.0, 7.0, dtype=torch.float64)
    (fast * weights).sum().backward()
    (slow * weights).sum().backward()
    torch.testing.assert_close(r1.grad, r2.grad)


def test_point_transformer_is_per_seed_and_permutation_equivariant() -> None:
    """The full profile's network: the same seed gives the same network whatever the seed list;
    global attention without positions makes it permutation-equivariant over the points."""
    widths = [3, 8, 16, 5]
    a = core.PointTransformerStack(widths, [0, 1], layers=2, heads=4, ffn=16)
    b = core.PointTransformerStack(widths, [1], layers=2, heads=4, ffn=16)
    x = torch.randn(2, 12, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a(x)[1], b(x[1:])[0])
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a(x[:, perm]), a(x)[:, perm], rtol=1e-4, atol=1e-5)
    assert a(x).shape == (2, 12, 5)
    with pytest.raises(ValueError, match="divisible"):
        core.PointTransformerStack(widths, [0], layers=1, heads=3, ffn=16)


def test_point_mlp_stack_is_seeded_per_network() -> None:
    a = core.PointMLPStack([3, 8, 4], [0, 1])
    b = core.PointMLPStack([3, 8, 4], [1])
    x = torch.randn(1, 5, 3)
    torch.testing.assert_close(a(x.expand(2, 5, 3))[1], b(x)[0])
    assert core.orthonormal(a(x.expand(2, 5, 3))).shape == (2, 5, 4)
    with pytest.raises(ValueError, match="widths"):
        core.PointMLPStack([3], [0])


def test_laplacian_eigenmaps_recovers_the_ring_fourier_modes() -> None:
    ring = _ring(64)
    basis = core.laplacian_eigenmaps(ring, 2, 3)
    t = 2 * np.pi * np.arange(64) / 64
    truth = np.stack([np.ones(64), np.cos(t), np.sin(t)], 1)
    assert mf.energy_captured(basis, truth) == pytest.approx(1.0, abs=1e-9)


def _raw(shift: float, spread: float) -> dict[str, list[float]]:
    noise = np.array([1.0, -1.0, 0.5]) * spread
    m = {
        "sphere/learned/gap": 0.05 - shift + noise,
        "sphere/learned/capture/g0": 0.95 + shift + noise,
        "sphere/learned/capture/g1": 0.95 + shift + noise,
        "sphere/learned/capture/g2": 0.85 + shift + noise,
        "sphere/init/capture/g2": np.full(3, 0.3),
        "sphere/le/capture/g2": np.full(3, 0.9),
        "sphere/learned/spearman": -(0.8 + shift + noise),  # the sign does not matter
        # the control arm is reported beside the claims, never decides them
        "sphere/detached/gap": np.full(3, 9.0),
        "sphere/detached/capture/g2": np.full(3, 0.0),
        "sphere/detached/spearman": np.full(3, 0.0),
    }
    return {k: [float(v) for v in np.broadcast_to(x, 3)] for k, x in m.items()}


@pytest.mark.parametrize(
    ("shift", "spread", "verdict"),
    [(0.02, 0.001, "holds"), (-0.02, 0.001, "does not hold"), (0.001, 0.02, "inconclusive")],
)
def test_claims_three_ways(shift: float, spread: float, verdict: str) -> None:
    m = Metrics(_raw(shift, spread))
    for claim in STUDY.claims:
        assert claim.check(m).verdict == verdict, claim.id


def test_capture_claim_fails_when_an_untrained_net_would_pass() -> None:
    m = _raw(0.02, 0.001)
    m["sphere/init/capture/g2"] = [0.9, 0.9, 0.9]
    assert STUDY.claims[1].check(Metrics(m)).verdict == "does not hold"
