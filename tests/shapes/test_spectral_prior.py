"""The functional-map priors on known answers: ground-truth maps of known permutations, the
regularised solver, ZoomOut at the identity, the axiomatic residuals, the EDM/VP denoiser's
limits and training, SDS against a fixed target, the feature net's equivariance."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from subspacelab.shapes import blobs, clouds, laplacian
from subspacelab.shapes import spectral_prior as sprior


@pytest.fixture(scope="module")
def blob() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A blob's vertices, eigenvalues (24), eigenvectors and lumped mass, float32."""
    fam = blobs.BlobFamily(0.1, 0.7, 4, (0.8, 1.2), (1.0, 1.0), (0.0, 0.0))
    v, f = blobs.sample_blobs(1, fam, 3, np.random.default_rng(3))
    lap, mass = laplacian.cotan_laplacian(v[0], f)
    evals, phi = laplacian.eigenbasis(lap, mass, 24)
    return tuple(
        torch.tensor(a, dtype=torch.float32)
        for a in (v[0], np.maximum(evals, 0), phi, mass.diagonal())
    )


def test_gt_fmap_of_a_permutation_is_the_identity() -> None:
    verts, faces = clouds.icosphere(2)
    lap, mass = laplacian.cotan_laplacian(verts, faces)
    _, phi = laplacian.eigenbasis(lap, mass, 10)
    perm = np.random.default_rng(0).permutation(len(verts))
    phi_y, mass_y = phi[perm], sp.diags(mass.diagonal()[perm])  # Y is X with vertices reordered
    # T: Y -> X sends y to perm[y]
    np.testing.assert_allclose(sprior.gt_fmap(phi, phi_y, mass_y, perm), np.eye(10), atol=1e-8)
    np.testing.assert_allclose(sprior.gt_fmap(phi, phi, mass), np.eye(10), atol=1e-8)
    with pytest.raises(ValueError, match="same number"):
        sprior.gt_fmap(phi, phi[:-1], sp.identity(len(verts) - 1))


def test_solver_recovers_a_planted_map_and_the_mask_vanishes_on_equal_eigenvalues() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(6, 40, generator=gen, dtype=torch.float64)
    c_true = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    ev = torch.linspace(0, 5, 6, dtype=torch.float64)
    c = sprior.solve_fmap(a, c_true @ a, ev, ev + 0.3, lam=0.0)
    torch.testing.assert_close(c, c_true)
    mask = sprior.resolvent_mask(ev, ev)
    torch.testing.assert_close(torch.diagonal(mask), torch.zeros(6, dtype=torch.float64))
    assert (mask + torch.eye(6) > 0).all()
    # with equal spectra a diagonal planted map is untouched by the penalty
    diag = torch.diag(torch.linspace(1, 2, 6, dtype=torch.float64))
    torch.testing.assert_close(sprior.solve_fmap(a, diag @ a, ev, ev, lam=10.0), diag)
    with pytest.raises(ValueError, match="equal shapes"):
        sprior.solve_fmap(a, a[:, :5], ev, ev, 0.1)


def test_zoomout_at_the_identity_stays_there(blob) -> None:
    _, _, phi, mass = blob
    c, p2p = sprior.zoomout(torch.eye(8), phi, phi, mass, 20, step=3)
    assert c.shape == (20, 20)
    torch.testing.assert_close(c, torch.eye(20), atol=1e-4, rtol=0)
    torch.testing.assert_close(p2p, torch.arange(len(phi)))
    torch.testing.assert_close(sprior.nearest_map(torch.eye(5), phi[:, :5], phi[:, :5]), p2p)
    with pytest.raises(ValueError, match="k_end"):
        sprior.zoomout(torch.eye(8), phi, phi, mass, 30)


def test_zoomout_repairs_a_perturbed_map(blob) -> None:
    _, _, phi, mass = blob
    noisy = torch.eye(10) + 0.15 * torch.randn(10, 10, generator=torch.Generator().manual_seed(1))
    before = sprior.nearest_map(noisy, phi[:, :10], phi[:, :10]) == torch.arange(len(phi))
    _, p2p = sprior.zoomout(noisy, phi, phi, mass, 24)
    assert (p2p == torch.arange(len(phi))).float().mean() > before.float().mean() + 0.2


