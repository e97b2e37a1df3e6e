"""geo_sae study: scene generator, encoders, majority filter, claims both ways."""

from __future__ import annotations

import numpy as np
import pytest

from subspacelab.api import Metrics
from subspacelab.nets.training import LocalEnv
from subspacelab.studies.geo_sae import core
from subspacelab.studies.geo_sae.study import STUDY


def test_scene_shapes_determinism_and_regimes() -> None:
    a = core.make_scene(16, 3, 5, "nonlinear", 0.0, seed=1)
    b = core.make_scene(16, 3, 5, "nonlinear", 0.0, seed=1)
    lin = core.make_scene(16, 3, 5, "linear", 0.0, seed=1)
    assert a.bands.shape == (16, 16, 5) and a.units.shape == (16, 16)
    np.testing.assert_array_equal(a.bands, b.bands)
    np.testing.assert_array_equal(a.units, lin.units)
    assert not np.allclose(a.bands, lin.bands)
    with pytest.raises(ValueError):
        core.make_scene(16, 3, 5, "quadratic", 0.0, seed=1)


def test_kubelka_munk_round_trip() -> None:
    r = np.linspace(0.05, 0.95, 7)
    np.testing.assert_allclose(core._km_inverse(core._km(r)), r, atol=1e-12)


def test_mode_filter_removes_isolated_pixel() -> None:
    labels = np.zeros((5, 5), dtype=int)
    labels[2, 2] = 1
    assert core.mode_filter(labels, 3, 2).sum() == 0


def test_pca_keeps_variance_rank_and_autoencoder_shapes() -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((200, 2)) @ rng.standard_normal((2, 6))).astype(np.float32)
    codes, explained, rule = core.pca_codes(x, 2)
    assert codes.shape == (200, 2) and explained == pytest.approx(1.0)  # rank-2 data
    assert rule <= 2
    xs = [core.minmax(x), core.minmax(x[::-1] ** 2)]
    ae, hist = core.train_autoencoders(LocalEnv(), xs, [6, 4, 2], 2, 32, 1e-2, 1e-4, seeds=[0, 5])
    recon, code = core.encode(ae, xs)
    assert recon.shape == (2, 200, 6) and code.shape == (2, 200, 2)
    assert len(hist) == 2 and all(len(h) == 2 for h in hist)
    # trained together or alone, each model is the same (up to float rounding)
    alone, alone_hist = core.train_autoencoders(
        LocalEnv(), xs[1:], [6, 4, 2], 2, 32, 1e-2, 1e-4, seeds=[5]
    )
    np.testing.assert_allclose(core.encode(alone, xs[1:])[1][0], code[1], atol=1e-5)
    np.testing.assert_allclose(alone_hist[0], hist[1], rtol=1e-5)
    with pytest.raises(ValueError):
        core.train_autoencoders(LocalEnv(), xs, [6, 2], 1, 32, 1e-2, 0.0, seeds=[0])


def _m(
    sae: list[float], pca: list[float], ae: list[float], lin_sae: list[float], lin_pca: list[float]
) -> Metrics:
    return Metrics(
        {
            "nonlinear/sae/ari": sae,
            "nonlinear/pca/ari": pca,
            "nonlinear/ae/ari": ae,
            "linear/sae/ari": lin_sae,
            "linear/pca/ari": lin_pca,
        }
    )


def test_claims_hold_fail_and_are_inconclusive() -> None:
    checks = {c.id: c.check for c in STUDY.claims}
    hi, mid, lo = [0.5, 0.52, 0.51], [0.4, 0.41, 0.42], [0.3, 0.3, 0.31]
    flip = _m(hi, mid, lo, lo, mid)
    assert checks["sae_nonlinear"](flip).verdict == "holds"
    assert checks["linear_flip"](flip).verdict == "holds"
    assert checks["sae_nonlinear"](_m(mid, hi, lo, lo, mid)).verdict == "does not hold"
    assert checks["sae_nonlinear"](_m(mid, lo, hi, lo, mid)).verdict == "does not hold"
    # SAE below PCA in both regimes: PCA ≥ SAE on the linear scene alone is no flip
    weaker = _m(lo, mid, lo, lo, mid)
    assert checks["linear_flip"](weaker).verdict == "does not hold"
    assert checks["linear_flip"](_m(hi, mid, lo, hi, mid)).verdict == "does not hold"
    unsure = _m([0.5, 0.3, 0.45], [0.4, 0.4, 0.4], [0.4, 0.4, 0.4], lo, mid)
    assert checks["sae_nonlinear"](unsure).verdict == "inconclusive"
    assert checks["linear_flip"](unsure).verdict == "inconclusive"


def test_code_dimensions_must_match() -> None:
    from subspacelab.studies.geo_sae.config import ModelConfig

    m = ModelConfig(
        ae_widths=[12, 6, 2],
        ae_epochs=1,
        ae_batch=8,
        sae2_widths=[24, 5, 2],
        sae3_widths=[29, 5, 3],
        sae_epochs=1,
        sae_batch=8,
        lr=1e-3,
        l1=0.0,
        max_train_pixels=0,
        k=3,
        filter_size=1,
    )
    assert "sae3_widths" in m.check()


def test_loss_curve_averages_scenes_and_leaves_short_stages_empty() -> None:
    from subspacelab.studies.geo_sae.study import loss_curve

    def losses(shift: float) -> dict[str, list[float]]:
        return {"ae": [4.0 + shift, 3.0 + shift, 2.0 + shift], "sae2": [2.0], "sae3": [1.0 + shift]}

    rows = loss_curve([losses(0.0), losses(1.0)])
    (curve,) = STUDY.curves
    assert all(set(r) == {curve.x, *curve.ys} for r in rows)
    assert [r["epoch"] for r in rows] == [1.0, 2.0, 3.0]
    assert [r["ae"] for r in rows] == [4.5, 3.5, 2.5]
    assert rows[0]["sae3"] == 1.5 and np.isnan(rows[1]["sae2"])
