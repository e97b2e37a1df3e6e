"""The selective scan, routes, GFU, SS2D and the multi-head scan (subspacelab.modules.scan)
against known answers, the token-by-token reference and mambapy's parallel scan."""

from __future__ import annotations

import math

import pytest
import torch

from subspacelab.modules import scan as S

SIZES = [(8, 8), (4, 4), (5, 7), (3, 3), (1, 4), (6, 2)]


def _inputs(
    b: int, d: int, length: int, n: int, groups: int, seed: int = 0
) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    x = torch.randn(b, d, length, generator=g, dtype=f64)
    dt = torch.randn(b, d, length, generator=g, dtype=f64)
    a = -(torch.rand(d, n, generator=g, dtype=f64) * 4 + 0.1)
    bb = torch.randn(b, groups, n, length, generator=g, dtype=f64)
    cc = torch.randn(b, groups, n, length, generator=g, dtype=f64)
    return (
        x,
        dt,
        a,
        bb,
        cc,
        torch.randn(d, generator=g, dtype=f64),
        torch.randn(d, generator=g, dtype=f64),
    )


@pytest.mark.parametrize(("length", "chunk"), [(64, None), (64, 4), (60, 6), (7, 1), (16, 16)])
def test_scan_matches_the_sequential_reference_values_and_gradients(
    length: int, chunk: int | None
) -> None:
    x, dt, a, bb, cc, dd, bias = _inputs(2, 6, length, 4, 2)
    leaves = [t.requires_grad_() for t in (x, dt, a, bb, cc)]
    y = S.selective_scan(x, dt, a, bb, cc, dd, bias, delta_softplus=True, chunk=chunk)
    ref = S.selective_scan_sequential(x, dt, a, bb, cc, dd, bias, delta_softplus=True)
    torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-10)
    w = torch.randn_like(y)
    got = torch.autograd.grad((y * w).sum(), leaves)
    want = torch.autograd.grad((ref * w).sum(), leaves)
    for p, q in zip(got, want, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-9)


def test_linear_scan_gradcheck() -> None:
    g = torch.Generator().manual_seed(3)
    a = torch.rand(2, 12, 3, generator=g, dtype=torch.float64, requires_grad=True)
    u = torch.randn(2, 12, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, q: S.linear_scan(p, q, 4), (a, u))


def test_known_answers_a_zero_and_constant_inputs() -> None:
    """A = 0: Ā = 1, so h_t = Σ_{s≤t} Δ_s B_s x_s, a cumulative sum. A = −a constant with constant
    Δ, B = C = 1, x = 1: h_t = Δ (1 − e^{−aΔ(t+1)}) / (1 − e^{−aΔ})."""
    b, d, length, n = 1, 3, 32, 2
    x = torch.randn(b, d, length, dtype=torch.float64)
    dt = torch.rand(b, d, length, dtype=torch.float64)
    bb, cc = (
        torch.ones(b, n, length, dtype=torch.float64),
        torch.ones(b, n, length, dtype=torch.float64),
    )
    y = S.selective_scan(x, dt, torch.zeros(d, n, dtype=torch.float64), bb, cc)
    torch.testing.assert_close(y, n * torch.cumsum(dt * x, -1))
    rate, delta = 0.7, 0.3
    y = S.selective_scan(
        torch.ones(b, d, length, dtype=torch.float64),
        torch.full((b, d, length), delta, dtype=torch.float64),
        torch.full((d, n), -rate, dtype=torch.float64),
        bb,
        cc,
    )
    t = torch.arange(length, dtype=torch.float64)
    decay = math.exp(-rate * delta)
    want = n * delta * (1 - decay ** (t + 1)) / (1 - decay)
    torch.testing.assert_close(y[0, 0], want)