def test_axiomatic_residuals_vanish_on_the_identity_only(blob) -> None:
    _, evals, _, _ = blob
    ev = evals[:10]
    eye = torch.eye(10)
    for value in sprior.axiomatic_losses(eye, eye, ev, ev).values():
        assert float(value) == pytest.approx(0.0, abs=1e-12)
    scaled = sprior.axiomatic_losses(2 * eye, 2 * eye, ev, ev)
    assert float(scaled["ortho"]) > 0 and float(scaled["bij"]) > 0
    assert float(scaled["lap"]) == pytest.approx(0.0, abs=1e-12)  # diagonal commutes
    perm = eye[torch.randperm(10, generator=torch.Generator().manual_seed(0))]
    mixed = sprior.axiomatic_losses(perm, perm.T, ev, ev)
    assert float(mixed["ortho"]) == pytest.approx(0.0, abs=1e-12)
    assert float(mixed["lap"]) > 0


def test_denoiser_limits_and_noise_schedule_inverse() -> None:
    torch.manual_seed(0)
    den = sprior.Denoiser(4, 16, 2)
    t = torch.linspace(0.01, 1, 7)
    sigma = sprior.vp_sigma(t, den.beta_d, den.beta_min)
    torch.testing.assert_close(den.sigma_to_t(sigma), t)
    x = torch.rand(5, 4, 4)
    torch.testing.assert_close(den(x, torch.full((5,), 1e-7)), x, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="even embed"):
        sprior.Denoiser(4, 16, 2, embed=3)


def test_vp_training_learns_a_point_mass() -> None:
    """The optimal denoiser of a one-image data set returns that image: after training, the
    denoised noisy copies are much closer to it than the noisy copies are."""
    torch.manual_seed(0)
    y0 = torch.rand(1, 4, 4)
    den = sprior.Denoiser(4, 64, 2)
    opt = torch.optim.Adam(den.parameters(), lr=3e-3)
    for _ in range(300):
        opt.zero_grad()
        sprior.vp_loss(den, y0.expand(64, 4, 4)).backward()
        opt.step()
    sigma = torch.full((32,), 0.5)
    noisy = y0 + sigma[:, None, None] * torch.randn(32, 4, 4)
    with torch.no_grad():
        err = ((den(noisy, sigma) - y0) ** 2).mean()
    assert float(err) < 0.2 * float(((noisy - y0) ** 2).mean())


class _Oracle(sprior.Denoiser):
    """A denoiser that always answers ``target``."""

    def __init__(self, target: torch.Tensor) -> None:
        super().__init__(target.shape[0], 1, 1)
        self.target = target

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.target.expand_as(x)


def test_sds_pulls_abs_c_toward_the_denoised_target() -> None:
    target = torch.eye(3)
    c = torch.tensor([[-0.5, 0.2, 0.0], [0.1, 0.9, 0.0], [0.0, 0.0, -1.0]], requires_grad=True)
    loss = sprior.sds_loss(_Oracle(target), c, draws=8, scale=1.0)
    expected = ((c.detach().abs() - target) ** 2).mean()
    torch.testing.assert_close(loss.detach(), expected)
    loss.backward()
    # gradient of mean (|c| - t)^2 is 2 sign(c) (|c| - t) / n
    want = 2 * torch.sign(c.detach()) * (c.detach().abs() - target) / 9
    torch.testing.assert_close(c.grad, want)


def test_feature_net_is_equivariant_to_vertex_order(blob) -> None:
    verts, evals, phi, mass = blob
    torch.manual_seed(0)
    net = sprior.FeatureNet(3, 8, 5, 2)
    out = net(verts, phi, evals, mass)
    assert out.shape == (len(verts), 5)
    perm = torch.randperm(len(verts), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(net(verts[perm], phi[perm], evals, mass[perm]), out[perm])
    with pytest.raises(ValueError, match=">= 1"):
        sprior.FeatureNet(3, 0, 5, 2)


def test_farthest_points_and_subsampled_zoomout(blob) -> None:
    verts, _, phi, mass = blob
    sub = sprior.farthest_points(verts, 120)
    assert len(set(sub.tolist())) == 120 and sub[0] == 0
    far = int(((verts - verts[0]) ** 2).sum(dim=1).argmax())
    assert sub[1] == far
    c, p2p = sprior.zoomout(torch.eye(8), phi, phi, mass, 20, sub_y=sub)
    torch.testing.assert_close(c, torch.eye(20), atol=1e-4, rtol=0)
    torch.testing.assert_close(p2p, sub)  # sub_y's vertices land on themselves
    with pytest.raises(ValueError, match="n must be"):
        sprior.farthest_points(verts, 0)
