"""molrg_diffusion: the reduced DSM loss against the n-dimensional one, the batched DAEs, the
per-seed threshold, and every claim decided three ways on hand-made metrics."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from subspacelab.config import ParamsError
from subspacelab.registry import Metrics
from subspacelab.studies.molrg_diffusion import core
from subspacelab.studies.molrg_diffusion import study as st
from subspacelab.studies.molrg_diffusion.config import DAEConfig, WorldConfig
from subspacelab.worlds import lowrank as lr
from tests.helpers import make_workspace, tiny_params


def test_grid_cells_and_batches() -> None:
    cells = core.grid([8], [2], [3], [-1, 0, 1], [2, 3])
    assert [c.nk for c in cells] == [2, 3, 4, 6, 9]
    assert cells[0].key == "K2_n8_d3_N2" and cells[0].group == "K2_n8_d3"
    assert {c.batch for c in cells} == {"K2_n8_d3_few", "K2_n8_d3_many"}
    assert [c.nk for c in core.grid([8], [1], [1], [-1, 0], [2])] == [1, 2]  # N_k = 0 dropped
    assert all(core.Cell.from_key(c.key) == c for c in cells)
    with pytest.raises(ValueError, match="not a cell key"):
        core.Cell.from_key("K2_n8_d3")


def test_reduced_loss_is_the_n_dimensional_loss_draw_for_draw() -> None:
    """With h = L⁻¹Uᵀε the K·d-dimensional loss equals ‖E[x_0|x_t] − x_0‖² computed in R^n."""
    k, n, d, p, draws = 2, 9, 2, 5, 4
    x0 = torch.from_numpy(lr.molrg(n, [d] * k, [3, 2], seed=0).x)
    u = torch.from_numpy(lr.molrg(n, [d] * k, [1, 1], seed=1, subspaces="random").stacked())
    eps = torch.randn(p, draws, n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    sigma = torch.linspace(0.05, 2.0, p * draws, dtype=torch.float64).view(p, draws)
    x_t = x0[:, None] + sigma[..., None] * eps
    full = (lr.posterior_mean(x_t, u, 1.0, sigma) - x0[:, None]).square().sum(-1)
    cat = u.permute(1, 0, 2).reshape(n, k * d)
    gram = cat.T @ cat
    chol = torch.linalg.cholesky(gram)
    h = torch.linalg.solve_triangular(chol, (eps @ cat).unsqueeze(-1), upper=False).squeeze(-1)
    reduced = core.reduced_loss(x0.square().sum(-1), x0 @ cat, gram, chol, h, sigma, k)
    assert torch.allclose(reduced, full, atol=1e-10)


def _group(seed: int = 0) -> tuple[core.GroupDAEs, list[lr.MoLRG]]:
    worlds = [lr.molrg(8, [2, 2], [c, c], seed=seed + c) for c in (2, 4)]
    x = torch.zeros(2, 8, 8)
    for i, w in enumerate(worlds):
        x[i, : len(w.x)] = torch.from_numpy(w.x).float()
    init = torch.randn(2, 3, 2, 8, 2, generator=torch.Generator().manual_seed(seed))
    return core.GroupDAEs(x, torch.tensor([4, 8]), init), worlds


def test_group_losses_ignore_padding_and_both_arms_start_alike() -> None:
    group, _ = _group()
    assert group.bases().shape == (2, 2, 3, 2, 8, 2)
    assert torch.allclose(group.bases()[0], group.bases()[1], atol=1e-6)  # one start, both arms
    first = group.losses(torch.Generator().manual_seed(1), 4, 0.05, 2.0)
    assert first.shape == (2, 2, 3)
    assert torch.allclose(first[0], first[1], rtol=1e-5)  # shared noise, same start
    group.x[0, 4:] = 5.0  # garbage in world 0's padding
    group.x0_sq[0, 4:] = 100.0
    again = group.losses(torch.Generator().manual_seed(1), 4, 0.05, 2.0)
    assert torch.allclose(first, again)
    with pytest.raises(ValueError, match="counts"):
        core.GroupDAEs(torch.zeros(3, 8, 8), torch.tensor([4, 8]), torch.randn(2, 3, 2, 8, 2))


def test_retraction_keeps_u_orthonormal_and_training_recovers_pca() -> None:
    """K = 1, N = 3d: a short Adam run on the summed loss finds the true subspace (QR arm)."""
    w = lr.molrg(8, [2], [6], seed=3)
    group = core.GroupDAEs(
        torch.from_numpy(w.x).float()[None],
        torch.tensor([6]),
        torch.randn(1, 2, 1, 8, 2, generator=torch.Generator().manual_seed(0)),
    )
    net = core.MoLRGDAEs({"g": group}, draws=8, lo=0.05, hi=2.0, seed=0)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        net().backward()
        opt.step()
        net.retract()
    u = group.u.detach()
    assert torch.allclose(u.transpose(-2, -1) @ u, torch.eye(2).expand_as(u.mT @ u), atol=1e-5)
    losses = net.selection_losses(16, seed=0)["g"].numpy()
    bases = st.orthonormalize(group.bases().detach().double()).numpy()
    chosen, idx = core.select(bases, losses)
    assert chosen.shape == (2, 1, 1, 8, 2) and idx.shape == (2, 1)
    assert lr.subspace_error(chosen[0, 0], w.stacked()) < 0.1


def test_select_picks_the_lowest_loss_restart() -> None:
    bases = np.arange(2 * 1 * 3).reshape(2, 1, 3)[..., None, None, None] * np.ones((1, 1, 1, 1))
    losses = np.array([[[3.0, 1.0, 2.0]], [[0.5, 1.0, 2.0]]])
    chosen, idx = core.select(bases, losses)
    assert idx.tolist() == [[1], [0]]
    assert chosen[:, 0].ravel().tolist() == [1.0, 3.0]


# ---------------------------------------------------------------- hand-made metrics

CELLS = core.grid([48, 96], [1, 2], [2, 4], [-1, 0, 1], [2, 3])
FAIL, OK = 0.7, 0.0
ErrFn = Callable[[str, core.Cell, int], float]


def _metrics(err: ErrFn, seeds: int = 3) -> Metrics:
    m: dict[str, list[float]] = {}
    for c in CELLS:
        for method in ("qr", "retraction", "ks"):
            m[f"{c.key}/{method}/e"] = [err(method, c, s) for s in range(seeds)]
        m[f"{c.key}/qr_ks/dist"] = [err("dist", c, s) for s in range(seeds)]
    return Metrics(m)


def _ideal(method: str, c: core.Cell, s: int) -> float:
    """Everything recovers from N_k = d + 1 on, except the retraction arm; methods agree."""
    if method == "retraction":
        return FAIL
    if method == "dist":
        return OK
    return OK if c.nk > c.d else FAIL


def test_threshold_and_slope_known_answers() -> None:
    m = _metrics(_ideal)
    assert st.threshold(m, "qr", 2, 48, 4).values == (5.0, 5.0, 5.0)
    assert st.threshold(m, "retraction", 2, 48, 4).values == (16.0, 16.0, 16.0)  # beyond: 3d + d
    slope = st._slope([2, 4], [st.threshold(m, "qr", 2, 48, d) for d in (2, 4)])
    assert slope.values == pytest.approx((1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="not a molrg_diffusion report"):
        st._grid(Metrics({"x": [1.0]}))


def _verdict(check: Callable[[Metrics], object], err: ErrFn) -> str:
    return check(_metrics(err)).verdict  # type: ignore[attr-defined]


def test_r1_three_ways() -> None:
    assert _verdict(st._check_r1, _ideal) == "holds"
    never = lambda m, c, s: FAIL  # noqa: E731
    assert _verdict(st._check_r1, never) == "does not hold"
    one_seed_fails = lambda m, c, s: FAIL if s == 1 else _ideal(m, c, s)  # noqa: E731
    assert _verdict(st._check_r1, one_seed_fails) == "inconclusive"


def test_r2_three_ways() -> None:
    assert _verdict(st._check_r2, _ideal) == "holds"
    never = lambda m, c, s: FAIL  # noqa: E731  N* = 4d: slope 4
    assert _verdict(st._check_r2, never) == "does not hold"

    def steep_seed(m: str, c: core.Cell, s: int) -> float:  # seed 1: N*(4) = 12, slope 4.5
        if s == 1 and c.d == 4:
            return OK if c.nk >= 12 else FAIL
        return _ideal(m, c, s)

    assert _verdict(st._check_r2, steep_seed) == "inconclusive"

    def moves_with_n(m: str, c: core.Cell, s: int) -> float:  # n = 96 needs 3d: ratio > √2
        if c.n == 96:
            return OK if c.nk >= 3 * c.d else FAIL
        return _ideal(m, c, s)

    assert _verdict(st._check_r2, moves_with_n) == "does not hold"


def test_r3_three_ways() -> None:
    assert _verdict(st._check_r3, _ideal) == "holds"
    apart = lambda m, c, s: FAIL if m == "dist" else _ideal(m, c, s)  # noqa: E731
    assert _verdict(st._check_r3, apart) == "does not hold"
    half = lambda m, c, s: FAIL if m == "dist" and s == 2 and c.k == 2 else _ideal(m, c, s)  # noqa: E731
    assert _verdict(st._check_r3, half) == "inconclusive"
    no_ks = lambda m, c, s: FAIL if m == "ks" else _ideal(m, c, s)  # noqa: E731
    assert _verdict(st._check_r3, no_ks) == "inconclusive"  # vacuous


def test_p1_three_ways() -> None:
    assert _verdict(st._check_p1, _ideal) == "holds"
    alike = lambda m, c, s: _ideal("qr" if m == "retraction" else m, c, s)  # noqa: E731
    assert _verdict(st._check_p1, alike) == "does not hold"

    def mixed(m: str, c: core.Cell, s: int) -> float:
        if m == "retraction":
            return OK if s == 0 and c.nk > c.d else FAIL  # seed 0: the arms tie
        return _ideal(m, c, s)

    assert _verdict(st._check_p1, mixed) == "inconclusive"


# ---------------------------------------------------------------- config


def _world(**kw: object) -> WorldConfig:
    base = dict(
        ambient=[8, 12],
        components=[1, 2],
        dims=[2, 3],
        n_offsets=[-1, 0],
        n_multiples=[2],
        subspaces="orthogonal",
        noise=0.0,
    )
    return WorldConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_config_checks() -> None:
    assert _world().check() == {}
    assert "n_offsets" in _world(n_offsets=[0, 1]).check()  # R1 needs N_k < d
    assert "n_offsets" in _world(n_offsets=[-2]).check()  # N_k = 0
    assert "ambient" in _world(ambient=[4, 8]).check()  # 2 x 3 orthogonal dims do not fit in 4
    assert "ambient" in _world(ambient=[12, 8]).check()
    assert "dims" in _world(dims=[3, 2]).check()
    dae = DAEConfig(
        restarts=1, steps=1, lr=0.1, draws=1, sigma_min=2.0, sigma_max=1.0, eval_draws=1
    )
    assert "sigma_min" in dae.check()


def test_bad_params_refused_before_compute(tmp_path) -> None:
    from subspacelab.runner import run_step

    params = tiny_params(["molrg_diffusion"])
    params["molrg_diffusion"]["mini"]["world"]["n_offsets"] = [0, 1]
    ws = make_workspace(tmp_path, params)
    with pytest.raises(ParamsError, match="n_offsets"):
        run_step(ws, "molrg_diffusion", "data")
    assert not (ws / "data" / "molrg_diffusion").exists()


def test_sample_curves_pool_cells_of_one_ratio() -> None:
    cells = [core.Cell(2, 8, d, nk) for d in (1, 2) for nk in (d, 2 * d)]
    values = {1: [0.05, 0.2], 2: [0.01, 0.01]}  # per N_k / d, per seed
    m = Metrics(
        {
            f"{c.key}/{arm}/e": values[c.nk // c.d] if c.d == 1 else [0.3, 0.3]
            for c in cells
            for arm in st.CURVE_ARMS
        }
    )
    curves = st.sample_curves(m, cells)
    assert sorted(curves) == sorted(c.name for c in st.STUDY.curves)
    for curve in st.STUDY.curves:
        rows = curves[curve.name]
        assert [r["nk_over_d"] for r in rows] == [1.0, 2.0]
        assert all(set(r) == {curve.x, *curve.ys} for r in rows)
    assert [r["qr"] for r in curves["success_vs_samples"]] == [0.25, 0.5]
    assert curves["error_vs_samples"][1]["ks"] == pytest.approx((0.01 + 0.3) / 2)
