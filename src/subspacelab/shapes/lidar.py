"""Procedural LiDAR-like street scenes with per-point class and sub-type labels.

The miniature of pointcloud_clustering (Feng et al., "Clustering based Point Cloud
Representation Learning for 3D Analysis", ICCV 2023, arXiv:2307.14605, spec §6): a ground
plane, buildings, cars of three sub-types (sedan / van / truck proportions, random yaw), poles
and vegetation of two sub-types (bushes; trees with a trunk and a crown) around a virtual
spinning sensor at the origin.

Points are not sampled on the surfaces: every laser ray (``beams`` elevations × ``azimuths``
directions) is cast analytically against every primitive (plane, yawed box, vertical cylinder,
ellipsoid) and keeps its first hit. Density therefore falls with range (∝ 1/r²), objects hide
what stands behind them and show only the faces turned to the sensor (self-occlusion), exactly
the viewpoint variation a real scan has. A seeded generator draws everything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASSES = ("ground", "building", "car", "pole", "vegetation")
CAR_TYPES = ("sedan", "van", "truck")
VEGETATION_TYPES = ("bush", "tree")
# (length, width, height) ranges in metres per car sub-type
_CAR_SIZE = {
    "sedan": ((4.0, 4.8), (1.7, 1.9), (1.35, 1.55)),
    "van": ((4.8, 5.6), (1.9, 2.1), (2.0, 2.5)),
    "truck": ((7.0, 9.5), (2.3, 2.6), (3.0, 3.6)),
}
NO_SUBTYPE = -1


@dataclass(frozen=True)
class Sensor:
    """A spinning LiDAR: ``beams`` rings evenly from ``fov_down`` to ``fov_up`` degrees of
    elevation, ``azimuths`` directions per ring, mounted ``height`` metres above the ground;
    returns beyond ``max_range`` are lost, each return is dropped with probability ``dropout``
    and its range perturbed by Gaussian noise of sd ``range_noise`` metres."""

    beams: int
    azimuths: int
    fov_up: float
    fov_down: float
    height: float
    max_range: float
    dropout: float
    range_noise: float

    def __post_init__(self) -> None:
        if self.beams < 1 or self.azimuths < 1:
            raise ValueError(f"beams and azimuths must be >= 1, got {self.beams}, {self.azimuths}")
        if not self.fov_down < self.fov_up:
            raise ValueError(f"fov_down ({self.fov_down}) must be below fov_up ({self.fov_up})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.height <= 0 or self.max_range <= 0 or self.range_noise < 0:
            raise ValueError("height and max_range must be > 0, range_noise >= 0")

    def rays(self) -> np.ndarray:
        """Unit ray directions, (beams · azimuths, 3)."""
        elev = np.deg2rad(np.linspace(self.fov_down, self.fov_up, self.beams))
        azim = np.linspace(0.0, 2 * np.pi, self.azimuths, endpoint=False)
        e, a = np.meshgrid(elev, azim, indexing="ij")
        return np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], -1).reshape(
            -1, 3
        )


@dataclass(frozen=True)
class Layout:
    """How many objects of each kind a scene holds (inclusive ranges) within ``radius`` metres."""

    radius: float
    buildings: tuple[int, int]
    cars: tuple[int, int]
    poles: tuple[int, int]
    vegetation: tuple[int, int]

    def __post_init__(self) -> None:
        for name in ("buildings", "cars", "poles", "vegetation"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name}: want 0 <= low <= high, got ({lo}, {hi})")
        if self.radius < 10:
            raise ValueError(f"radius must be >= 10 m, got {self.radius}")


@dataclass
class _Prims:
    """The scene's primitives, each with its class and sub-type."""

    boxes: list[tuple[np.ndarray, float, np.ndarray, int, int]]  # centre, yaw, half, cls, sub
    cylinders: list[tuple[np.ndarray, float, float, int, int]]  # base xy, radius, height, ...
    ellipsoids: list[tuple[np.ndarray, np.ndarray, int, int]]  # centre, radii, cls, sub


