"""The 3D toolkit on known answers: the sphere's spectrum, robust-laplacian's Laplacian, a map
recovered under a known isometry, Chamfer of identical and shifted clouds, PointNet's
invariance to point order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from subspacelab.shapes import chamfer, clouds, fmaps, laplacian, pointnet


def test_samplers_are_seeded_and_on_their_surfaces() -> None:
    rng = np.random.default_rng(0)
    s = clouds.sphere(500, rng)
    np.testing.assert_allclose(np.linalg.norm(s, axis=1), 1.0)
    t = clouds.torus(400, rng)
    ring = np.hypot(t[:, 0], t[:, 1]) - 1.0
    np.testing.assert_allclose(np.hypot(ring, t[:, 2]), 0.35, atol=1e-12)
    b = clouds.box(300, rng)
    on_face = np.isclose(np.abs(b), [1, 0.6, 0.4]).any(axis=1)
    assert on_face.all() and (np.abs(b) <= np.array([1, 0.6, 0.4]) + 1e-12).all()
    x1, y1 = clouds.shape_dataset(3, 64, seed=5)
    x2, y2 = clouds.shape_dataset(3, 64, seed=5)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert x1.shape == (15, 64, 3) and sorted(np.bincount(y1)) == [3] * 5


def test_random_rotations_are_rotations() -> None:
    r = clouds.random_rotation(np.random.default_rng(1))
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)


def test_icosphere_cotan_spectrum_is_l_times_l_plus_one() -> None:
    v, f = clouds.icosphere(3)
    assert len(v) == 642 and len(f) == 1280
    lap, mass = laplacian.cotan_laplacian(v, f)
    assert mass.diagonal().sum() == pytest.approx(4 * np.pi, rel=0.01)  # the sphere's area
    vals, vecs = laplacian.eigenbasis(lap, mass, 16)
    want = np.array([0] + [2] * 3 + [6] * 5 + [12] * 7, float)
    np.testing.assert_allclose(vals, want, atol=0.1 * want.max())
    np.testing.assert_allclose(vals[:9], want[:9], atol=0.06)
    np.testing.assert_allclose(vecs.T @ (mass @ vecs), np.eye(16), atol=1e-8)


@pytest.mark.parametrize("lumped", [True, False])
def test_eigenbasis_matches_the_dense_generalised_solution(lumped: bool) -> None:
    # a diagonal mass takes the symmetric-reduction path, any other SPD mass eigsh's own M path
    from scipy.linalg import eigh

    v, f = clouds.icosphere(2)
    lap, mass = laplacian.cotan_laplacian(v, f)
    mass = mass.tocsr() if lumped else (mass + 0.05 * lap).tocsr()
    vals, vecs = laplacian.eigenbasis(lap, mass, 10)
    ref = eigh(lap.toarray(), mass.toarray(), subset_by_index=[0, 9], eigvals_only=True)
    np.testing.assert_allclose(vals, ref, atol=1e-8)
    np.testing.assert_allclose(vecs.T @ (mass @ vecs), np.eye(10), atol=1e-8)
    np.testing.assert_allclose(lap @ vecs, (mass @ vecs) * vals, atol=1e-7)
    # reproducible: the same vectors, signs included, on every call
    again = laplacian.eigenbasis(lap, mass, 10)[1]
    np.testing.assert_array_equal(again, vecs)
    assert np.all(vecs[np.abs(vecs).argmax(axis=0), np.arange(10)] > 0)


def test_cotan_laplacian_matches_robust_laplacian_on_a_delaunay_mesh() -> None:
    robust_laplacian = pytest.importorskip("robust_laplacian")
    v, f = clouds.icosphere(2)
    lap, mass = laplacian.cotan_laplacian(v, f)
    ref_l, ref_m = robust_laplacian.mesh_laplacian(v, f)
    np.testing.assert_allclose(lap.toarray(), ref_l.toarray(), atol=1e-10)
    np.testing.assert_allclose(mass.diagonal(), ref_m.diagonal(), rtol=1e-10)


def test_point_cloud_laplacians_share_the_sphere_s_multiplicities() -> None:
    robust_laplacian = pytest.importorskip("robust_laplacian")
    pts = clouds.sphere(1500, np.random.default_rng(2))
    vals, _ = laplacian.eigenbasis(*laplacian.knn_laplacian(pts, 12), 9)
    ref_vals, _ = laplacian.eigenbasis(*robust_laplacian.point_cloud_laplacian(pts), 9)
    np.testing.assert_allclose(ref_vals[1:4], 2.0, rtol=0.08)
    np.testing.assert_allclose(ref_vals[4:9], 6.0, rtol=0.08)
    # the graph Laplacian's scale differs, its eigenspace structure does not: λ₂/λ₁ = 6/2
    assert vals[0] == pytest.approx(0, abs=1e-8)
    assert vals[3] < vals[4]  # the l = 1 triplet sits below the l = 2 quintuplet
    assert vals[4:9].mean() / vals[1:4].mean() == pytest.approx(3.0, rel=0.1)


def test_functional_map_recovers_a_known_isometry() -> None:
    """Y is X rotated and its points shuffled: a map fitted from a few landmark-distance
    descriptors (rotation invariant) is C ≈ orthogonal and the point map's geodesic error is
    far below that of a random map."""
    rng = np.random.default_rng(3)
    x = clouds.torus(800, rng)
    perm = rng.permutation(len(x))
    y = (x @ clouds.random_rotation(rng).T)[perm]  # y[j] is x[perm[j]]
    k = 20
    (lx, mx), (ly, my) = laplacian.knn_laplacian(x, 10), laplacian.knn_laplacian(y, 10)
    ex, px = laplacian.eigenbasis(lx, mx, k)
    ey, py = laplacian.eigenbasis(ly, my, k)
    landmarks = rng.choice(len(x), 40, replace=False)
    inv = np.argsort(perm)  # x index -> y index
    gx = fmaps.graph_geodesics(x, 10)
    dx = np.exp(-gx[landmarks].T)  # (n, 40) descriptors
    dy = np.exp(-fmaps.graph_geodesics(y, 10, inv[landmarks]).T)
    c = fmaps.functional_map(px, py, dx, dy, mx, my, ex, ey, mu=1e-3)
    np.testing.assert_allclose(c @ c.T, np.eye(k), atol=0.35)
    t = fmaps.pointwise_map(c, px, py)
    diameter = gx.max()
    err = fmaps.geodesic_error(t, perm, gx, diameter)
    random = fmaps.geodesic_error(rng.permutation(len(x)), perm, gx, diameter)
    assert err < 0.05 and random > 0.25
    assert fmaps.geodesic_error(perm, perm, gx, diameter) == 0.0


def test_graph_geodesics_of_a_line_are_path_lengths() -> None:
    line = np.stack([np.arange(5.0), np.zeros(5), np.zeros(5)], 1)
    np.testing.assert_allclose(fmaps.graph_geodesics(line, 1)[0], [0, 1, 2, 3, 4])
    with pytest.raises(ValueError, match="disconnected"):
        fmaps.graph_geodesics(np.vstack([line, line + 100]), 1)


def test_chamfer_known_answers() -> None:
    a = torch.randn(2, 50, 3)
    assert torch.equal(chamfer.chamfer(a, a), torch.zeros(2))
    one = torch.zeros(1, 1, 3)
    shifted = one + torch.tensor([0.0, 0.0, 2.0])
    assert chamfer.chamfer(one, shifted).item() == pytest.approx(8.0)  # 4 each way
    with pytest.raises(ValueError, match="batch"):
        chamfer.chamfer(a, torch.randn(3, 5, 3))


def test_pointnet_is_invariant_to_point_order() -> None:
    torch.manual_seed(0)
    net = pointnet.PointNet([16, 32]).eval()
    x = torch.randn(4, 100, 3)
    out = net(x)
    assert out.shape == (4, 32)
    torch.testing.assert_close(net(x[:, torch.randperm(100)]), out)
