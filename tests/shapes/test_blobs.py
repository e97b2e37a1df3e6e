"""The blob family on known answers: spherical harmonics orthonormal and eigenfunctions of the
sphere's Laplacian, the zero-amplitude blob is the sphere, the bend maps the x axis to an arc,
shared connectivity, seeded draws, bad families refused."""

from __future__ import annotations

import math

import numpy as np
import pytest

from subspacelab.shapes import blobs, clouds, laplacian

FAMILY = blobs.BlobFamily(0.1, 0.7, 4, (0.8, 1.2), (1.0, 1.0), (0.0, 0.0))


def test_real_harmonics_are_orthonormal_eigenfunctions_of_the_sphere() -> None:
    verts, faces = clouds.icosphere(4)
    y = blobs.real_sph_harm(verts, 4)
    assert y.shape == (len(verts), 25)
    lap, mass = laplacian.cotan_laplacian(verts, faces)
    np.testing.assert_allclose(y.T @ (mass @ y), np.eye(25), atol=5e-3)
    rayleigh = np.diag(y.T @ (lap @ y))
    degree = np.array([deg for deg in range(5) for _ in range(2 * deg + 1)])
    np.testing.assert_allclose(rayleigh, degree * (degree + 1), rtol=0.02, atol=1e-8)
    np.testing.assert_allclose(y[:, 0], 1 / math.sqrt(4 * math.pi))


def test_zero_amplitude_unit_scale_blob_is_the_sphere() -> None:
    sphere, _ = clouds.icosphere(2)
    flat = blobs.BlobFamily(0.0, 1.0, 4, (1.0, 1.0), (1.0, 1.0), (0.0, 0.0))
    out = blobs.blob(sphere, flat, np.random.default_rng(0))
    np.testing.assert_allclose(out, sphere - sphere.mean(axis=0), atol=1e-12)


def test_bend_maps_the_x_axis_to_an_arc_of_radius_one_over_kappa() -> None:
    x = np.linspace(-1, 1, 21)
    line = np.stack([x, np.zeros_like(x), np.zeros_like(x)], axis=1)
    kappa = 0.5
    arc = blobs.bend(line, kappa)
    np.testing.assert_allclose(np.linalg.norm(arc - [0, 0, 1 / kappa], axis=1), 1 / kappa)
    steps = np.linalg.norm(np.diff(arc, axis=0), axis=1)  # arc length is preserved (to chords)
    np.testing.assert_allclose(steps.sum(), 2.0, rtol=1e-3)
    np.testing.assert_array_equal(blobs.bend(line, 0.0), line)


def test_blobs_share_connectivity_and_are_seeded() -> None:
    a, fa = blobs.sample_blobs(3, FAMILY, 3, np.random.default_rng(1))
    b, fb = blobs.sample_blobs(3, FAMILY, 3, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fa, fb)
    assert a.shape == (3, 642, 3) and fa.shape == (1280, 3)
    assert not np.allclose(a[0], a[1])
    np.testing.assert_allclose(a.mean(axis=1), 0.0, atol=1e-12)


def test_stretched_family_is_elongated_along_x() -> None:
    long = blobs.BlobFamily(0.05, 1.0, 4, (1.0, 1.0), (2.0, 2.0), (0.0, 0.0))
    v, _ = blobs.sample_blobs(4, long, 2, np.random.default_rng(0))
    extent = v.max(axis=1) - v.min(axis=1)
    assert (extent[:, 0] > 1.6 * extent[:, 1]).all()


def test_mesh_area_of_the_sphere() -> None:
    verts, faces = clouds.icosphere(4)
    assert blobs.mesh_area(verts, faces) == pytest.approx(4 * math.pi, rel=0.01)
    assert blobs.mesh_area(2 * verts, faces) == pytest.approx(4 * blobs.mesh_area(verts, faces))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"amplitude": -0.1},
        {"decay": 0.0},
        {"l_max": 0},
        {"scale": (1.2, 0.8)},
        {"stretch": (0.0, 1.0)},
        {"bend": (0.5, 0.2)},
    ],
)
def test_bad_families_are_refused(kwargs: dict) -> None:
    base = {"amplitude": 0.1, "decay": 0.7, "l_max": 4, "scale": (0.8, 1.2)}
    base |= {"stretch": (1.0, 1.0), "bend": (0.0, 0.0)} | kwargs
    with pytest.raises(ValueError, match="BlobFamily"):
        blobs.BlobFamily(**base)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="l_max"):
        blobs.real_sph_harm(np.eye(3), -1)
    with pytest.raises(ValueError, match="dirs"):
        blobs.real_sph_harm(np.ones((4, 2)), 2)
    with pytest.raises(ValueError, match="n must be"):
        blobs.sample_blobs(0, FAMILY, 2, np.random.default_rng(0))
