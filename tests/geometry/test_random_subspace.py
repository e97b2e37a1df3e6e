"""Tests for subspacelab.geometry.random_subspace (Li et al., arXiv:1804.08838)."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from subspacelab.geometry import (
    DenseProjection,
    FastfoodProjection,
    SparseProjection,
    SubspaceModel,
    fwht,
    make_projection,
    toy_min_loss,
    toy_objective,
)

KINDS = ["dense", "sparse", "fastfood"]


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16, 32, 64])
def test_fwht_matches_scipy_hadamard(n):
    g = torch.Generator().manual_seed(n)
    x = torch.randn(3, n, generator=g, dtype=torch.float64)
    expected = x.numpy() @ scipy.linalg.hadamard(n)
    np.testing.assert_allclose(fwht(x).numpy(), expected, rtol=0, atol=1e-12)


def test_fwht_properties():
    x = torch.randn(2, 5, 16, dtype=torch.float64, requires_grad=True)
    y = fwht(x)
    assert y.shape == x.shape
    assert torch.allclose(fwht(y), 16 * x)  # H H = L I
    assert torch.autograd.gradcheck(fwht, (x[0, :2].detach().clone().requires_grad_(),))
    with pytest.raises(ValueError, match="power of two"):
        fwht(torch.zeros(6))


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_projection(kind):
    a = make_projection(kind, 300, 7, seed=11)
    b = make_projection(kind, 300, 7, seed=11)
    c = make_projection(kind, 300, 7, seed=12)
    theta = torch.randn(7)
    assert torch.equal(a(theta), b(theta))
    assert not torch.equal(a(theta), c(theta))
    assert a(theta).shape == (300,)
    assert a(torch.randn(4, 7)).shape == (4, 300)
    # state_dict carries everything: loading a's buffers into c makes them identical
    c.load_state_dict(a.state_dict())
    assert torch.equal(a(theta), c(theta))
    with pytest.raises(ValueError, match=r"\(\.\.\., 7\)"):
        a(torch.zeros(6))


def test_make_projection_rejects_unknown_kind():
    with pytest.raises(ValueError, match="dense, sparse, fastfood"):
        make_projection("gaussian", 10, 2, 0)


def test_dense_columns_unit_norm():
    p = DenseProjection(500, 9, torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.allclose(p.matrix.norm(dim=0), torch.ones(9, dtype=torch.float64), atol=1e-14)
    theta = torch.randn(9, dtype=torch.float64)
    assert torch.allclose(p(theta), p.matrix @ theta)


def test_sparse_projection_structure():
    big_d = 10_000
    p = SparseProjection(big_d, 20, torch.Generator().manual_seed(0), dtype=torch.float64)
    mat = p.as_matrix()
    assert mat.shape == (big_d, 20)
    assert torch.allclose(mat.norm(dim=0), torch.ones(20, dtype=torch.float64), atol=1e-14)
    # density ≈ 1/sqrt(D) = 1%: expected nnz = 2000, std ≈ 44
    assert abs(p.nnz - 2000) < 300
    # non-zeros of column j are ±1/sqrt(nnz_j)
    for j in range(3):
        col = mat[:, j]
        nz = col[col != 0]
        assert torch.allclose(nz.abs(), torch.full_like(nz, 1 / math.sqrt(nz.numel())))
    theta = torch.randn(20, dtype=torch.float64)
    assert torch.allclose(p(theta), mat @ theta, atol=1e-14)
    # tiny D: empty columns are redrawn, so every column is still unit norm
    tiny = SparseProjection(3, 40, torch.Generator().manual_seed(1), density=0.2)
    assert torch.allclose(tiny.as_matrix().norm(dim=0), torch.ones(40), atol=1e-6)


def test_fastfood_matches_explicit_matrix():
    big_d, d = 37, 5
    p = FastfoodProjection(big_d, d, torch.Generator().manual_seed(3), dtype=torch.float64)
    assert p.L == 64
    # explicit matrix column by column
    cols = [p(torch.eye(d, dtype=torch.float64)[j]) for j in range(d)]
    explicit = torch.stack(cols, dim=1)
    theta = torch.randn(d, dtype=torch.float64)
    assert torch.allclose(p(theta), explicit @ theta, atol=1e-12)
    assert torch.allclose(p.as_matrix(), explicit, atol=1e-12)
    # and from the formula (H G Π H B)[:D, :d] / (||G|| sqrt(D)) with scipy's Hadamard matrix
    h = torch.from_numpy(scipy.linalg.hadamard(p.L)).double()
    perm = torch.zeros(p.L, p.L, dtype=torch.float64)
    perm[torch.arange(p.L), p.perm] = 1.0  # (Π v)_i = v[perm[i]]
    full = h @ torch.diag(p.G) @ perm @ h @ torch.diag(p.B)
    formula = full[:big_d, :d] / (p.G.norm() * math.sqrt(big_d))
    assert torch.allclose(explicit, formula, atol=1e-12)
    # columns have roughly unit norm (exactly 1 only in expectation; ~1% spread at D = 1000)
    norms = explicit.norm(dim=0)
    assert bool(((norms > 0.7) & (norms < 1.3)).all())
    big = FastfoodProjection(1000, 20, torch.Generator().manual_seed(0), dtype=torch.float64)
    big_norms = big.as_matrix().norm(dim=0)
    assert bool(((big_norms > 0.97) & (big_norms < 1.03)).all())


def test_fastfood_requires_d_le_l():
    FastfoodProjection(5, 8)  # L = 8
    with pytest.raises(ValueError, match="d <= L"):
        FastfoodProjection(5, 9)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.BatchNorm1d(6))
        self.head = nn.Linear(6, 3)
        self.tied = nn.Linear(6, 3)
        self.tied.weight = self.head.weight  # tied: counted once

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        return self.head(h) + self.tied(h)


@pytest.mark.parametrize("kind", KINDS)
def test_subspace_model_zero_theta_reproduces_base(kind):
    torch.manual_seed(0)
    base = _Net().double().eval()
    x = torch.randn(5, 4, dtype=torch.float64)
    model = SubspaceModel(base, d=7, kind=kind, seed=1).eval()
    expected_d = sum(p.numel() for p in base.parameters())
    assert (model.D, model.d) == (expected_d, 7)
    assert torch.equal(model(x), base(x))
    # the base passed in is untouched
    assert len(list(base.parameters())) == len(dict(base.named_parameters()))
    assert isinstance(base.head.weight, nn.Parameter)
    full = model.full_parameters()
    assert list(full) == [n for n, _ in base.named_parameters()]
    for name, p in base.named_parameters():
        assert torch.equal(full[name], p.detach())


def test_subspace_model_gradients_flow_to_theta_d_only():
    torch.manual_seed(1)
    base = _Net().double().eval()  # eval: BatchNorm must not mutate buffers under torch.func
    model = SubspaceModel(base, d=6, kind="fastfood", seed=2).eval()
    assert [n for n, _ in model.named_parameters()] == ["theta_d"]
    x = torch.randn(8, 4, dtype=torch.float64)
    loss = model(x).square().mean()
    loss.backward()
    assert model.theta_d.grad is not None and model.theta_d.grad.shape == (6,)
    assert float(model.theta_d.grad.abs().sum()) > 0
    assert all(not b.requires_grad and b.grad is None for b in model.buffers())
    # gradient agrees with the chain rule through the explicit projection matrix
    flat = torch.cat([p.detach().flatten() for p in base.parameters()])
    pmat = model.projection.as_matrix()
    names = [n for n, _ in base.named_parameters()]

    def loss_of_flat(v: torch.Tensor) -> torch.Tensor:
        params, i = {}, 0
        for n, p in zip(names, base.parameters(), strict=True):
            params[n] = v[i : i + p.numel()].view(p.shape)
            i += p.numel()
        params["tied.weight"] = params["head.weight"]
        out = torch.func.functional_call(base, params, (x,))
        return out.square().mean()

    g_full = torch.func.grad(loss_of_flat)(flat)
    assert torch.allclose(model.theta_d.grad, pmat.T @ g_full, atol=1e-12)


def test_subspace_model_state_dict_and_training_moves_params():
    torch.manual_seed(2)
    model = SubspaceModel(nn.Linear(3, 2), d=2, kind="sparse", seed=0)
    sd = model.state_dict()
    assert "theta_d" in sd and "base.weight" in sd and "projection.values" in sd
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(4, 3)
    before = {k: v.clone() for k, v in model.full_parameters().items()}
    model(x).sum().backward()
    opt.step()
    after = model.full_parameters()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(ValueError, match="does not match"):
        SubspaceModel(nn.Linear(3, 2), projection=make_projection("dense", 9, 2, 0))


def test_toy_objective():
    theta = torch.zeros(1000, dtype=torch.float64)
    assert float(toy_objective(theta)) == pytest.approx(sum(j * j for j in range(1, 11)))
    sol = torch.arange(1, 11, dtype=torch.float64).repeat_interleave(100) / 100
    assert float(toy_objective(sol)) < 1e-25
    assert toy_objective(torch.zeros(3, 1000)).shape == (3,)
    with pytest.raises(ValueError, match="1000"):
        toy_objective(torch.zeros(999))


def _toy_theta0() -> torch.Tensor:
    return 0.1 * torch.randn(1000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


@pytest.mark.parametrize("d", [5, 8, 9, 10, 11, 15, 20])
def test_toy_intrinsic_dimension_is_ten(d):
    """The toy problem is solvable in a random d-subspace exactly when d >= 10."""
    theta0 = _toy_theta0()
    proj = make_projection("dense", 1000, d, seed=0, dtype=torch.float64)
    floor = toy_min_loss(proj, theta0)
    if d < 10:
        assert floor > 1e-8  # 10 independent constraints, d < 10 directions: provably > 0
        return
    assert floor < 1e-20
    theta_d = torch.zeros(d, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [theta_d],
        lr=1.0,
        max_iter=200,
        tolerance_grad=1e-14,
        tolerance_change=0.0,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = toy_objective(theta0 + proj(theta_d))
        loss.backward()
        return loss

    opt.step(closure)
    final = float(toy_objective(theta0 + proj(theta_d.detach())))
    assert final < 1e-8
    assert final >= floor - 1e-12


@pytest.mark.parametrize("kind", ["sparse", "fastfood"])
def test_toy_floor_other_projections(kind):
    theta0 = _toy_theta0()
    assert toy_min_loss(make_projection(kind, 1000, 9, seed=0), theta0) > 1e-8
    assert toy_min_loss(make_projection(kind, 1000, 12, seed=0), theta0) < 1e-12


def test_subspace_model_with_given_projection():
    base = nn.Linear(3, 2)  # float32 base, float64 projection: offsets are cast per parameter
    proj = make_projection("fastfood", 8, 3, seed=0, dtype=torch.float64)
    model = SubspaceModel(base, projection=proj)
    assert model.theta_d.dtype == torch.float64 and proj.dtype == torch.float64
    with torch.no_grad():
        model.theta_d.fill_(0.5)
    x = torch.randn(4, 3)
    out = model(x)
    assert out.dtype == torch.float32
    full = model.full_parameters()
    assert torch.allclose(out, x @ full["weight"].T + full["bias"])
    assert model.initial_parameters()["weight"].dtype == torch.float32
