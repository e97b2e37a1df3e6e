"""The synthetic single-cell cohort (subspacelab.shapes.cohorts; HiPoNet's miniature, spec §6)."""

from __future__ import annotations

import numpy as np
import pytest

from subspacelab.shapes import cohorts


def test_shapes_labels_and_determinism() -> None:
    a = cohorts.cohort(30, 40, 30, 0.05, seed=3)
    b = cohorts.cohort(30, 40, 30, 0.05, seed=3)
    assert a.x.shape == (30, 40, 30) and a.x.dtype == np.float32
    np.testing.assert_array_equal(a.x, b.x)
    assert np.bincount(a.y).tolist() == [10, 10, 10]  # balanced
    np.testing.assert_array_equal(a.loops, (a.y == 0).astype(np.int64))
    assert not np.array_equal(a.x, cohorts.cohort(30, 40, 30, 0.05, seed=4).x)


def _planar(cloud: np.ndarray) -> np.ndarray:
    """The label markers' cloud, centred, in its own top-2 principal plane."""
    z = cloud[:, :4] - cloud[:, :4].mean(0)
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    assert s[2] < 1e-3 * s[0]  # the label process lives in a 2-plane of markers 0-3
    return z @ vt[:2].T


def test_label_shapes_are_a_loop_two_clusters_and_a_line() -> None:
    c = cohorts.cohort(9, 400, 12, 0.0, seed=0)
    for cloud, label in zip(c.x, c.y, strict=True):
        p = _planar(cloud)
        radius = np.linalg.norm(p, axis=1)
        if label == 0:  # a circle of radius sqrt(2) (about the sample centroid): a hole
            assert radius.min() > 1.2 and radius.max() < 1.65
        elif label == 2:  # a segment: rank one
            assert np.linalg.svd(p, compute_uv=False)[1] < 1e-4
        else:  # two clusters: hardly any point near the midpoint of their centres
            assert (radius < 0.3).mean() < 0.05


def test_standardise_gives_unit_marker_variance_and_zero_means() -> None:
    x = cohorts.standardise(cohorts.cohort(6, 100, 30, 0.1, seed=1).x)
    np.testing.assert_allclose(x.mean(1), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.std(1), 1.0, atol=1e-4)
    const = cohorts.standardise(np.ones((1, 5, 3), dtype=np.float32))
    np.testing.assert_array_equal(const, 0.0)  # a constant marker: no division by zero


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="n_markers"):
        cohorts.cohort(10, 10, 9, 0.1, seed=0)
    with pytest.raises(ValueError, match="patients"):
        cohorts.cohort(2, 10, 30, 0.1, seed=0)
    with pytest.raises(ValueError, match="jitter"):
        cohorts.cohort(10, 10, 30, -1.0, seed=0)
    with pytest.raises(ValueError, match="unknown shape"):
        cohorts.planar_shape("torus", 5, np.random.default_rng(0), 0.0)
