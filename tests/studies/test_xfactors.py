"""xfactors: losses with known answers, nets, swap, loader, config, claims both ways."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from subspacelab.config import ParamsError, study_config
from subspacelab.registry import Metrics
from subspacelab.studies.xfactors import core, study
from subspacelab.studies.xfactors.config import XFactorsConfig
from subspacelab.studies.xfactors.study import STUDY
from tests.helpers import REPO

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
SLUG = "xfactors"


def _sup_nce_loop(z: torch.Tensor, y: torch.Tensor, tau: float) -> float:
    zn = torch.nn.functional.normalize(z, dim=-1)
    losses = []
    for a in range(len(z)):
        pos = [
            math.exp(float(zn[a] @ zn[b]) / tau) for b in range(len(z)) if b != a and y[b] == y[a]
        ]
        alls = [math.exp(float(zn[a] @ zn[b]) / tau) for b in range(len(z)) if b != a]
        if pos:
            losses.append(-(math.log(sum(pos)) - math.log(sum(alls))))
    return float(np.mean(losses))


def test_sup_nce_matches_the_written_out_loss() -> None:
    z = torch.randn(7, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1, 1, 2, 3])  # anchors 5 and 6 have no positive
    assert core.sup_nce(z, y, 0.5).item() == pytest.approx(_sup_nce_loop(z, y, 0.5), rel=1e-10)
    assert core.sup_nce(z, torch.arange(7), 0.5).item() == 0.0
    # perfectly clustered labels on opposite points: the loss is near its floor log(1) = 0
    clustered = torch.tensor([[1.0, 0.0]] * 3 + [[-1.0, 0.0]] * 3)
    assert core.sup_nce(clustered, torch.tensor([0, 0, 0, 1, 1, 1]), 0.03).item() < 1e-6


def test_gaussian_kl_known_values() -> None:
    zero = torch.zeros(4, 3)
    assert core.gaussian_kl(zero, zero).item() == 0.0
    mu = torch.full((2, 3), 2.0)
    assert core.gaussian_kl(mu, torch.zeros(2, 3)).item() == pytest.approx(6.0)  # ½·Σμ²
    lv = torch.full((1, 1), math.log(4.0))
    assert core.gaussian_kl(torch.zeros(1, 1), lv).item() == pytest.approx(
        -0.5 * (1 + math.log(4) - 4)
    )


def test_nets_shapes_and_swap() -> None:
    for size in (16, 32, 64):
        xf = core.XFactors(size, [4, 8], d_s=3, d_i=2, n_t=2)
        x = torch.rand(5, size, size)
        assert xf.codes(x).shape == (5, 7) and xf.dec(xf.codes(x)).shape == (5, size, size)
    with pytest.raises(ValueError, match="power of two"):
        core.XFactors(24, [4], 2, 2, 1)
    a, b = torch.zeros(2, 7), torch.ones(2, 7)
    out = core.swap_blocks(a, b, start=3, width=2)
    assert out.tolist() == [[0, 0, 0, 1, 1, 0, 0]] * 2 and a.sum() == 0
    losses = core.xfactors_loss(
        core.XFactors(16, [4], 3, 2, 2),
        torch.rand(6, 16, 16),
        torch.tensor([[0, 1]] * 3 + [[1, 0]] * 3),
        tau=0.03,
        w_kl=1e-6,
        beta_s=1.0,
        beta_t=1.0,
        nce_weight=0.1,
    )
    assert set(losses) == {"loss", "mse", "kl_s", "kl_t", "nce"}
    assert losses["loss"].item() == pytest.approx(
        (losses["mse"] + 1e-6 * (losses["kl_s"] + losses["kl_t"]) + 0.1 * losses["nce"]).item()
    )


def test_residual_probe_detects_leaked_factors() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=(400, 2))
    leaky = np.c_[y[:, 0] + 0.01 * rng.standard_normal(400), rng.standard_normal(400)]
    excess = study.residual_probe(leaky[:300], y[:300], leaky[300:], y[300:])
    assert excess[0] > 0.5 and abs(excess[1]) < 0.15


def test_load_dsprites_reads_the_format_and_refuses_bad_files(tmp_path: Path) -> None:
    imgs = np.random.default_rng(0).integers(0, 2, size=(4, 64, 64)).astype(np.uint8)
    classes = np.array([[0, 1, 2, 3, 4, 5]] * 4)
    np.savez(tmp_path / "d.npz", imgs=imgs, latents_classes=classes, latents_values=classes * 0.1)
    x, f = study.load_dsprites(tmp_path / "d.npz")
    assert x.dtype == np.float32 and f.tolist() == [[1, 2, 3, 4, 5]] * 4
    np.savez(tmp_path / "bad.npz", imgs=imgs)
    with pytest.raises(ValueError, match="latents_classes"):
        study.load_dsprites(tmp_path / "bad.npz")
    np.savez(tmp_path / "shape.npz", imgs=imgs[:, :32], latents_classes=classes)
    with pytest.raises(ValueError, match="64, 64"):
        study.load_dsprites(tmp_path / "shape.npz")


def test_config_refuses_bad_combinations() -> None:
    params = copy.deepcopy(PARAMS)
    params[SLUG]["mini"]["data"]["t_factors"] = ["shape", "scale", "rotation", "pos_x", "pos_y"]
    with pytest.raises(ParamsError, match="t_factors"):
        study_config(XFactorsConfig, params, SLUG, "mini")
    full = study_config(XFactorsConfig, PARAMS, SLUG, "full")
    assert "dsprites_sha256" in full.data.unpinned()


def _m(over: dict[str, list[float]] | None = None) -> Metrics:
    base = {
        "xfactors/fvae": [0.98, 0.97, 0.99],
        "bvae/fvae": [0.6, 0.65, 0.62],
        "supervised/fvae": [0.9, 0.92, 0.91],
        "xfactors/dci_d": [0.8, 0.82, 0.81],
        "bvae/dci_d": [0.3, 0.32, 0.31],
        "supervised/dci_d": [0.7, 0.7, 0.71],
        "swap/swapped_acc": [0.9, 0.92, 0.91],
        "swap/kept_acc": [0.9, 0.88, 0.89],
        "probe/real_acc": [0.99, 0.99, 0.99],
        "zs_probe/excess_max": [0.05, 0.04, 0.06],
    }
    return Metrics(base | (over or {}))


def test_claims_hold_fail_and_are_inconclusive() -> None:
    checks = {c.id: c.check for c in STUDY.claims}
    for cid, check in checks.items():
        assert check(_m()).verdict == "holds", cid
    bad = _m(
        {
            "xfactors/fvae": [0.7, 0.72, 0.71],
            "xfactors/dci_d": [0.3, 0.31, 0.32],
            "swap/swapped_acc": [0.3, 0.31, 0.32],
            "zs_probe/excess_max": [0.5, 0.55, 0.6],
        }
    )
    for cid, check in checks.items():
        assert check(bad).verdict == "does not hold", cid
    noisy = _m(
        {
            "xfactors/fvae": [0.95, 0.6, 0.99],
            "xfactors/dci_d": [0.9, 0.2, 0.5],
            "swap/kept_acc": [0.95, 0.5, 0.9],
            "zs_probe/excess_max": [0.0, 0.4, 0.1],
        }
    )
    for cid, check in checks.items():
        assert check(noisy).verdict == "inconclusive", cid
    one = Metrics({k: v.values[:1] for k, v in _m().items()})
    for cid, check in checks.items():
        assert check(one).verdict == "inconclusive", cid


def test_loss_curve_averages_seeds_and_leaves_short_models_empty() -> None:
    def history(shift: float) -> dict[str, list[float]]:
        return {m: [3.0 + shift, 2.0 + shift, 1.0 + shift] for m in study.METHODS} | {
            "probe": [5.0 + shift]
        }

    rows = study.loss_curve([history(0.0), history(1.0)])
    (curve,) = STUDY.curves
    assert all(set(r) == {curve.x, *curve.ys} for r in rows)
    assert [r["epoch"] for r in rows] == [1.0, 2.0, 3.0]
    assert [r["bvae"] for r in rows] == [3.5, 2.5, 1.5]
    assert rows[0]["probe"] == 5.5 and math.isnan(rows[2]["probe"])
