"""plato (arXiv 2503.05283): the world, the encoder and the alignment arms against known
answers, the claims both ways and the config's errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from subspacelab.api import Metrics
from subspacelab.config import ParamsError, study_config
from subspacelab.studies.plato import core
from subspacelab.studies.plato.config import PlatoConfig
from subspacelab.studies.plato.study import STUDY
from tests.helpers import tiny_params


@pytest.mark.parametrize("cls", core.CLASSES)
def test_surfaces_lie_on_their_primitive(cls: str) -> None:
    p = core.canonical_surface(cls, 500, np.random.default_rng(0))
    assert p.shape == (500, 3) and np.abs(p).max() <= 1.0 + 1e-9
    r = np.linalg.norm(p[:, :2], axis=1)
    if cls == "sphere":
        np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0)
    elif cls == "box":
        np.testing.assert_allclose(np.abs(p).max(axis=1), 1.0)
    elif cls == "cylinder":
        assert np.all(np.isclose(r, 1.0) | np.isclose(np.abs(p[:, 2]), 1.0))
    elif cls == "cone":  # lateral: r = (1 − z)/2; base: z = −1
        assert np.all(np.isclose(r, (1 - p[:, 2]) / 2) | np.isclose(p[:, 2], -1.0))
    elif cls == "torus":  # (√(x²+y²) − R)² + z² = r² in units of R + r = 1
        np.testing.assert_allclose((r - 0.7) ** 2 + p[:, 2] ** 2, 0.09, atol=1e-9)
    else:  # pyramid: faces |x| or |y| = (1 − z)/2 at the edge, or the base z = −1
        side = np.maximum(np.abs(p[:, 0]), np.abs(p[:, 1]))
        assert np.all(np.isclose(side, (1 - p[:, 2]) / 2) | np.isclose(p[:, 2], -1.0))
    with pytest.raises(ValueError, match="unknown class"):
        core.canonical_surface("teapot", 5, np.random.default_rng(0))


def test_shapes_carry_their_attributes_and_captions_name_them() -> None:
    s = core.make_shapes(60, 64, (0.5, 0.7), (0.9, 1.3), 1.3, 0.0, np.random.default_rng(1))
    assert s.points.shape == (60, 64, 3) and s.points.dtype == np.float32
    small = s.size == 0
    assert np.all(s.scale[small] <= 0.7) and np.all(s.scale[~small] >= 0.9)
    # the height is set by aspect and scale only (rotation about z keeps z)
    height = s.points[:, :, 2].max(axis=1) - s.points[:, :, 2].min(axis=1)
    z_stretch = np.array([core.ASPECT_SCALE[core.ASPECTS[a]][2] for a in s.aspect])
    assert np.all(height <= 2 * z_stretch * s.scale + 1e-5)
    for cap, lab, size, asp in zip(s.captions, s.label, s.size, s.aspect, strict=True):
        assert any(w in cap for w in core.CLASS_WORDS[core.CLASSES[lab]])
        assert any(w in cap for w in core.SIZE_WORDS[core.SIZES[size]])
        assert any(w in cap for w in core.ASPECT_WORDS[core.ASPECTS[asp]])
        assert "rotat" not in cap and "degree" not in cap
    again = core.make_shapes(60, 64, (0.5, 0.7), (0.9, 1.3), 1.3, 0.0, np.random.default_rng(1))
    np.testing.assert_array_equal(again.points, s.points)


def test_chamfer_and_the_point_encoder() -> None:
    a = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])
    b = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 2.0, 0.0]]])
    # a→b: 0 and 1 (nearest is the origin); b→a: 0 and 4
    assert float(core.chamfer(a, b)) == pytest.approx(0.5 + 2.0)
    assert float(core.chamfer(a, a)) == 0.0
    torch.manual_seed(0)
    model = core.PointAE(8, 16, 16, 10)
    x = torch.randn(3, 10, 3)
    perm = x[:, torch.randperm(10)]
    torch.testing.assert_close(model.encode(x), model.encode(perm))  # order-invariant
    assert model(x).shape == (3, 10, 3)
    assert core.encode_points(model, x).shape == (3, 16)


def _paired_world(n: int = 600, seed: int = 0) -> core.Split:
    """3D (20-d) and text (30-d) features sharing a 3-d signal, the rest private noise."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 3))
    x = np.hstack([3 * z, 4 * rng.standard_normal((n, 17))]) @ rng.standard_normal((20, 20))
    t = np.hstack([z, 3 * rng.standard_normal((n, 27))]) @ rng.standard_normal((30, 30))
    return core.Split(x[:400], t[:400], x[400:], t[400:])


