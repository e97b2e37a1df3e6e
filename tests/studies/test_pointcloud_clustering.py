"""pointcloud_clustering (arXiv 2307.14605): the study's pieces, claims both ways, the
SemanticKITTI readers on tiny archives written here."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from subspacelab.api import Metrics
from subspacelab.config import ParamsError, study_config
from subspacelab.studies.pointcloud_clustering import core, full
from subspacelab.studies.pointcloud_clustering.config import PointcloudClusteringConfig
from subspacelab.studies.pointcloud_clustering.study import STUDY, rotate_z
from tests.helpers import tiny_params

SLUG = "pointcloud_clustering"


def test_rotation_about_z_keeps_heights_and_ranges() -> None:
    pts = torch.randn(3, 50, 3)
    out = rotate_z(pts, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out[..., 2], pts[..., 2])
    torch.testing.assert_close(out[..., :2].norm(dim=-1), pts[..., :2].norm(dim=-1))
    assert not torch.allclose(out, pts)


def test_scores_of_hand_made_predictions() -> None:
    labels = torch.tensor([[0, 0, 1, 1, core.IGNORE]])
    pred = torch.tensor([[0, 1, 1, 1, 0]])
    miou, per_class = core.scores(pred, labels, 3)
    assert per_class[:2].tolist() == pytest.approx([50.0, 200 / 3])
    assert np.isnan(per_class[2])
    assert miou == pytest.approx((50.0 + 200 / 3) / 2)


def test_nmi_and_occupancy_extremes() -> None:
    a = np.array([0, 0, 1, 1, 2, 2])
    assert core.nmi(a, np.array([5, 5, 3, 3, 4, 4])) == pytest.approx(1.0)
    assert core.nmi(a, np.zeros(6, dtype=int)) == pytest.approx(0.0)
    assert core.occupancy_entropy(np.array([0, 1, 2, 3]), 4) == pytest.approx(1.0)
    assert core.occupancy_entropy(np.zeros(5, dtype=int), 4) == pytest.approx(0.0)


def test_the_arms_losses_differ_only_by_the_cluster_term() -> None:
    split = core.split_tensors(
        np.random.default_rng(0).normal(size=(2, 40, 3)).astype(np.float32),
        np.tile(np.arange(4), 20).reshape(2, 40),
        -np.ones((2, 40), dtype=np.int64),
        5,
    )
    from subspacelab.shapes.edgeconv import EdgeSegNet
    from subspacelab.shapes.segloss import ClusterContrast

    def model(cluster: bool) -> core.SegModel:
        torch.manual_seed(0)
        net = EdgeSegNet(3, 4, k=5, widths=(8,), global_dim=4, head_dim=8, embed_dim=4,
                         dynamic=False)  # fmt: skip
        cc = ClusterContrast(
            4, 2, 4, momentum=0.9, tau=0.1, tau_base=2.0, power=25.0, max_samples=20,
            max_views=10, queue=4, enqueue=2, sinkhorn_tol=0.1, sinkhorn_iter=50, seed=0,
        )  # fmt: skip
        return core.SegModel(net, cc if cluster else None)

    batch = (split["points"], split["labels"], split["idx"])
    base = core.seg_loss(model(False), 1.0, 1.0)(*batch)
    with_cluster = core.seg_loss(model(True), 1.0, 1.0)(*batch)
    assert with_cluster.detach().item() > base.detach().item() > 0


def _m(base: list[float], clus: list[float], nmi: list[float]) -> Metrics:
    n = len(base)
    return Metrics(
        {
            "test/baseline/miou": base,
            "test/cluster/miou": clus,
            "test/baseline/car_nmi": [0.2] * n,
            "test/cluster/car_nmi": nmi,
            "test/cluster/car_occupancy": [0.9] * n,
        }
    )


def test_claims_hold_fail_and_are_inconclusive() -> None:
    checks = {c.id: c.check for c in STUDY.claims}
    good = _m([70.0, 72.0, 71.0], [72.0, 74.1, 72.9], [0.50, 0.55, 0.52])
    bad = _m([70.0, 72.0, 71.0], [69.8, 71.7, 70.9], [0.10, 0.12, 0.08])
    unsure = _m([70.0, 72.0, 71.0], [73.0, 71.0, 72.5], [0.2, 0.6, 0.35])
    for cid in ("miou_gain", "car_subtypes"):
        assert checks[cid](good).verdict == "holds", cid
        assert checks[cid](bad).verdict == "does not hold", cid
        assert checks[cid](unsure).verdict == "inconclusive", cid


def test_group_row_has_the_group_header() -> None:
    from subspacelab.studies.pointcloud_clustering.study import _group_row

    metrics = {f"test/{a}/{q}": [0.5, 0.6] for a in core.ARMS for q in ("miou", "car_nmi")}
    row = _group_row(metrics)
    assert row.splitlines()[0] == (
        "| task | subspace or basis | our method | baseline | ours vs baseline "
        "| what the miniature leaves out |"
    )
    assert len(row.splitlines()) == 3


@pytest.mark.parametrize(
    ("section", "change", "field"),
    [
        ("data", {"knn": 100000}, "knn"),
        ("data", {"test_layout": {"cars": [5, 2]}}, "test_layout"),
        ("data", {"sensor": {"fov_up": -30.0}}, "sensor"),
        ("train", {"schedule": "step"}, "schedule"),
    ],
)
def test_config_errors_name_the_field(section: str, change: dict, field: str) -> None:
    params = tiny_params([SLUG])
    target = params[SLUG]["mini"][section]
    for key, value in change.items():
        if isinstance(value, dict):
            target[key] = {**target[key], **value}
        else:
            target[key] = value
    with pytest.raises(ParamsError, match=field):
        study_config(PointcloudClusteringConfig, params, SLUG, "mini")


def test_full_profile_declares_its_pins() -> None:
    params = tiny_params([SLUG])
    cfg = study_config(PointcloudClusteringConfig, params, SLUG, "full")
    assert cfg.data.kitti is not None and cfg.data.kitti.val_sequences == ["08"]
    assert set(cfg.data.unpinned()) == {"kitti.velodyne_sha256", "kitti.labels_sha256"}


def _write_kitti(root: Path, frames: dict[str, int]) -> tuple[Path, Path, dict]:
    """Tiny velodyne and label zips in SemanticKITTI's layout; returns what was written."""
    rng = np.random.default_rng(0)
    raw_labels = np.array([0, 10, 252, 40, 50, 70, 71, 80, 99, 258], dtype=np.uint32)
    written = {}
    velodyne, labels = root / "velodyne.zip", root / "labels.zip"
    with zipfile.ZipFile(velodyne, "w") as zv, zipfile.ZipFile(labels, "w") as zl:
        for seq, n in frames.items():
            for f in range(n):
                scan = rng.normal(size=(30, 4)).astype("<f4")
                sem = raw_labels[rng.integers(len(raw_labels), size=30)]
                inst = rng.integers(0, 5, size=30).astype(np.uint32) << 16  # instance bits
                zv.writestr(f"dataset/sequences/{seq}/velodyne/{f:06d}.bin", scan.tobytes())
                zl.writestr(
                    f"dataset/sequences/{seq}/labels/{f:06d}.label",
                    (sem | inst).astype("<u4").tobytes(),
                )
                written[(seq, f)] = (scan, sem)
    return velodyne, labels, written