def _place(
    rng: np.random.Generator,
    taken: list[tuple[float, float, float]],
    lo: float,
    hi: float,
    r: float,
) -> np.ndarray | None:
    """A free xy spot at range [lo, hi] for a footprint of radius ``r`` (None after 50 tries)."""
    for _ in range(50):
        rho, phi = rng.uniform(lo, hi), rng.uniform(0, 2 * np.pi)
        xy = np.array([rho * np.cos(phi), rho * np.sin(phi)])
        if all(np.hypot(xy[0] - x, xy[1] - y) > r + s for x, y, s in taken):
            taken.append((float(xy[0]), float(xy[1]), r))
            return xy
    return None


def _layout(layout: Layout, rng: np.random.Generator) -> _Prims:
    prims = _Prims([], [], [])
    taken: list[tuple[float, float, float]] = [(0.0, 0.0, 2.5)]  # the sensor's own car
    rad = layout.radius
    for _ in range(rng.integers(layout.buildings[0], layout.buildings[1] + 1)):
        half = np.array([rng.uniform(4, 10), rng.uniform(3, 6), rng.uniform(2.5, 6)])
        xy = _place(rng, taken, 0.55 * rad, 0.9 * rad, float(np.hypot(half[0], half[1])) * 0.8)
        if xy is not None:
            yaw = float(np.arctan2(xy[1], xy[0]) + rng.normal(0, 0.2))  # facing the street
            prims.boxes.append((np.array([*xy, half[2]]), yaw, half, 1, NO_SUBTYPE))
    for _ in range(rng.integers(layout.cars[0], layout.cars[1] + 1)):
        sub = int(rng.integers(len(CAR_TYPES)))
        size = np.array([rng.uniform(*r) for r in _CAR_SIZE[CAR_TYPES[sub]]])
        xy = _place(rng, taken, 4.0, 0.6 * rad, float(size[0]) / 2)
        if xy is not None:
            yaw = float(rng.choice([0.0, np.pi / 2]) + rng.normal(0, 0.3))  # along the streets
            prims.boxes.append((np.array([*xy, size[2] / 2]), yaw, size / 2, 2, sub))
    for _ in range(rng.integers(layout.poles[0], layout.poles[1] + 1)):
        xy = _place(rng, taken, 3.0, 0.8 * rad, 0.5)
        if xy is not None:
            radius, height = rng.uniform(0.08, 0.18), rng.uniform(3.5, 7.0)
            prims.cylinders.append((xy, float(radius), float(height), 3, NO_SUBTYPE))
    for _ in range(rng.integers(layout.vegetation[0], layout.vegetation[1] + 1)):
        sub = int(rng.integers(len(VEGETATION_TYPES)))
        if VEGETATION_TYPES[sub] == "bush":  # low, wide blob on the ground
            radii = np.array([rng.uniform(0.8, 2.0), rng.uniform(0.8, 2.0), rng.uniform(0.5, 1.0)])
            xy = _place(rng, taken, 4.0, 0.85 * rad, float(radii[:2].max()))
            if xy is not None:
                prims.ellipsoids.append((np.array([*xy, 0.7 * radii[2]]), radii, 4, sub))
        else:  # a trunk and a round crown
            crown = rng.uniform(1.5, 2.8)
            trunk = rng.uniform(1.8, 3.2)
            xy = _place(rng, taken, 4.0, 0.85 * rad, float(crown))
            if xy is not None:
                prims.cylinders.append((xy, float(rng.uniform(0.2, 0.35)), float(trunk), 4, sub))
                radii = np.array([crown, crown, crown * rng.uniform(0.8, 1.2)])
                prims.ellipsoids.append((np.array([*xy, trunk + 0.8 * radii[2]]), radii, 4, sub))
    return prims


def _hit_boxes(o: np.ndarray, d: np.ndarray, boxes: list) -> np.ndarray:  # type: ignore[type-arg]
    """First-hit distances (rays, boxes) by the slab method in each box's own frame."""
    out = np.full((len(d), len(boxes)), np.inf)
    for j, (centre, yaw, half, _, _) in enumerate(boxes):
        c, s = np.cos(-yaw), np.sin(-yaw)
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        lo = rot @ (o - centre)
        ld = d @ rot.T
        ld = np.where(np.abs(ld) < 1e-12, 1e-12, ld)  # a ray parallel to a slab never meets it
        t1 = (-half - lo) / ld
        t2 = (half - lo) / ld
        tmin = np.minimum(t1, t2).max(axis=1)
        tmax = np.maximum(t1, t2).min(axis=1)
        ok = (tmax >= tmin) & (tmin > 0)
        out[ok, j] = tmin[ok]
    return out


