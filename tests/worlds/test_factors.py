"""Known answers for the factor-image world and the disentanglement scores (xfactors)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from subspacelab.worlds import factors as fw


def test_render_known_pixels_and_areas() -> None:
    sq = fw.render("square", 2.0, 0.0, 4.0, 4.0, 8)
    assert sq.sum() == 16 and sq[2:6, 2:6].all()
    np.testing.assert_array_equal(fw.render("square", 2.0, math.pi / 2, 4.0, 4.0, 8), sq)
    big = 200
    ell = fw.render("ellipse", 60.0, 0.3, 100.0, 100.0, big)
    assert ell.sum() == pytest.approx(math.pi * 60 * 36, rel=0.01)
    tri = fw.render("triangle", 60.0, 0.0, 100.0, 100.0, big)
    assert tri.sum() == pytest.approx(3 * math.sqrt(3) / 4 * 60**2, rel=0.01)
    # the triangle repeats after a third of a turn
    np.testing.assert_array_equal(
        fw.render("triangle", 5.1, 2 * math.pi / 3, 10.2, 10.3, 20),
        fw.render("triangle", 5.1, 0.0, 10.2, 10.3, 20),
    )
    with pytest.raises(ValueError, match="unknown shape"):
        fw.render("star", 2.0, 0.0, 4.0, 4.0, 8)


def test_grid_is_exhaustive_and_shapes_stay_inside() -> None:
    w = fw.dsprites_like(size=16, n_scale=2, n_rotation=2, n_pos=3)
    assert w.sizes == (3, 2, 2, 3, 3) and w.images.shape == (108, 16, 16)
    assert len({tuple(f) for f in w.factors}) == 108
    assert w.images.reshape(108, -1).sum(1).min() > 0
    border = np.concatenate(
        [w.images[:, 0], w.images[:, -1], w.images[:, :, 0], w.images[:, :, -1]]
    )
    assert border.sum() == 0


def test_the_default_grid_is_the_spec_grid_with_only_symmetric_repeats() -> None:
    w = fw.dsprites_like()
    assert w.images.shape == (6144, 32, 32) and w.sizes == (3, 4, 8, 8, 8)
    # rotations step by 15°: a square at 0° and at 90° (index 6) is one picture
    sq0 = (w.factors[:, 0] == 0) & (w.factors[:, 2] == 0)
    sq6 = (w.factors[:, 0] == 0) & (w.factors[:, 2] == 6)
    np.testing.assert_array_equal(w.images[sq0], w.images[sq6])
    # the largest ellipses are all distinct
    big = (w.factors[:, 0] == 1) & (w.factors[:, 1] == 3)
    assert len({im.tobytes() for im in w.images[big]}) == big.sum()


def _grid_codes() -> np.ndarray:
    return fw.dsprites_like(size=16, n_scale=2, n_rotation=2, n_pos=3).factors


def test_factorvae_score_known_answers() -> None:
    f = _grid_codes()
    noise = np.random.default_rng(0).standard_normal(f.shape) * 1e-3
    kw = {"n_train": 200, "n_eval": 100, "batch": 20, "seed": 0}
    assert fw.factorvae_score(f + noise, f, **kw) == 1.0
    assert fw.factorvae_score((f + noise)[:, ::-1], f, **kw) == 1.0  # any order of codes
    rnd = np.random.default_rng(1).standard_normal((len(f), 5))
    assert fw.factorvae_score(rnd, f, **kw) < 0.5
    # two codes for factor 0 and none for factor 4: exactly the votes for factor 4 (1 in 5)
    # are wrong
    dup = f[:, [0, 0, 1, 2, 3]] + noise
    kw_many = kw | {"n_eval": 3000}
    assert fw.factorvae_score(dup, f, **kw_many) == pytest.approx(0.8, abs=0.025)


def test_dci_from_importance_known_values() -> None:
    assert fw.dci_from_importance(np.eye(3)) == pytest.approx((1.0, 1.0))
    assert fw.dci_from_importance(np.ones((3, 3))) == pytest.approx((0.0, 0.0))
    d, c = fw.dci_from_importance(np.array([[1.0, 0.0], [1.0, 0.0]]))
    assert d == pytest.approx(1.0) and c == pytest.approx(0.0)  # factor 1 unexplained: 0
    d, c = fw.dci_from_importance(np.array([[1.0, 1.0], [0.0, 0.0]]))
    assert d == pytest.approx(0.0) and c == pytest.approx(1.0)


def test_dci_on_codes() -> None:
    f = _grid_codes()
    rng = np.random.default_rng(0)
    codes = f + rng.standard_normal(f.shape) * 0.05
    d, c, i, r = fw.dci(codes[::2], f[::2], codes[1::2], f[1::2], model="lasso")
    assert r.shape == (5, 5) and d > 0.9 and c > 0.9 and i == 1.0
    mixed = codes @ rng.standard_normal((5, 5))
    d2, c2, _, _ = fw.dci(mixed[::2], f[::2], mixed[1::2], f[1::2], model="gbt")
    assert d2 < d and c2 < c


def test_mig_known_answers() -> None:
    f = _grid_codes()
    assert fw.mig(f.astype(float), f) == pytest.approx(1.0)
    dup = f[:, [0, 0, 1, 2, 3, 4]].astype(float)
    expect = (0 + 1 + 1 + 1 + 1) / 5  # factor 0 has two equally informative codes: gap 0
    assert fw.mig(dup, f) == pytest.approx(expect)
    assert fw.discrete_mutual_information(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])) == 0.0
    assert fw.discrete_mutual_information(np.array([0, 1]), np.array([1, 0])) == pytest.approx(
        math.log(2)
    )


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="codes"):
        fw.mig(np.zeros((3, 2)), np.zeros((4, 1), dtype=int))
    with pytest.raises(ValueError, match="constant"):
        fw.factorvae_score(
            np.ones((4, 2)), np.zeros((4, 1), dtype=int), n_train=1, n_eval=1, batch=2, seed=0
        )
    with pytest.raises(ValueError, match="non-negative"):
        fw.dci_from_importance(-np.eye(2))