def test_linear_scan_matches_mambapy_pscan() -> None:
    pscan = pytest.importorskip("mambapy.pscan").pscan
    g = torch.Generator().manual_seed(1)
    a = torch.rand(2, 64, 5, 4, generator=g, dtype=torch.float64)  # mambapy: (B, L, D, N)
    u = torch.randn(2, 64, 5, 4, generator=g, dtype=torch.float64)
    ours = S.linear_scan(a.transpose(1, 2), u.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(ours, pscan(a, u))


def test_selective_scan_matches_mambapy_mamba_block_scan() -> None:
    """mambapy's MambaBlock.selective_scan (Δ already softplus-ed, B and C shared by channels)."""
    mamba = pytest.importorskip("mambapy.mamba")
    x, dt, a, bb, cc, dd, _ = _inputs(2, 8, 32, 4, 1, seed=4)
    delta = torch.nn.functional.softplus(dt)
    block = mamba.MambaBlock(mamba.MambaConfig(d_model=4, n_layers=1, d_state=4, expand_factor=2))
    ref = block.selective_scan(
        x.transpose(1, 2),
        delta.transpose(1, 2),
        a,
        bb[:, 0].transpose(1, 2),
        cc[:, 0].transpose(1, 2),
        dd,
    ).transpose(1, 2)
    torch.testing.assert_close(S.selective_scan(x, delta, a, bb[:, 0], cc[:, 0], dd), ref)


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_routes_are_bijections(h: int, w: int) -> None:
    for family in S.FAMILIES:
        for route in S.family_routes(family, h, w):
            assert torch.equal(route.sort().values, torch.arange(h * w)), family
    for route in S.cross_scan_routes(h, w):
        assert torch.equal(route.sort().values, torch.arange(h * w))


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_scan_then_inverse_reindex_is_identity(h: int, w: int) -> None:
    x = torch.randn(2, 3, h * w)
    for routes in [S.family_routes(f, h, w) for f in S.FAMILIES] + [S.cross_scan_routes(h, w)]:
        seqs = S.route_scan(x, routes)
        assert seqs.shape == (2, 4, 3, h * w)
        torch.testing.assert_close(S.route_merge(seqs, routes), x[:, None].expand(2, 4, 3, h * w))


def test_routes_by_hand() -> None:
    assert S.snake(2, 3).tolist() == [0, 1, 2, 5, 4, 3]
    assert S.snake_columns(2, 3).tolist() == [0, 3, 4, 1, 2, 5]
    assert S.transposed(2, 3).tolist() == [0, 3, 1, 4, 2, 5]
    assert S.zigzag(3, 3).tolist() == [0, 1, 3, 6, 4, 2, 5, 7, 8]
    assert S.zigzag_mirror(3, 3).tolist() == [2, 1, 5, 8, 4, 0, 3, 7, 6]
    assert S.spiral(3, 4).tolist() == [0, 1, 2, 3, 7, 11, 10, 9, 8, 4, 5, 6]
    assert S.spiral(3, 3)[-1] == 4  # odd side: ends on the centre, which appears once
    assert S.spiral_flipped(3, 3).tolist() == [6, 7, 8, 5, 2, 1, 0, 3, 4]
    r = S.family_routes("Z", 2, 2)
    assert r.tolist() == [[0, 1, 2, 3], [3, 2, 1, 0], [0, 2, 1, 3], [3, 1, 2, 0]]
    with pytest.raises(ValueError, match="route family"):
        S.family_routes("Q", 2, 2)


def test_gfu_finite_and_zero_when_all_routes_are_equal() -> None:
    y = torch.randn(2, 1, 5, 7).expand(2, 4, 5, 7)  # cv = 0
    for t in (0.0, 0.5):
        out = S.gfu(y, t)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, torch.zeros(2, 5, 7))


def test_gfu_by_hand() -> None:
    ys = torch.tensor([[1.0, 2.0, 3.0, 6.0]]).view(1, 4, 1)
    total, std = 12.0, float(torch.tensor([1.0, 2.0, 3.0, 6.0]).std())
    spread = (0 + 1 + 2 + 5) / 4
    cv = std / (spread + 1e-5)
    torch.testing.assert_close(S.gfu(ys, 0.5), torch.tensor([[total * max(cv - 0.5, 0.0)]]))
    torch.testing.assert_close(S.gfu(ys, 10.0), torch.tensor([[0.0]]))


def _count(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_parameters_by_hand_and_mhs_below_ss2d() -> None:
    d, n = 32, 16
    ss2d, mhs = S.SS2D(d, n, 2, 8, 8), S.MultiHeadScan(d, n, 4, 0.5, 8, 8)
    e, r = 64, 2  # inner width, dt_rank = ceil(32 / 16)
    engine = 4 * (e * (r + 2 * n) + e * r + e + e * n + e)
    assert _count(ss2d) == d * 2 * e + e * 9 + e + engine + 2 * e + e * d
    ds, rs = 8, 1
    head = 4 * (ds * (rs + 2 * n) + ds * rs + ds + ds * n + ds)
    assert _count(mhs) == d * 2 * d + d * 9 + d + d * d + 4 * head + 2 * d + d * d + 2 * d
    assert _count(mhs) < _count(ss2d)


def test_blocks_shapes_and_route_equivariance() -> None:
    """SS2D's four directions are closed under the 180° rotation of the grid (raster <-> reversed
    raster), so SS2D commutes with it when its four parameter copies are tied pairwise."""
    torch.manual_seed(0)
    x = torch.randn(2, 6, 6, 16)
    ss2d, mhs = S.SS2D(16, 4, 2, 6, 6), S.MultiHeadScan(16, 4, 4, None, 6, 6)
    assert ss2d(x).shape == x.shape and mhs(x).shape == x.shape
    with torch.no_grad():
        for name in ("x_proj", "dt_proj", "dt_bias"):
            p = getattr(ss2d.engine, name)
            p[2:] = p[:2].clone()
        ss2d.conv.weight.copy_(ss2d.conv.weight.flip(-1, -2) + ss2d.conv.weight)  # 180°-symmetric
    rot = x.flip(1, 2)
    torch.testing.assert_close(ss2d(rot), ss2d(x).flip(1, 2), rtol=1e-4, atol=1e-5)


def test_bad_inputs_are_refused() -> None:
    x, dt, a, bb, cc, _, _ = _inputs(1, 6, 8, 4, 4)
    with pytest.raises(ValueError, match="B must be"):
        S.selective_scan(x, dt, a, bb, cc)  # 4 groups do not divide 6 channels
    with pytest.raises(ValueError, match="chunk must divide"):
        S.linear_scan(torch.rand(1, 8, 2), torch.rand(1, 8, 2), chunk=3)
    with pytest.raises(ValueError, match="heads"):
        S.MultiHeadScan(10, 4, 4, None, 4, 4)