def test_kitti_readers_on_tiny_archives(tmp_path: Path) -> None:
    velodyne, labels, written = _write_kitti(tmp_path, {"00": 4, "08": 2})
    lut = full.lookup(full.LEARNING_MAP)
    pts, cls, sub = full.load_split(velodyne, labels, ["00"], 2, 30, lut, np.random.default_rng(0))
    assert pts.shape == (2, 30, 3) and cls.shape == sub.shape == (2, 30)
    # n_points equals the scan size: a permutation of frame 0's points, labels kept per point
    scan0, sem0 = written[("00", 0)]
    order = np.lexsort(pts[0].T)
    ref = np.lexsort(scan0[:, :3].T)
    np.testing.assert_array_equal(pts[0][order], scan0[ref, :3])
    expected = lut[sem0.astype(np.int64)]
    np.testing.assert_array_equal(cls[0][order], expected[ref])
    names = full.CLASSES
    assert expected[sem0 == 10][0] == names.index("car") == expected[sem0 == 252][0]
    assert (expected[(sem0 == 0) | (sem0 == 99)] == core.IGNORE).all()
    assert expected[sem0 == 258][0] == names.index("truck")
    assert set(np.unique(sub)) <= {-1, 0, 1}
    car_sub = sub[0][order][np.isin(sem0[ref], [10, 252])]
    np.testing.assert_array_equal(car_sub, (sem0[ref][np.isin(sem0[ref], [10, 252])] == 252))


def test_kitti_learning_map_from_yaml_and_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "semantic-kitti.yaml"
    path.write_text("labels: {0: unlabeled}\nlearning_map:\n  0: 0\n  10: 1\n  40: 9\n")
    mapping = full.read_learning_map(path)
    assert mapping == {0: 0, 10: 1, 40: 9}
    lut = full.lookup(mapping)
    assert lut[10] == 0 and lut[40] == 8 and lut[0] == core.IGNORE and lut[11] == core.IGNORE
    (tmp_path / "bad.yaml").write_text("labels: {}\n")
    with pytest.raises(ValueError, match="learning_map"):
        full.read_learning_map(tmp_path / "bad.yaml")
    with pytest.raises(ValueError, match="float32"):
        full.read_scan(b"\x00" * 10)
    with pytest.raises(ValueError, match="uint32"):
        full.read_label(b"\x00" * 6)
    velodyne, labels, _ = _write_kitti(tmp_path, {"00": 1})
    with pytest.raises(ValueError, match="sequence 08"):
        full.load_split(velodyne, labels, ["08"], 1, 10, lut, np.random.default_rng(0))
