"""Tests for subspacelab.geometry.grassmann (GCR, arXiv:2308.01547)."""

import copy
import itertools
import math

import geoopt
import pytest
import torch

from subspacelab.geometry import (
    RiemannianSGD,
    bases_to_weight,
    geodesic_step,
    horizontal_projection,
    init_class_subspaces,
    orthonormality_error,
    orthonormalize,
    principal_angles,
    reorthonormalize,
    subspace_logits,
    weight_to_bases,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _random_state(c: int, d: int, k: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = _gen(seed)
    s = orthonormalize(torch.randn(c, d, k, generator=g, dtype=torch.float64))
    grad = horizontal_projection(s, torch.randn(c, d, k, generator=g, dtype=torch.float64))
    return s, grad


def test_weight_layout_roundtrip():
    w = init_class_subspaces(4, 7, 3, generator=_gen())
    assert w.shape == (12, 7) and w.dtype == torch.float32
    s = weight_to_bases(w, 4, 3)
    assert s.shape == (4, 7, 3)
    assert torch.equal(s[1], w[3:6].T)
    assert torch.equal(bases_to_weight(s), w)
    assert float(orthonormality_error(s).max()) < 1e-6
    assert torch.equal(w, init_class_subspaces(4, 7, 3, generator=_gen()))
    with pytest.raises(ValueError, match="num_classes"):
        weight_to_bases(w, 5, 3)
    with pytest.raises(ValueError, match="exceed"):
        init_class_subspaces(2, 3, 4)


def test_horizontal_projection_is_orthogonal_to_span():
    s, _ = _random_state(3, 9, 2)
    g = torch.randn(3, 9, 2, generator=_gen(1), dtype=torch.float64)
    h = horizontal_projection(s, g)
    assert float((s.transpose(1, 2) @ h).abs().max()) < 1e-14
    assert torch.allclose(horizontal_projection(s, h), h, atol=1e-14)  # idempotent
    with pytest.raises(ValueError, match="same shape"):
        horizontal_projection(s, g[:, :, :1])


def test_geodesic_step_zero_lr_is_identity():
    s, g = _random_state(3, 8, 3)
    assert torch.equal(geodesic_step(s, g, 0.0), s)
    assert torch.equal(geodesic_step(s, torch.zeros_like(g), 0.7), s)  # G = 0: exact too
    s32 = s.float()
    assert torch.equal(geodesic_step(s32, g.float(), 0.0), s32)


def test_geodesic_step_stays_orthonormal_and_matches_closed_form():
    s, g = _random_state(4, 10, 3, seed=2)
    for lr in [1e-3, 0.1, 1.0, 5.0]:
        s1 = geodesic_step(s, g, lr)
        assert float(orthonormality_error(s1).max()) < 1e-13
        u, sig, vh = torch.linalg.svd(g, full_matrices=False)
        v = vh.transpose(1, 2)
        ref = (s @ v * torch.cos(lr * sig).unsqueeze(1) - u * torch.sin(lr * sig).unsqueeze(1)) @ vh
        assert torch.allclose(s1, ref, atol=1e-13)
        # geodesic property: principal angles from S are exactly lr * σ (while lr σ <= π/2)
        if lr * float(sig.max()) < math.pi / 2:
            ang = principal_angles(s, s1)
            assert torch.allclose(ang, (lr * sig).flip(-1), atol=1e-10)


def test_geodesic_step_float32_is_computed_in_float64():
    s, g = _random_state(2, 64, 4, seed=3)
    s32 = s.float()
    out = geodesic_step(s32, g.float(), 0.3)
    assert out.dtype == torch.float32
    assert float(orthonormality_error(out).max()) < 2e-6


def test_geodesic_agrees_with_qr_retraction_to_second_order():
    s, g = _random_state(2, 12, 3, seed=4)
    errs, span_errs = [], []
    lrs = [1e-2, 1e-3]
    for lr in lrs:
        geo = geodesic_step(s, g, lr)
        qr = orthonormalize(s - lr * g)
        errs.append(float((geo - qr).norm()))
        span_errs.append(float(principal_angles(geo[0], qr[0]).max()))
    # matrices agree to O(lr²): shrinking lr by 10 shrinks the gap by ~100
    assert errs[0] < 10 * lrs[0] ** 2 * float(g.norm()) ** 2
    assert 50 < errs[0] / errs[1] < 200
    # the spans even agree to O(lr³): per singular direction the rotation angle is lr·σ for the
    # geodesic and atan(lr·σ) for QR, which differ by (lr·σ)³/3
    sigma_max = float(torch.linalg.svdvals(g[0]).max())
    assert span_errs[0] < (lrs[0] * sigma_max) ** 3
    assert 500 < span_errs[0] / span_errs[1] < 2000


def test_geodesic_step_matches_geoopt_stiefel_exponential_map():
    """Cross-check against geoopt (a dev dependency, so in every `make test`): for a horizontal
    direction (SᵀG = 0) the Grassmann geodesic of Edelman et al. is the Stiefel geodesic of the
    embedded metric, which geoopt's exact retraction evaluates by a matrix exponential of the
    2k × 2k block matrix (Edelman et al. §2.2.2): an independent formula for the same curve.
    geoopt's QR retraction of the same step agrees to second order in the step."""
    s, g = _random_state(3, 9, 4, seed=7)
    exact, qr = geoopt.EuclideanStiefelExact(), geoopt.EuclideanStiefel()
    for lr in [1e-3, 0.1, 0.7]:
        ours = geodesic_step(s, g, lr)
        assert torch.allclose(exact.retr(s, -lr * g), ours, atol=1e-10)
    gaps = [float((qr.retr(s, -lr * g) - geodesic_step(s, g, lr)).norm()) for lr in (1e-2, 1e-3)]
    assert 50 < gaps[0] / gaps[1] < 200  # O(lr²): ten times smaller step, ~100 times closer
    assert exact.check_point_on_manifold(geodesic_step(s, g, 0.7), atol=1e-12)


def test_geodesic_descent_converges_to_target_subspace():
    # minimise f(S) = -||Sᵀ A||_F² for an orthonormal A: the optimum is span(S) = span(A)
    g = _gen(5)
    d, k = 10, 3
    a = orthonormalize(torch.randn(d, k, generator=g, dtype=torch.float64))
    s = orthonormalize(torch.randn(1, d, k, generator=g, dtype=torch.float64))
    losses = []
    for _ in range(150):
        losses.append(float(-(s[0].T @ a).square().sum()))
        euclid = -2.0 * a @ (a.T @ s)
        s = geodesic_step(s, horizontal_projection(s, euclid), 0.2)
    assert all(b <= a_ + 1e-12 for a_, b in itertools.pairwise(losses))
    assert float(principal_angles(s[0], a).max()) < 1e-6
    assert losses[-1] == pytest.approx(-k, abs=1e-9)


def test_reorthonormalize_keeps_nearly_orthonormal_bases():
    s, _ = _random_state(3, 8, 3, seed=6)
    noisy = s + 1e-4 * torch.randn(s.shape, generator=_gen(7), dtype=torch.float64)
    r = reorthonormalize(noisy.float())
    assert r.dtype == torch.float32
    assert float(orthonormality_error(r).max()) < 1e-6
    assert float((r.double() - s).abs().max()) < 1e-3  # no column sign flips


def test_subspace_logits_invariant_to_basis_rotation():
    g = _gen(8)
    c, d, k = 5, 12, 3
    w = init_class_subspaces(c, d, k, generator=g, dtype=torch.float64)
    x = torch.randn(7, d, generator=g, dtype=torch.float64)
    logits = subspace_logits(x, w, c, k, gamma=4.0)
    assert logits.shape == (7, c)
    s = weight_to_bases(w, c, k)
    rot = torch.linalg.qr(torch.randn(c, k, k, generator=g, dtype=torch.float64)).Q
    w_rot = bases_to_weight(s @ rot)
    assert not torch.allclose(w_rot, w)
    assert torch.allclose(subspace_logits(x, w_rot, c, k, gamma=4.0), logits, atol=1e-13)
    # scale invariance in x and the explicit definition γ ||S_iᵀ x̂||
    assert torch.allclose(subspace_logits(3.0 * x, w, c, k, gamma=4.0), logits, atol=1e-13)
    x_hat = x / x.norm(dim=1, keepdim=True)
    ref = 4.0 * torch.einsum("cdk,nd->nck", s, x_hat).norm(dim=-1)
    assert torch.allclose(logits, ref, atol=1e-13)
    assert float(logits.max()) <= 4.0 + 1e-12
    with pytest.raises(ValueError, match="weight"):
        subspace_logits(x, w[:-1], c, k, 1.0)


def _make_problem(seed: int, reorth_every: int = 1, momentum: float = 0.9):
    g = _gen(seed)
    c, d, k = 4, 16, 3
    weight = torch.nn.Parameter(init_class_subspaces(c, d, k, generator=g))
    x = torch.randn(64, d, generator=g)
    y = torch.randint(0, c, (64,), generator=g)
    opt = RiemannianSGD(
        [weight], lr=0.2, momentum=momentum, reorth_every=reorth_every, num_classes=c, k=k
    )

    def loss_fn() -> torch.Tensor:
        return torch.nn.functional.cross_entropy(subspace_logits(x, weight, c, k, 8.0), y)

    return weight, opt, loss_fn, (c, k)


@pytest.mark.parametrize("reorth_every", [1, 10])
def test_riemannian_sgd_keeps_orthonormality_and_learns(reorth_every):
    weight, opt, loss_fn, (c, k) = _make_problem(0, reorth_every=reorth_every)
    first = float(loss_fn().detach())
    for _ in range(50):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
        assert float(orthonormality_error(weight_to_bases(weight.detach(), c, k)).max()) < 1e-5
    assert float(loss_fn().detach()) < first - 0.1
    assert opt.global_step == 50


def test_riemannian_sgd_first_step_is_geodesic_step():
    weight, opt, loss_fn, (c, k) = _make_problem(1, momentum=0.0)
    loss_fn().backward()
    s = weight_to_bases(weight.detach(), c, k).double()
    h = horizontal_projection(s, weight_to_bases(weight.grad, c, k).double())
    expected = reorthonormalize(geodesic_step(s, h, 0.2)).float()
    with torch.no_grad():  # must also work when called under no_grad
        opt.step()
    assert torch.allclose(weight_to_bases(weight.detach(), c, k), expected, atol=1e-6)


def test_riemannian_sgd_state_dict_roundtrip():
    weight, opt, loss_fn, _ = _make_problem(2, reorth_every=3)
    for _ in range(4):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    sd = copy.deepcopy(opt.state_dict())  # as if saved to disk: no shared momentum buffers
    assert opt.global_step == 4
    weight2 = torch.nn.Parameter(weight.detach().clone())
    opt2 = RiemannianSGD([weight2], lr=0.2, reorth_every=3, num_classes=4, k=3)
    opt2.load_state_dict(sd)
    assert opt2.global_step == 4
    for w, o in [(weight, opt), (weight2, opt2)]:
        o.zero_grad()
        loss = torch.nn.functional.cross_entropy(
            subspace_logits(torch.ones(2, 16), w, 4, 3, 8.0), torch.tensor([0, 1])
        )
        loss.backward()
        o.step()
    assert torch.equal(weight, weight2)


def test_riemannian_sgd_infers_layout_and_validates():
    w = torch.nn.Parameter(init_class_subspaces(3, 5, 2))
    RiemannianSGD([w], lr=0.1, k=2)  # num_classes inferred
    RiemannianSGD([w], lr=0.1, num_classes=3)  # k inferred
    with pytest.raises(ValueError, match="num_classes or k"):
        RiemannianSGD([w], lr=0.1)
    with pytest.raises(ValueError, match="multiple"):
        RiemannianSGD([w], lr=0.1, k=4)
    with pytest.raises(ValueError, match="does not match"):
        RiemannianSGD([w], lr=0.1, num_classes=2, k=2)
    with pytest.raises(ValueError, match="reorth_every"):
        RiemannianSGD([w], lr=0.1, k=2, reorth_every=0)
    with pytest.raises(ValueError, match="momentum"):
        RiemannianSGD([w], lr=0.1, k=2, momentum=1.0)
    with pytest.raises(ValueError, match="shape"):
        RiemannianSGD([torch.nn.Parameter(torch.zeros(2, 3, 4))], lr=0.1, k=2)
