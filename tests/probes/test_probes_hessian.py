"""Hessian probes against known answers: exact H, G, HVPs, Lanczos (arXiv:1706.04454)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from subspacelab.probes import hessian as hs


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 3)).double()


def _data(n: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (n,), generator=g
    )


def test_linear_model_hessian_is_gauss_newton_and_closed_form() -> None:
    model = nn.Linear(3, 2, bias=False).double()
    fn, theta = hs.flat_model(model)
    x, y = _data()
    y = y.clamp(max=1)
    h = hs.exact_hessian(fn, theta, x, y, "mse")
    # MSE ½‖Wx − t‖² averaged: H = I_k ⊗ (XᵀX / N) in row-major vec(W)
    expected = torch.kron(torch.eye(2, dtype=torch.float64), x.T @ x / x.shape[0])
    torch.testing.assert_close(h, expected)
    torch.testing.assert_close(hs.gauss_newton(fn, theta, x, "mse"), expected)


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_hvp_and_gnvp_match_exact_matrices(loss: str) -> None:
    fn, theta = hs.flat_model(_mlp())
    x, y = _data()
    h = hs.exact_hessian(fn, theta, x, y, loss)
    g = hs.gauss_newton(fn, theta, x, loss)
    v = torch.randn(theta.numel(), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(hs.hvp_fn(fn, theta, x, y, loss)(v), h @ v)
    torch.testing.assert_close(hs.gnvp_fn(fn, theta, x, loss)(v), g @ v)
    # finite differences of the gradient agree with the autograd HVP
    grad = torch.func.grad(hs.full_loss(fn, x, y, loss))
    eps = 1e-6
    fd = (grad(theta + eps * v) - grad(theta - eps * v)) / (2 * eps)
    torch.testing.assert_close(fd, h @ v, rtol=1e-6, atol=1e-7)
    # G is positive semi-definite; H - G is the residual term, nonzero for a tanh net
    assert float(torch.linalg.eigvalsh(g).min()) > -1e-10
    assert float(torch.linalg.norm(h - g)) > 1e-6


@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("widths", [(4,), (5, 6), (3, 4, 5)])
def test_closed_form_mlp_hessian_matches_autograd(loss: str, widths: tuple[int, ...]) -> None:
    torch.manual_seed(2)
    dims = (3, *widths, 3)
    mods: list[nn.Module] = []
    for a, b in itertools.pairwise(dims):
        mods += [nn.Linear(a, b), nn.Tanh()]
    model = nn.Sequential(*mods[:-1]).double()
    x, y = _data()
    fn, theta = hs.flat_model(model)
    h, g = hs.mlp_hessian(model, x, y, loss)
    torch.testing.assert_close(h, hs.exact_hessian(fn, theta, x, y, loss), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g, hs.gauss_newton(fn, theta, x, loss), rtol=1e-10, atol=1e-12)


def test_closed_form_mlp_hessian_refuses_other_models() -> None:
    x, y = _data()
    relu = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3)).double()
    with pytest.raises(ValueError, match="Linear, Tanh"):
        hs.mlp_hessian(relu, x, y, "ce")
    no_bias = nn.Sequential(nn.Linear(3, 3, bias=False)).double()
    with pytest.raises(ValueError, match="with biases"):
        hs.mlp_hessian(no_bias, x, y, "ce")


def test_lanczos_matches_full_spectrum() -> None:
    fn, theta = hs.flat_model(_mlp())
    x, y = _data()
    h = hs.exact_hessian(fn, theta, x, y, "ce")
    exact = torch.linalg.eigvalsh(h).flip(0)[:4].numpy()
    approx = hs.lanczos_top(hs.hvp_fn(fn, theta, x, y, "ce"), theta.numel(), 4)
    np.testing.assert_allclose(approx, exact, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="k"):
        hs.lanczos_top(hs.hvp_fn(fn, theta, x, y, "ce"), theta.numel(), 0)


def test_spectrum_summaries() -> None:
    eig = torch.tensor([100.0, 90.0, 80.0, 1e-2, 1e-3, 1e-4, -1e-4, 0.0], dtype=torch.float64)
    assert hs.gap_outliers(eig, 6) == 3
    assert hs.bulk_fraction(eig, 1e-3) == pytest.approx(5 / 8)
    assert hs.threshold_outliers(eig, 0.5, 10.0) == 3
    a = torch.diag(torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64))
    assert hs.top_overlap(a, a, 2) == pytest.approx(1.0)
    b = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    assert hs.top_overlap(a, b, 1) == pytest.approx(0.0)


def test_unknown_loss() -> None:
    with pytest.raises(ValueError, match="allowed: mse, ce"):
        hs.loss_of_outputs(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), "hinge")


def test_exact_hessian_and_per_sample_jacobian_match_torch_func() -> None:
    fn, theta = hs.flat_model(_mlp())
    x, y = _data()
    full = torch.func.hessian(hs.full_loss(fn, x, y, "ce"))(theta)
    torch.testing.assert_close(hs.exact_hessian(fn, theta, x, y, "ce"), 0.5 * (full + full.T))
    jac = torch.func.jacrev(lambda t: fn(t, x))(theta)  # (n, k, P) of the whole batch
    torch.testing.assert_close(hs.per_sample_jacobian(fn, theta, x), jac)
