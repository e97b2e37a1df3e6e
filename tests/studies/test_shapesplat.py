"""shapesplat (arXiv 2408.10906): the miniature's objects and splats, the distribution test,
normalisation and mIoU against known answers, the claims both ways, the config's errors and
the full profile's 3DGS .ply / text readers on tiny files written here."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import yaml

from subspacelab.api import Metrics, read_json
from subspacelab.config import ParamsError, study_config, unpinned
from subspacelab.shapes import splats
from subspacelab.studies.shapesplat import core, full
from subspacelab.studies.shapesplat.config import ShapesplatConfig
from subspacelab.studies.shapesplat.study import GROUP_HEADER, STUDY, _group_row
from tests.helpers import REPO, tiny_params

SHAPES = ["sphere", "box", "l_bracket"]


def test_objects_are_in_the_unit_ball_with_global_parts_and_part_colours() -> None:
    obj = core.make_objects(SHAPES, 3, 300, 0.0, np.random.default_rng(0))
    assert obj.points.shape == (9, 300, 3)
    np.testing.assert_allclose(np.linalg.norm(obj.points, axis=-1).max(1), 1.0)
    assert core.part_offsets(SHAPES) == [[0, 1], [2, 3, 4], [5, 6]]
    for parts, y, cols in zip(obj.parts, obj.labels, obj.colours, strict=True):
        assert set(np.unique(parts)) <= set(core.part_offsets(SHAPES)[y])
        for p in np.unique(parts):  # one colour per part of an object
            assert len(np.unique(cols[parts == p], axis=0)) == 1
    s = core.splat_objects(obj, 16, 3, 7, seed=0)
    assert s.features.shape == (9, 16, 14) and s.uniform.shape == (9, 16, 3)
    assert s.parts.max() < 7 and s.uniform_parts.shape == (9, 16)
    # a uniform point's part is its surface point's part
    for b in range(9):
        hit = (obj.points[b][:, None] == s.uniform[b][None]).all(-1)
        np.testing.assert_array_equal(obj.parts[b][hit.argmax(0)], s.uniform_parts[b])


def test_nn_distances_of_a_regular_line_and_the_ks_check() -> None:
    line = np.stack([np.arange(5.0), np.zeros(5), np.zeros(5)], 1)[None]
    np.testing.assert_allclose(core.nn_distances(line), 1.0)
    rng = np.random.default_rng(1)
    pts = splats.labelled("sphere", 4000, rng)[0][None].repeat(40, 0)
    same = core.distribution_check(core.resample(pts, 64, rng), pts, rng)
    assert same["dist/centroid_vs_uniform/ks_p"] > 0.01  # uniform against uniform
    grid = splats.fit_gmm(pts[:8], 64, 10, 0).means.numpy()  # evenly spread EM centres
    diff = core.distribution_check(grid, pts[:8], rng)
    assert diff["dist/centroid_vs_uniform/ks_p"] < 1e-6
    assert diff["dist/centroid/nn_cv"] < diff["dist/uniform/nn_cv"]  # more regular spacing


def test_normalisers_keep_xyz_and_give_attributes_the_coordinates_spread() -> None:
    rng = np.random.default_rng(2)
    feats = np.concatenate([0.5 * rng.standard_normal((10, 20, 3)),
                            5 + 3 * rng.standard_normal((10, 20, 11))], -1)  # fmt: skip
    shift, scale = core.normalisers(feats)
    out = ((feats - shift) / scale).reshape(-1, 14)
    np.testing.assert_allclose(out[:, :3], feats.reshape(-1, 14)[:, :3])
    np.testing.assert_allclose(out[:, 3:].mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(out[:, 3:].std(0), out[:, :3].std(), rtol=1e-12)


def test_instance_miou() -> None:
    class_parts = [[0, 1], [2, 3, 4]]
    gt = np.array([[0, 0, 1, 1], [2, 2, 3, 3]])
    perfect = np.eye(5)[gt]
    assert core.instance_miou(perfect, gt, np.array([0, 1]), class_parts) == 1.0
    # object 0: predicts part 0 everywhere -> IoU(0) = 2/4, IoU(1) = 0; object 1 perfect, its
    # absent part 4 counts 1; logits of the other class's parts are ignored
    logits = perfect.copy()
    logits[0, :, 0] = 5
    logits[1, :, 0] = 9
    got = core.instance_miou(logits, gt, np.array([0, 1]), class_parts)
    assert got == pytest.approx((0.25 + 1.0) / 2)


def _metrics(d: float, ctrl: float, p: float, gain: float, drop: float) -> dict[str, list[float]]:
    n = 3
    wobble = [0.0, 0.005, -0.005]
    return {
        "dist/centroid_vs_uniform/ks_d": [d + w for w in wobble],
        "dist/uniform_vs_uniform/ks_d": [ctrl] * n,
        "dist/centroid_vs_uniform/ks_p": [p] * n,
        "cls/centroid/acc": [0.80, 0.82, 0.84],
        "cls/all_feat/acc": [0.80 + gain, 0.82 + gain + 0.003, 0.84 + gain - 0.003],
        "cls/all_xyz/acc": [0.85] * n,
        "cls/uniform/acc": [0.80 + drop, 0.82 + drop + 0.002, 0.84 + drop - 0.002],
        "seg/uniform/miou": [0.70, 0.71, 0.72],
        "seg/centroid/miou": [0.70 + drop, 0.71 + drop + 0.002, 0.72 + drop - 0.002],
    }


def test_claims_hold_fail_and_are_inconclusive() -> None:
    checks = {c.id: c.check for c in STUDY.claims}
    good = Metrics(_metrics(0.3, 0.02, 1e-9, 0.05, 0.03))
    bad = Metrics(_metrics(0.01, 0.05, 0.3, -0.05, -0.03))
    for cid in ("i", "ii", "iii"):
        assert checks[cid](good).verdict == "holds", cid
        assert checks[cid](bad).verdict == "does not hold", cid
    unsure = _metrics(0.3, 0.02, 1e-9, 0.05, 0.03)
    unsure["dist/centroid_vs_uniform/ks_d"] = [0.3, 0.0, 0.01]
    unsure["cls/all_feat/acc"] = [0.9, 0.80, 0.86]  # gaps +0.10, -0.02, +0.02
    unsure["cls/uniform/acc"] = [0.9, 0.78, 0.86]
    m = Metrics(unsure)
    for cid in ("i", "ii", "iii"):
        assert checks[cid](m).verdict == "inconclusive", cid
    # a gain below the 2 pts of claim ii fails it, however consistent
    assert checks["ii"](Metrics(_metrics(0.3, 0.02, 1e-9, 0.01, 0.03))).verdict == ("does not hold")


def test_group_row_has_the_group_header() -> None:
    m = _metrics(0.3, 0.02, 1e-9, 0.05, 0.03)
    m.update({"seg/all_feat/miou": [0.8] * 3})
    row = _group_row(m).splitlines()
    assert row[0] == GROUP_HEADER
    assert row[0].count("|") == row[2].count("|") == 7


@pytest.mark.parametrize(
    ("section", "change", "field"),
    [
        ("data", {"shapes": ["sphere", "teapot"]}, "shapes"),
        ("data", {"shapes": ["sphere", "sphere"]}, "shapes"),
        ("data", {"components": 100}, "components"),
        ("model", {"dim": 10, "heads": 4}, "dim"),
        ("model", {"groups": 17}, "model"),
    ],
)
def test_config_errors_name_the_field(section: str, change: dict, field: str) -> None:
    params = tiny_params(["shapesplat"])
    params["shapesplat"]["mini"][section].update(change)
    with pytest.raises(ParamsError, match=field):
        study_config(ShapesplatConfig, params, "shapesplat", "mini")


def test_full_profile_declares_the_hub_revision() -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    cfg = study_config(ShapesplatConfig, params, "shapesplat", "full")
    assert cfg.data.hf_repo and cfg.model.depth == 12
    assert [p.split(":")[0] for p in unpinned(cfg, "shapesplat.full")] == [
        "shapesplat.full.data.hf_revision"
    ]
    cfg.data.hf_revision = "0" * 40
    assert cfg.data.unpinned() == {}


def _splat_fields(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    sp = splats.Splats(
        xyz=rng.standard_normal((n, 3)) * 2 + 5,
        opacity=rng.uniform(0.1, 0.9, n),
        scale=np.sort(rng.uniform(0.01, 0.2, (n, 3)), axis=1)[:, ::-1],
        rotation=splats.matrix_to_quaternion(np.stack([np.eye(3)] * n)),
        colour=rng.uniform(0.1, 0.9, (n, 3)),
    )
    fields = splats.encode_3dgs(sp)
    fields = {"x": fields["x"], "y": fields["y"], "z": fields["z"],
              "nx": np.zeros(n, np.float32), **{k: v for k, v in fields.items() if k not in "xyz"},
              "f_rest_0": np.zeros(n, np.float32)}  # fmt: skip
    fields["label"] = (np.arange(n) % 2).astype(np.int32)
    return fields


def test_ply_reader_reads_binary_and_ascii_3dgs_files(tmp_path: Path) -> None:
    fields = _splat_fields(10, np.random.default_rng(3))
    full.write_ply(tmp_path / "a.ply", fields)
    got = full.read_ply(tmp_path / "a.ply")
    assert list(got) == list(fields)
    for k in fields:
        np.testing.assert_array_equal(got[k], fields[k])
    names = list(fields)
    head = ["ply", "format ascii 1.0", "comment written by a test", "element vertex 10"]
    head += [f"property {'int' if k == 'label' else 'float'} {k}" for k in names]
    rows = [" ".join(repr(float(fields[k][i])) for k in names) for i in range(10)]
    (tmp_path / "b.ply").write_text("\n".join([*head, "end_header", *rows]) + "\n")
    ascii_ = full.read_ply(tmp_path / "b.ply")
    np.testing.assert_allclose(ascii_["opacity"], fields["opacity"])
    # big-endian binary
    dtype = np.dtype([(k, ">i4" if k == "label" else ">f4") for k in names])
    arr = np.empty(10, dtype)
    for k in names:
        arr[k] = fields[k]
    big = "\n".join([head[0], "format binary_big_endian 1.0", *head[3:], "end_header", ""])
    (tmp_path / "c.ply").write_bytes(big.encode() + arr.tobytes())
    np.testing.assert_array_equal(full.read_ply(tmp_path / "c.ply")["scale_1"], fields["scale_1"])
    (tmp_path / "d.ply").write_bytes((tmp_path / "a.ply").read_bytes()[:-7])
    with pytest.raises(ValueError, match="truncated"):
        full.read_ply(tmp_path / "d.ply")
    face = "ply\nformat ascii 1.0\nelement face 1\nproperty list uchar int vertex_indices\n"
    (tmp_path / "e.ply").write_text(face + "end_header\n")
    with pytest.raises(ValueError, match="unsupported property"):
        full.read_ply(tmp_path / "e.ply")
    (tmp_path / "f.ply").write_text("solid\n")
    with pytest.raises(ValueError, match="not a PLY"):
        full.read_ply(tmp_path / "f.ply")


def test_full_data_step_reads_a_tiny_modelnet_splats_tree(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    splat_root, uniform_root = tmp_path / "splats", tmp_path / "uniform"
    for cls in ("chair", "desk"):
        for split in ("train", "test"):
            for i in range(2):
                (splat_root / cls / split).mkdir(parents=True, exist_ok=True)
                (uniform_root / cls / split).mkdir(parents=True, exist_ok=True)
                full.write_ply(splat_root / cls / split / f"{cls}_{i}.ply", _splat_fields(40, rng))
                pts = rng.standard_normal((60, 6))
                np.savetxt(uniform_root / cls / split / f"{cls}_{i}.txt", pts, delimiter=",")
    params = tiny_params(["shapesplat"])
    params["shapesplat"]["mini"]["data"].update(
        {"splats_dir": str(splat_root), "uniform_dir": str(uniform_root), "components": 16,
         "surface_points": 32}
    )  # fmt: skip
    cfg = study_config(ShapesplatConfig, params, "shapesplat", "mini")
    saved: dict[str, dict[str, Any]] = {}
    out = tmp_path / "out"
    out.mkdir()
    ctx = SimpleNamespace(
        cfg=cfg,
        out=out,
        seeds=[0, 1],
        seeded=lambda: iter([0, 1]),
        progress=lambda msg: None,
        save=lambda name, tensors, **kw: saved.__setitem__(name, tensors),
    )
    full.data_full(ctx)  # type: ignore[arg-type]
    train = saved["train"]
    assert train["features"].shape == (4, 16, 14) and train["uniform"].shape == (4, 16, 3)
    assert sorted(train["labels"].tolist()) == [0, 0, 1, 1]
    np.testing.assert_allclose(np.linalg.norm(train["features"][..., :3], axis=-1).max(), 1.0,
                               atol=1e-5)  # fmt: skip
    assert set(np.unique(train["parts"])) == {0, 1}  # the ply's 'label' property
    meta = read_json(out / "meta.json")
    assert meta["classes"] == ["chair", "desk"] and meta["n_parts"] == 2
    assert set(read_json(out / "distribution.json")) == {"seed0", "seed1"}