def test_the_shared_subspace_beats_the_full_spaces_on_a_planted_world() -> None:
    s = _paired_world()
    fit, rx, rt = core.cca_spaces(s, 30, 0.0)
    np.testing.assert_array_less(0.99, fit.corr[:3])
    shared = core.pool_scores(*core.cca_identity(s, fit, rx, rt, 3), 100)
    everything = core.pool_scores(*core.cca_identity(s, fit, rx, rt, 20), 100)
    procrustes = core.pool_scores(*core.full_procrustes(s), 100)
    assert shared["top1"] > 0.5 and shared["match"] > 0.5
    assert shared["top1"] > everything["top1"] + 0.2
    assert shared["top1"] > procrustes["top1"] + 0.3
    with pytest.raises(ValueError, match="no pool"):
        core.pool_scores(np.zeros((5, 2)), np.zeros((5, 2)), 10)


def test_affine_arms_recover_an_exact_linear_relation() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((300, 6))
    t = x @ rng.standard_normal((6, 9)) + 1.0
    s = core.Split(x[:200], t[:200], x[200:], t[200:])
    fx, ft = core.full_affine(s, 0.0)
    np.testing.assert_allclose(fx, ft, atol=1e-8)
    assert core.pool_scores(fx, ft, 100)["top1"] == 1.0
    fx, ft = core.pca_affine(s, 6, 0.0)
    assert core.pool_scores(fx, ft, 100)["top1"] == 1.0


def test_complement_and_unimodal_dip() -> None:
    rng = np.random.default_rng(3)
    a = rng.standard_normal((6, 2))
    c = core.complement_basis(a)
    assert c.shape == (6, 4)
    np.testing.assert_allclose(a.T @ c, 0.0, atol=1e-12)
    np.testing.assert_allclose(c.T @ c, np.eye(4), atol=1e-12)
    assert core.unimodal_dip([0.1, 0.3, 0.5, 0.4, 0.2]) == 0.0
    assert core.unimodal_dip([0.5, 0.4, 0.3]) == 0.0
    assert core.unimodal_dip([0.3, 0.1, 0.4, 0.2]) == pytest.approx(0.2)


def test_probes_read_the_attribute_a_view_carries() -> None:
    rng = np.random.default_rng(4)
    n = 400
    labels = {
        "label": rng.integers(0, 6, n),
        "scale": np.exp(rng.uniform(-0.7, 0.3, n)),
        "theta": rng.uniform(0, 2 * np.pi, n),
    }
    onehot = np.eye(6)[labels["label"]]
    geometric = np.column_stack(
        [np.log(labels["scale"]), np.cos(2 * labels["theta"]), np.sin(2 * labels["theta"])]
    )
    semantic = onehot + 0.05 * rng.standard_normal((n, 6))
    geo = geometric + 0.01 * rng.standard_normal((n, 3))
    train = {k: v[:300] for k, v in labels.items()}
    test = {k: v[300:] for k, v in labels.items()}
    on_sem = core.probe_scores(semantic[:300], semantic[300:], train, test, 1.0)
    on_geo = core.probe_scores(geo[:300], geo[300:], train, test, 1.0)
    assert on_sem["category"] > 0.95 and on_geo["category"] < 0.4
    assert on_geo["size"] > 0.95 and on_sem["size"] < 0.1
    assert on_geo["pose"] > 0.95 and on_sem["pose"] < 0.1
    empty = core.probe_scores(np.zeros((300, 0)), np.zeros((100, 0)), train, test, 1.0)
    shares = np.bincount(test["label"], minlength=6) / len(test["label"])  # one class for all
    assert np.isclose(shares, empty["category"]).any()
    assert abs(empty["size"]) < 0.05 and abs(empty["pose"]) < 0.05