def _hit_cylinders(o: np.ndarray, d: np.ndarray, cyls: list) -> np.ndarray:  # type: ignore[type-arg]
    """First-hit distances on the sides of vertical cylinders standing on the ground."""
    out = np.full((len(d), len(cyls)), np.inf)
    for j, (xy, radius, height, _, _) in enumerate(cyls):
        px, py = o[0] - xy[0], o[1] - xy[1]
        a = d[:, 0] ** 2 + d[:, 1] ** 2
        b = 2 * (px * d[:, 0] + py * d[:, 1])
        c = px**2 + py**2 - radius**2
        disc = b**2 - 4 * a * c
        ok = (disc >= 0) & (a > 1e-12)
        t = np.where(ok, (-b - np.sqrt(np.where(ok, disc, 0.0))) / (2 * np.where(ok, a, 1.0)), 0)
        z = o[2] + t * d[:, 2]
        ok &= (t > 0) & (z >= 0) & (z <= height)
        out[ok, j] = t[ok]
    return out


def _hit_ellipsoids(o: np.ndarray, d: np.ndarray, ells: list) -> np.ndarray:  # type: ignore[type-arg]
    """First-hit distances on axis-aligned ellipsoids (scaled to the unit sphere)."""
    out = np.full((len(d), len(ells)), np.inf)
    for j, (centre, radii, _, _) in enumerate(ells):
        po, pd = (o - centre) / radii, d / radii
        a = (pd**2).sum(1)
        b = 2 * pd @ po
        c = po @ po - 1.0
        disc = b**2 - 4 * a * c
        ok = disc >= 0
        t = np.where(ok, (-b - np.sqrt(np.where(ok, disc, 0.0))) / (2 * a), 0)
        ok &= t > 0
        out[ok, j] = t[ok]
    return out


def lidar_scene(
    n_points: int, sensor: Sensor, layout: Layout, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One scan: ``n_points`` returns (drawn from all first hits; with replacement only when a
    scan has fewer), their classes (indices into :data:`CLASSES`) and sub-types (indices into
    :data:`CAR_TYPES` for cars, :data:`VEGETATION_TYPES` for vegetation, ``-1`` otherwise).
    Points are in the sensor's frame as in KITTI's velodyne files (metres, origin at the
    sensor, ground at z = −height), float32."""
    if n_points < 1:
        raise ValueError(f"n_points must be >= 1, got {n_points}")
    prims = _layout(layout, rng)
    o = np.array([0.0, 0.0, sensor.height])
    d = sensor.rays()
    hits = [np.where(d[:, 2] < 0, -sensor.height / np.minimum(d[:, 2], -1e-12), np.inf)[:, None]]
    cls, sub = [0], [NO_SUBTYPE]
    for found, items in (
        (_hit_boxes(o, d, prims.boxes), prims.boxes),
        (_hit_cylinders(o, d, prims.cylinders), prims.cylinders),
        (_hit_ellipsoids(o, d, prims.ellipsoids), prims.ellipsoids),
    ):
        hits.append(found)
        cls += [item[-2] for item in items]
        sub += [item[-1] for item in items]
    t_all = np.concatenate(hits, 1)
    first = t_all.argmin(1)
    t = t_all[np.arange(len(d)), first]
    keep = (t <= sensor.max_range) & (rng.uniform(size=len(d)) >= sensor.dropout)
    if not keep.any():
        raise ValueError("the sensor saw nothing: check max_range and the layout")
    t = t[keep] + sensor.range_noise * rng.standard_normal(int(keep.sum()))
    pts = d[keep] * t[:, None]
    labels, subs = np.asarray(cls)[first[keep]], np.asarray(sub)[first[keep]]
    take = rng.choice(len(pts), n_points, replace=len(pts) < n_points)
    return pts[take].astype(np.float32), labels[take].astype(np.int64), subs[take].astype(np.int64)


def lidar_dataset(
    n_scenes: int, n_points: int, sensor: Sensor, layout: Layout, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n_scenes`` scans from one seeded generator: points (S, N, 3), classes and sub-types
    (S, N)."""
    rng = np.random.default_rng(seed)
    scans = [lidar_scene(n_points, sensor, layout, rng) for _ in range(n_scenes)]
    return tuple(np.stack(part) for part in zip(*scans, strict=True))  # type: ignore[return-value]
