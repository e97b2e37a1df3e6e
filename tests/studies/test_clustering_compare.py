"""clustering_compare: the backbone, the image view for LIHF, every method registered."""

from __future__ import annotations

import numpy as np
import pytest

from subspacelab.nets.training import LocalEnv
from subspacelab.studies.clustering_compare.study import (
    METHODS,
    PROVENANCE,
    STUDY,
    _as_images,
    train_backbone,
)


def test_backbone_codes_and_image_view() -> None:
    x = np.random.default_rng(0).random((20, 64)).astype(np.float32)
    _, codes = train_backbone(LocalEnv(), x, 8, 16, 2, 1e-3, seed=0)
    assert codes.shape == (20, 16)
    img = _as_images(codes)
    assert tuple(img.shape) == (20, 1, 4, 4) and float(img.min()) == 0.0
    with pytest.raises(ValueError):
        _as_images(np.zeros((3, 10)))


def test_comparison_declares_every_group_method_and_how_it_runs() -> None:
    assert STUDY.kind == "comparison" and not STUDY.claims
    assert {"mlc", "lihf_dsc", "s2cag", "geo_sae", "lsr", "ssc", "lrr"} <= set(METHODS)
    assert set(PROVENANCE) == set(METHODS)
    # the group's methods all run outside their papers' settings here: marked as adapted
    for m in ("mlc", "lihf_dsc", "s2cag", "geo_sae"):
        assert PROVENANCE[m].startswith("adapted:"), m


def test_frontier_keeps_the_methods_no_faster_one_beats() -> None:
    from subspacelab.studies.clustering_compare.study import frontier

    times = dict(zip(METHODS, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0], strict=True))
    accs = dict(zip(METHODS, [0.5, 0.4, 0.7, 0.7, 0.6, 0.9, 0.8, 0.95, 0.1], strict=True))
    metrics = {f"x/{m}/wall_time": [times[m], times[m] + 0.2] for m in METHODS} | {
        f"x/{m}/acc": [accs[m]] * 2 for m in METHODS
    }
    rows = frontier(metrics, "x")
    assert [r["acc"] for r in rows] == [0.5, 0.7, 0.9, 0.95]
    assert rows[0]["wall_time"] == pytest.approx(1.1)
    assert {c.name for c in STUDY.curves} == {"frontier_digits_ae", "frontier_subspaces"}
    assert all(set(r) == {"wall_time", "acc"} for r in rows)
