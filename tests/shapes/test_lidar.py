"""Procedural LiDAR scenes (subspacelab.shapes.lidar): seeding, labels, ray casting."""

from __future__ import annotations

import numpy as np
import pytest

from subspacelab.shapes import lidar

SENSOR = lidar.Sensor(16, 180, 2.0, -24.0, 1.8, 40.0, 0.0, 0.0)
LAYOUT = lidar.Layout(30.0, (1, 2), (3, 5), (2, 3), (3, 5))
EMPTY = lidar.Layout(30.0, (0, 0), (0, 0), (0, 0), (0, 0))


def test_same_seed_same_scan_and_other_seeds_differ() -> None:
    a = lidar.lidar_dataset(2, 256, SENSOR, LAYOUT, 3)
    b = lidar.lidar_dataset(2, 256, SENSOR, LAYOUT, 3)
    c = lidar.lidar_dataset(2, 256, SENSOR, LAYOUT, 4)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    assert a[0].shape == (2, 256, 3) and a[0].dtype == np.float32
    assert a[1].shape == a[2].shape == (2, 256)


def test_labels_and_subtypes_are_consistent() -> None:
    _, cls, sub = lidar.lidar_dataset(6, 2048, SENSOR, LAYOUT, 0)
    assert set(np.unique(cls)) <= set(range(len(lidar.CLASSES)))
    car, veg = lidar.CLASSES.index("car"), lidar.CLASSES.index("vegetation")
    plain = (cls != car) & (cls != veg)
    assert (sub[plain] == lidar.NO_SUBTYPE).all()
    assert set(np.unique(sub[cls == car])) == set(range(len(lidar.CAR_TYPES)))
    assert set(np.unique(sub[cls == veg])) <= set(range(len(lidar.VEGETATION_TYPES)))
    assert {car, veg, lidar.CLASSES.index("ground")} <= set(np.unique(cls))


def test_an_empty_scene_is_ground_starting_at_the_lowest_ring() -> None:
    pts, cls, _ = lidar.lidar_scene(500, SENSOR, EMPTY, np.random.default_rng(0))
    assert (cls == 0).all()
    np.testing.assert_allclose(pts[:, 2], -SENSOR.height, atol=1e-5)
    rng = np.hypot(pts[:, 0], pts[:, 1])
    nearest = SENSOR.height / np.tan(np.deg2rad(-SENSOR.fov_down))
    assert rng.min() == pytest.approx(nearest, rel=1e-4)
    assert rng.max() <= SENSOR.max_range


def test_density_falls_with_range() -> None:
    """Points per square metre of ground within 8 m far exceed those between 16 and 24 m."""
    pts, _, _ = lidar.lidar_scene(4000, SENSOR, EMPTY, np.random.default_rng(1))
    r = np.hypot(pts[:, 0], pts[:, 1])
    near = (r < 8).sum() / (np.pi * 8**2)
    far = ((r >= 16) & (r < 24)).sum() / (np.pi * (24**2 - 16**2))
    assert near > 5 * far


def test_ray_hits_by_hand() -> None:
    """A ray along +x from the origin meets a box, a cylinder and a sphere centred at x = 5."""
    o, d = np.zeros(3), np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    box = [(np.array([5.0, 0.0, 0.0]), 0.3, np.array([0.5, 0.5, 0.5]), 1, -1)]
    t = lidar._hit_boxes(o, d, box)
    # yawed by 0.3 rad: the near face is hit where the rotated slab begins
    assert t[0, 0] == pytest.approx(5.0 - 0.5 / np.cos(0.3), rel=1e-9)
    assert np.isinf(t[1, 0])  # behind the sensor
    cyl = [(np.array([5.0, 0.0]), 0.5, 2.0, 3, -1)]
    assert lidar._hit_cylinders(np.array([0.0, 0.0, 1.0]), d, cyl)[0, 0] == pytest.approx(4.5)
    ell = [(np.array([5.0, 0.0, 0.0]), np.array([1.0, 1.0, 1.0]), 4, 0)]
    assert lidar._hit_ellipsoids(o, d, ell)[0, 0] == pytest.approx(4.0)


def test_objects_occlude_what_stands_behind() -> None:
    """Every return lies at the first hit: no ray passes through a nearer object."""
    sensor = lidar.Sensor(16, 360, 2.0, -24.0, 1.8, 40.0, 0.0, 0.0)
    pts, cls, _ = lidar.lidar_scene(3000, sensor, LAYOUT, np.random.default_rng(2))
    assert (cls != 0).any()
    ray = pts.astype(np.float64)  # the sensor sits at the origin
    unit = ray / np.linalg.norm(ray, axis=1, keepdims=True)
    ground, other = np.where(cls == 0)[0], np.where(cls != 0)[0]
    cos = unit[ground] @ unit[other].T
    same_ray = cos > 1 - 1e-9
    nearer = (
        np.linalg.norm(ray[other], axis=1)[None, :] < np.linalg.norm(ray[ground], axis=1)[:, None]
    )
    assert not (same_ray & nearer).any()


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: lidar.Sensor(0, 10, 2.0, -24.0, 1.8, 40.0, 0.0, 0.0), "beams"),
        (lambda: lidar.Sensor(8, 10, -30.0, -24.0, 1.8, 40.0, 0.0, 0.0), "fov_down"),
        (lambda: lidar.Sensor(8, 10, 2.0, -24.0, 1.8, 40.0, 1.0, 0.0), "dropout"),
        (lambda: lidar.Layout(30.0, (2, 1), (0, 0), (0, 0), (0, 0)), "buildings"),
        (lambda: lidar.lidar_scene(0, SENSOR, EMPTY, np.random.default_rng(0)), "n_points"),
    ],
)
def test_bad_input_is_refused(make, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        make()