def _metrics(
    cca: list[float], affine: list[float], probe_gap: float, dip: float
) -> dict[str, list[float]]:
    n = len(cca)
    return {
        "test/cca_identity/top1": cca,
        "test/full_affine/top1": affine,
        "test/chance/top1": [0.01] * n,
        "test/oracle/top1": [0.34] * n,
        "select/cca/k": [8.0] * n,
        "sweep/cca_identity/at_kstar": cca,
        "sweep/cca_identity/at_kmax": affine,
        "sweep/cca_identity/at_kmin": [c - 0.05 for c in affine],
        "sweep/cca_identity/dip": [dip] * n,
        "probe/shared/category": [0.9 + probe_gap + 0.01 * i for i in range(n)],
        "probe/complement/category": [0.9 + 0.01 * i for i in range(n)],
        "probe/shared/size": [0.5 + 0.01 * i for i in range(n)],
        "probe/complement/size": [0.5 + probe_gap + 0.01 * i for i in range(n)],
        "probe/shared/pose": [0.1 + 0.01 * i for i in range(n)],
        "probe/complement/pose": [0.1 + probe_gap + 0.01 * i for i in range(n)],
    }


def test_claims_hold_fail_and_are_inconclusive() -> None:
    checks = {c.id: c.check for c in STUDY.claims}
    good = Metrics(_metrics([0.40, 0.42, 0.44], [0.20, 0.21, 0.22], 0.05, 0.0))
    bad = Metrics(_metrics([0.20, 0.21, 0.22], [0.40, 0.42, 0.44], -0.05, 0.0))
    raw = _metrics([0.40, 0.20, 0.45], [0.20, 0.40, 0.22], 0.05, 0.0)
    raw["probe/shared/category"] = [0.99, 0.85, 0.99]  # straddles the complement's
    unsure = Metrics(raw)
    for cid in ("R1", "R2", "R3"):
        assert checks[cid](good).verdict == "holds", cid
        assert checks[cid](bad).verdict == "does not hold", cid
        assert checks[cid](unsure).verdict == "inconclusive", cid
    # a dipping curve or a large k* fails R2 whatever the gaps
    dipped = _metrics([0.40, 0.42, 0.44], [0.20, 0.21, 0.22], 0.05, 0.05)
    assert checks["R2"](Metrics(dipped)).verdict == "does not hold"
    dipped.update({"sweep/cca_identity/dip": [0.0] * 3, "select/cca/k": [8.0, 64.0, 8.0]})
    assert checks["R2"](Metrics(dipped)).verdict == "does not hold"


@pytest.mark.parametrize(
    ("section", "change", "field"),
    [
        ("data", {"n_val": 200}, "n_train"),
        ("data", {"small_scale": [0.7, 0.5]}, "small_scale"),
        ("data", {"large_scale": [0.6, 1.3]}, "large_scale"),
        ("align", {"ks": [4, 2]}, "ks"),
        ("align", {"pool": 500}, "align"),
    ],
)
def test_config_errors_name_the_field(section: str, change: dict, field: str) -> None:
    params = tiny_params(["plato"])
    params["plato"]["mini"][section].update(change)
    with pytest.raises(ParamsError, match=field):
        study_config(PlatoConfig, params, "plato", "mini")


def test_full_pins_are_declared() -> None:
    params = tiny_params(["plato"])
    params["plato"]["mini"]["data"]["points_url"] = "https://example.org/points.npz"
    params["plato"]["mini"]["text"] = {
        "model": "sentence-transformers/all-mpnet-base-v2",
        "revision": "",
    }
    cfg = study_config(PlatoConfig, params, "plato", "mini")
    assert set(cfg.data.unpinned()) == {"points_sha256"}
    assert set(cfg.text.unpinned()) == {"revision"}
