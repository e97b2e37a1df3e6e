"""Gaussian splats from point clouds (ShapeSplat's miniature, arXiv 2408.10906) on known
answers: primitives on their surfaces, EM equal to scikit-learn's, covariances rebuilt from
scale and rotation, quaternions round-tripped, 3DGS field conventions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from subspacelab.shapes import clouds, splats


@pytest.mark.parametrize("name", list(splats.PARTS))
def test_labelled_primitives_are_seeded_centred_and_labelled(name: str) -> None:
    p1, l1 = splats.labelled(name, 600, np.random.default_rng(3))
    p2, l2 = splats.labelled(name, 600, np.random.default_rng(3))
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(l1, l2)
    assert p1.shape == (600, 3) and l1.shape == (600,)
    np.testing.assert_allclose((p1.max(0) + p1.min(0)) / 2, 0, atol=1e-12)
    assert set(np.unique(l1)) == set(range(len(splats.PARTS[name])))  # every part is sampled


def test_new_primitives_lie_on_their_surfaces() -> None:
    rng = np.random.default_rng(0)
    p, part = splats.capsule(2000, rng, radius=0.4, length=1.0)
    axis_z = np.clip(p[:, 2], -0.5, 0.5)  # nearest point of the axis segment
    dist = np.linalg.norm(p - np.stack([0 * axis_z, 0 * axis_z, axis_z], 1), axis=1)
    np.testing.assert_allclose(dist, 0.4, atol=1e-12)
    np.testing.assert_array_equal(part == 1, np.abs(p[:, 2]) > 0.5)  # caps beyond the side
    # by area: side 2πrL vs caps 4πr²
    assert abs(part.mean() - 0.64 / (0.8 + 0.64)) < 0.04
    s, sp = splats.plane_slab(1000, rng, (1.0, 0.5, 0.05))
    np.testing.assert_array_equal(sp == 0, np.isclose(np.abs(s[:, 2]), 0.05))
    assert 0.85 < 1 - sp.mean() < 0.97  # the faces hold ~2·1·0.5 / (that + rim) of the area
    b, bp = splats.l_bracket(1000, rng, (1.2, 0.9), 0.5, 0.1)
    assert (b[bp == 0, 2] <= 0.1 + 1e-12).all() and (b[bp == 1, 0] <= 0.1 + 1e-12).all()
    with pytest.raises(ValueError, match="unknown primitive"):
        splats.labelled("teapot", 10, rng)


def test_em_matches_scikit_learn_from_the_same_start() -> None:
    mixture = pytest.importorskip("sklearn.mixture")
    pts = splats.labelled("torus", 500, np.random.default_rng(1))[0][None]
    start = splats.fit_gmm(pts, 6, 0, seed=2)  # the initial M-step only
    ours = splats.fit_gmm(pts, 6, 4, seed=2)
    ref = mixture.GaussianMixture(
        6,
        covariance_type="full",
        max_iter=4,
        tol=0.0,
        reg_covar=1e-6,
        weights_init=start.weights[0].numpy(),
        means_init=start.means[0].numpy(),
        precisions_init=np.linalg.inv(start.covs[0].numpy()),
    )
    with pytest.warns(UserWarning):  # it did not converge in 4 iterations: as asked
        ref.fit(pts[0])
    np.testing.assert_allclose(ours.means[0].numpy(), ref.means_, atol=1e-6)
    np.testing.assert_allclose(ours.covs[0].numpy(), ref.covariances_, atol=1e-6)
    np.testing.assert_allclose(ours.weights[0].numpy(), ref.weights_, atol=1e-6)
    np.testing.assert_allclose(ours.resp.sum(-1).numpy(), 1.0, atol=1e-6)


def test_em_recovers_separated_blobs_in_a_batch_and_chunks_agree() -> None:
    rng = np.random.default_rng(4)
    centres = np.array([[-3.0, 0, 0], [0, 3.0, 0], [0, 0, 3.0]])
    pts = np.stack([np.repeat(centres, 200, 0) + 0.1 * rng.standard_normal((600, 3))] * 3)
    mix = splats.fit_gmm(pts, 3, 20, seed=0)
    for b in range(3):
        got = mix.means[b].numpy()[np.argsort(mix.means[b].numpy() @ [1, 10, 100])]
        want = centres[np.argsort(centres @ [1, 10, 100])]
        np.testing.assert_allclose(got, want, atol=0.05)
        np.testing.assert_allclose(mix.weights[b].numpy(), 1 / 3, atol=1e-3)
    one = splats.fit_gmm(pts, 3, 5, seed=0, chunk=1)
    np.testing.assert_allclose(one.means.numpy(), splats.fit_gmm(pts, 3, 5, 0, chunk=3).means)
    with pytest.raises(ValueError, match="clouds, points, 3"):
        splats.fit_gmm(pts[0], 3, 1, 0)
    with pytest.raises(ValueError, match="k <= points"):
        splats.fit_gmm(pts, 601, 1, 0)


def test_quaternions_round_trip_and_are_canonical() -> None:
    rng = np.random.default_rng(5)
    rots = np.stack([clouds.random_rotation(rng) for _ in range(50)])
    rots[0] = np.diag([1.0, -1.0, -1.0])  # a half-turn: w = 0
    rots[1] = np.eye(3)
    q = splats.matrix_to_quaternion(rots)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0)
    assert (q[:, 0] >= 0).all()
    np.testing.assert_allclose(q[1], [1, 0, 0, 0])
    np.testing.assert_allclose(splats.quaternion_to_matrix(q), rots, atol=1e-12)
    np.testing.assert_allclose(splats.quaternion_to_matrix(-q), rots, atol=1e-12)  # q ≡ −q


def test_splats_rebuild_their_covariances() -> None:
    pts = np.stack([splats.labelled(n, 400, np.random.default_rng(6))[0] for n in ("box", "cone")])
    mix = splats.fit_gmm(pts, 16, 3, seed=0)
    colours = np.broadcast_to(np.array([0.2, 0.4, 0.6]), pts.shape)
    sp = splats.mixture_to_splats(mix, colours)
    r = splats.quaternion_to_matrix(sp.rotation)
    cov = r @ (sp.scale[..., :, None] ** 2 * np.swapaxes(r, -1, -2))
    np.testing.assert_allclose(cov, mix.covs.numpy(), atol=1e-12)
    assert (np.diff(sp.scale, axis=-1) <= 0).all()  # principal axes descending
    np.testing.assert_allclose(sp.opacity.max(1), 1.0)
    np.testing.assert_allclose(sp.colour, np.broadcast_to([0.2, 0.4, 0.6], sp.colour.shape))
    np.testing.assert_allclose(sp.xyz, mix.means.numpy())
    assert sp.features().shape == (2, 16, 14)


def test_components_take_their_points_majority_part() -> None:
    resp = np.array([[[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]]])
    labels = np.array([[2, 2, 0]])
    np.testing.assert_array_equal(splats.component_labels(resp, labels, 3), [[2, 0]])
    np.testing.assert_array_equal(splats.component_labels(torch.tensor(resp), labels, 3), [[2, 0]])


def test_3dgs_fields_decode_by_the_renderer_s_conventions() -> None:
    fields = {k: np.zeros(2, np.float32) for k in splats.FIELDS_3DGS}
    fields["rot_0"] = np.array([-2.0, 1.0], np.float32)  # unnormalised, one with w < 0
    fields["scale_1"] = np.array([np.log(2.0), 0.0], np.float32)
    fields["f_dc_0"] = np.array([1.0 / splats.SH_C0, 0.0], np.float32)
    fields["opacity"] = np.array([0.0, 100.0], np.float32)
    sp = splats.decode_3dgs(fields)
    np.testing.assert_allclose(sp.opacity, [0.5, 1.0])
    np.testing.assert_allclose(sp.colour[:, 0], [1.0, 0.5])  # 0.5 + 1 clipped, 0.5
    np.testing.assert_allclose(sp.scale[0], [2.0, 1.0, 1.0])  # sorted descending
    assert (sp.rotation[:, 0] >= 0).all()
    # the sorted axes are a proper rotation that carries the same covariance
    q = np.array([[0.9, 0.1, -0.3, 0.2]])
    raw = {k: np.zeros(1, np.float32) for k in splats.FIELDS_3DGS}
    for i in range(4):
        raw[f"rot_{i}"] = q[:, i].astype(np.float32)
    for i, s in enumerate((0.1, 0.5, 0.3)):
        raw[f"scale_{i}"] = np.log(np.array([s], np.float32))
    r0 = splats.quaternion_to_matrix(q)
    cov0 = r0 @ np.diag([0.01, 0.25, 0.09]) @ r0[0].T
    dec = splats.decode_3dgs(raw)
    r1 = splats.quaternion_to_matrix(dec.rotation)
    np.testing.assert_allclose(r1 @ np.diag(dec.scale[0] ** 2) @ r1[0].T, cov0, atol=1e-6)
    again = splats.decode_3dgs(splats.encode_3dgs(dec))
    np.testing.assert_allclose(again.rotation, dec.rotation, atol=1e-6)
    np.testing.assert_allclose(again.scale, dec.scale, rtol=1e-6)
    with pytest.raises(ValueError, match="missing vertex fields"):
        splats.decode_3dgs({"x": np.zeros(1)})
