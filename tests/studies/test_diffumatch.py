"""diffumatch (arXiv 2507.23715): the per-pair objective, the claims both ways, the config's
rules and the full profile's readers on tiny files written here."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from subspacelab.api import Metrics, ParamsError
from subspacelab.config import validate
from subspacelab.shapes import blobs
from subspacelab.shapes import spectral_prior as sprior
from subspacelab.studies.diffumatch import core, full, study
from subspacelab.studies.diffumatch.config import (
    DataConfig,
    DiffumatchConfig,
    EvalConfig,
    FamilyConfig,
    MatchConfig,
    PriorConfig,
)

SETTINGS = core.MatchSettings(8, 0.1, 4, 1.0, 12, 2, 1.0, 1.0, 1.0, 1.0, 1.0)


@pytest.fixture(scope="module")
def pair() -> tuple[core.Spectra, core.Spectra]:
    fam = blobs.BlobFamily(0.08, 1.0, 4, (0.9, 1.1), (1.5, 1.8), (0.3, 0.5))
    v, f = blobs.sample_blobs(2, fam, 2, np.random.default_rng(0))
    return tuple(core.spectra(core.unit_area(x, f), f, 20) for x in v)


def test_unit_area_and_self_map(pair) -> None:
    x, _ = pair
    v, f = blobs.sample_blobs(1, blobs.BlobFamily(0.1, 1, 2, (2, 2), (1, 1), (0, 0)), 2,
                              np.random.default_rng(1))  # fmt: skip
    assert blobs.mesh_area(core.unit_area(v[0], f), f) == pytest.approx(1.0)
    maps = core.prior_maps([x, x], 3, np.random.default_rng(0))
    torch.testing.assert_close(maps, torch.eye(20).expand(3, 20, 20), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="two shapes"):
        core.prior_maps([x], 1, np.random.default_rng(0))


def test_pair_losses_are_finite_and_differentiable(pair) -> None:
    x, y = pair
    torch.manual_seed(0)
    den = sprior.Denoiser(8, 16, 2)
    for arm in core.ARMS:
        net = sprior.FeatureNet(3, 8, 12, 2)
        loss = core.pair_loss(net, x, y, arm, SETTINGS, den)
        loss.backward()
        assert torch.isfinite(loss) and net.lift.weight.grad is not None
    raw, refined = core.predict(net, x, y, SETTINGS, 16)
    assert raw.shape == refined.shape == (len(y.verts),)
    with pytest.raises(ValueError, match="unknown arm"):
        core.pair_loss(net, x, y, "ortho", SETTINGS, den)
    with pytest.raises(ValueError, match="denoiser"):
        core.pair_loss(net, x, y, "diffumatch", SETTINGS, None)


def test_the_identity_map_has_zero_proper_loss(pair) -> None:
    """ZoomOut of the true map of a shape to itself is itself: the proper-map target is a
    fixed point there."""
    x, _ = pair
    target = core.proper_target(torch.eye(8), x, x, 12, 2)
    torch.testing.assert_close(target, torch.eye(8), atol=1e-4, rtol=0)


def _metrics(err: dict[str, np.ndarray]) -> Metrics:
    """Metrics from per-arm errors (pairs, seeds)."""
    values: dict[str, list[float]] = {}
    n_pairs = err["diffumatch"].shape[0]
    for arm, e in err.items():
        for p in range(n_pairs):
            values[f"pair{p}/{arm}/geo_err"] = list(e[p])
        values[f"test/{arm}/geo_err"] = list(e.mean(axis=0))
    values["test/diffumatch/win_share"] = list((err["diffumatch"] <= err["axiomatic"]).mean(axis=0))
    return Metrics(values)


def _errors(dm: float, ax: float, none: float, noise: float, seeds: int = 3) -> dict:
    rng = np.random.default_rng(0)
    base = rng.uniform(3, 6, size=(10, 1))
    out = {}
    for arm, scale in (("diffumatch", dm), ("axiomatic", ax), ("none", none), ("init", 20.0)):
        out[arm] = base * scale + noise * rng.standard_normal((10, seeds))
    return out


def test_claims_hold_fail_and_are_inconclusive() -> None:
    holds = _metrics(_errors(1.0, 1.3, 3.0, 0.05))
    assert study._prior_vs_axiomatic(holds).verdict == "holds"
    assert study._both_beat_none(holds).verdict == "holds"
    fails = _metrics(_errors(1.3, 1.0, 1.2, 0.05))
    assert study._prior_vs_axiomatic(fails).verdict == "does not hold"
    assert study._both_beat_none(fails).verdict == "does not hold"
    one_seed = _metrics(_errors(1.0, 1.3, 3.0, 0.05, seeds=1))
    assert study._both_beat_none(one_seed).verdict == "inconclusive"
    noisy = _metrics(_errors(1.0, 1.0, 2.0, 2.0))
    assert study._prior_vs_axiomatic(noisy).verdict == "inconclusive"


def _config(**data_overrides: object) -> DiffumatchConfig:
    fam = FamilyConfig(0.1, 0.7, 4, [0.8, 1.2], [1.0, 1.0], [0.0, 0.0])
    data = dict(
        subdivisions=2, n_train=4, n_prior_maps=4, n_pairs=1, world_seed=0, k=8, basis=20,
        train_family=fam, test_family=fam, dfaust_path="", hf_repo="", hf_revision="",
        test_dataset="", cache_dir="data/x",
    ) | data_overrides  # fmt: skip
    match = MatchConfig(8, 8, 2, 2, 1e-3, 0.1, 4, 1.0, 12, 2, 0, 16, 1.0, 1.0, 1.0, 1.0, 1.0)
    return DiffumatchConfig(
        [0], DataConfig(**data), PriorConfig(16, 2, 19.9, 0.1, 1e-3, 8, 1), match, EvalConfig(8)
    )


def test_config_rules() -> None:
    validate(_config(), "diffumatch")
    with pytest.raises(ParamsError, match="basis"):
        validate(_config(basis=8), "diffumatch")
    with pytest.raises(ParamsError, match="zoomout_to"):
        validate(_config(basis=10), "diffumatch")
    assert _config(hf_repo="daidedou/matching_data").data.unpinned() == {
        "hf_revision": "commit of the dataset daidedou/matching_data"
    }
    bad = FamilyConfig(0.1, 0.7, 4, [1.2, 0.8], [1.0, 1.0], [0.0, 0.0])
    with pytest.raises(ParamsError, match="scale"):
        validate(_config(train_family=bad), "diffumatch")


SQUARE = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float)


def test_read_off_with_comments_and_a_quad(tmp_path: Path) -> None:
    path = tmp_path / "sq.off"
    rows = "\n".join(" ".join(map(str, v)) for v in SQUARE)
    path.write_text(f"OFF\n# a comment\n4 1 0\n{rows}\n4 0 1 2 3\n", encoding="ascii")
    verts, faces = full.read_off(path)
    np.testing.assert_array_equal(verts, SQUARE)
    np.testing.assert_array_equal(faces, [[0, 1, 2], [0, 2, 3]])
    path.write_text("OFF\n4 1 0\n0 0 0\n", encoding="ascii")
    with pytest.raises(ValueError, match="short"):
        full.read_off(path)
    path.write_text(f"OFF\n4 1 0\n{rows}\n3 0 1 9\n", encoding="ascii")
    with pytest.raises(ValueError, match="outside"):
        full.read_off(path)
    path.write_text("PLY\n", encoding="ascii")
    with pytest.raises(ValueError, match="OFF header"):
        full.read_off(path)


def _ply_header(fmt: str) -> bytes:
    return (
        f"ply\nformat {fmt} 1.0\ncomment tiny\nelement vertex 4\nproperty float x\n"
        "property float y\nproperty float z\nelement face 2\n"
        "property list uchar int vertex_indices\nend_header\n"
    ).encode("ascii")


def test_read_ply_ascii_and_binary(tmp_path: Path) -> None:
    tris = [[0, 1, 2], [0, 2, 3]]
    asc = tmp_path / "a.ply"
    body = "".join(" ".join(map(str, v)) + "\n" for v in SQUARE)
    body += "".join("3 " + " ".join(map(str, t)) + "\n" for t in tris)
    asc.write_bytes(_ply_header("ascii") + body.encode("ascii"))
    binary = tmp_path / "b.ply"
    blob = b"".join(struct.pack("<3f", *v) for v in SQUARE)
    blob += b"".join(struct.pack("<B3i", 3, *t) for t in tris)
    binary.write_bytes(_ply_header("binary_little_endian") + blob)
    for path in (asc, binary):
        verts, faces = full.read_mesh(path)
        np.testing.assert_allclose(verts, SQUARE)
        np.testing.assert_array_equal(faces, tris)
    big = tmp_path / "c.ply"
    big.write_bytes(_ply_header("binary_big_endian") + blob)
    with pytest.raises(ValueError, match="unsupported"):
        full.read_ply(big)
    with pytest.raises(ValueError, match="unsupported mesh"):
        full.read_mesh(tmp_path / "x.obj")


def test_correspondence_files(tmp_path: Path) -> None:
    vts = tmp_path / "a.vts"
    vts.write_text("1\n3\n2\n", encoding="ascii")
    np.testing.assert_array_equal(full.read_correspondence(vts, one_based=True), [0, 2, 1])
    mp = tmp_path / "a.map"
    mp.write_text("0 2 1", encoding="ascii")
    np.testing.assert_array_equal(full.read_correspondence(mp, one_based=False), [0, 2, 1])
    vts.write_text("0\n1\n", encoding="ascii")
    with pytest.raises(ValueError, match="below 1"):
        full.read_correspondence(vts, one_based=True)
    vts.write_text("a b\n", encoding="ascii")
    with pytest.raises(ValueError, match="vertex indices"):
        full.read_correspondence(vts, one_based=True)


def test_matching_pairs_from_a_tiny_dataset_folder(tmp_path: Path) -> None:
    from subspacelab.shapes import clouds

    verts, faces = clouds.icosphere(1)
    (tmp_path / "shapes").mkdir()
    (tmp_path / "corres").mkdir()
    for name, scale in (("tr_reg_000", 1.0), ("tr_reg_001", 2.0)):
        rows = "\n".join(" ".join(map(str, v)) for v in scale * verts)
        tri = "\n".join("3 " + " ".join(map(str, t)) for t in faces)
        text = f"OFF\n{len(verts)} {len(faces)} 0\n{rows}\n{tri}\n"
        (tmp_path / "shapes" / f"{name}.off").write_text(text, encoding="ascii")
        (tmp_path / "corres" / f"{name}.vts").write_text("1\n2\n3\n", encoding="ascii")
    shapes = full.matching_pairs(tmp_path, 1)
    assert len(shapes) == 2
    for v, f, corr in shapes:
        assert blobs.mesh_area(v, f) == pytest.approx(1.0)
        np.testing.assert_array_equal(corr, [0, 1, 2])
    with pytest.raises(ValueError, match="needed"):
        full.matching_pairs(tmp_path, 2)
    (tmp_path / "corres" / "tr_reg_001.vts").unlink()
    with pytest.raises(ValueError, match="no corres"):
        full.matching_pairs(tmp_path, 1)


def test_read_dfaust_from_a_tiny_registrations_file(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "registrations_f.hdf5"
    with h5py.File(path, "w") as f:
        f["faces"] = np.array([[0, 1, 2]])
        f["50004_punching"] = np.arange(3 * 3 * 5, dtype=float).reshape(3, 3, 5)
    frames, faces = full.read_dfaust(path, 4, np.random.default_rng(0))
    assert frames.shape == (4, 3, 3) and faces.tolist() == [[0, 1, 2]]
