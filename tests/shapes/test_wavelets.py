"""HiPoNet's multi-view graph and simplicial wavelets (subspacelab.shapes.wavelets), against
known answers."""

from __future__ import annotations

import pytest
import torch

from subspacelab.shapes import wavelets as wv


def _cloud(n: int = 12, d: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_views_reweight_features() -> None:
    x = _cloud().unsqueeze(0)
    alpha = torch.tensor([[1.0, 0.0, 2.0, 1.0], [1.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
    xb = wv.reweight(x, alpha)
    assert xb.shape == (1, 2, 12, 4)
    torch.testing.assert_close(xb[0, 1], x[0])  # alpha = 1 is the identity view
    torch.testing.assert_close(xb[0, 0, :, 2], 2 * x[0, :, 2])
    with pytest.raises(ValueError, match="weights"):
        wv.reweight(x, alpha[:, :3])


def test_alpha_one_reduces_to_the_plain_gaussian_kernel() -> None:
    x = _cloud()
    plain = torch.exp(-(torch.cdist(x, x) ** 2) / 2.0)
    w = wv.gaussian_affinity(
        wv.reweight(x.unsqueeze(0), torch.ones(1, 4, dtype=x.dtype))[0, 0], 2.0, 0.0
    )
    torch.testing.assert_close(w, plain)
    cut = wv.gaussian_affinity(x, 2.0, 0.3)
    torch.testing.assert_close(cut, plain * (plain >= 0.3))
    torch.testing.assert_close(torch.diagonal(cut), torch.ones(12, dtype=x.dtype))


def test_knn_affinity_keeps_k_neighbours_symmetrised() -> None:
    x = _cloud(20)
    w = wv.knn_affinity(x, 3, 1.0)
    assert torch.equal(w > 0, (w > 0).T)
    assert int(((w > 0).sum(1) - 1).min()) >= 3  # each node keeps at least its 3 picks
    with pytest.raises(ValueError, match="k"):
        wv.knn_affinity(x, 20, 1.0)


def test_diffusion_operator_rows_sum_to_one_and_is_lazy() -> None:
    w = wv.gaussian_affinity(_cloud(), 1.0, 0.2)
    t = wv.diffusion_operator(w)
    torch.testing.assert_close(t.sum(-1), torch.ones(12, dtype=t.dtype))
    assert bool((torch.diagonal(t) >= 0.5).all())
    # the released code's form: column-normalised P = W D^-1, diffused along P^T
    p = w / w.sum(0)
    torch.testing.assert_close(t, 0.5 * (torch.eye(12, dtype=t.dtype) + p.T))
    with pytest.raises(ValueError, match="isolated"):
        wv.diffusion_operator(torch.zeros(3, 3))


def test_wavelets_of_a_constant_signal_vanish() -> None:
    t = wv.diffusion_operator(wv.gaussian_affinity(_cloud(), 1.0, 0.2))
    const = torch.full((12, 2), 3.0, dtype=t.dtype)
    feats = wv.scattering(t, const, 3)
    assert feats.shape == (12, wv.scattering_width(3) * 2) == (12, 12)
    torch.testing.assert_close(feats[:, :2], const)  # zeroth order: the constant itself
    torch.testing.assert_close(feats[:, 2:], torch.zeros(12, 10, dtype=t.dtype))


def test_scattering_equals_the_released_nested_diffusions() -> None:
    """Zeroth U_4, first |U_{2^{j-1}} - U_{2^j}|, second |T^{2^j'} U_j - T^{2^{j'-1}} U_j|."""
    t = wv.diffusion_operator(wv.gaussian_affinity(_cloud(), 1.0, 0.1))
    x = _cloud(12, 3, seed=1)
    u = wv.diffusions(t, x, 3)
    mp = torch.linalg.matrix_power
    torch.testing.assert_close(u, [t @ x, mp(t, 2) @ x, mp(t, 4) @ x])
    again = wv.diffusions(t, torch.cat(u, -1), 3)
    d = 3
    second = [
        (again[jp][:, j * d : (j + 1) * d] - again[jp - 1][:, j * d : (j + 1) * d]).abs()
        for j in range(3)
        for jp in range(j + 1, 3)
    ]
    expected = torch.cat([u[2], (u[0] - u[1]).abs(), (u[1] - u[2]).abs(), *second], -1)
    torch.testing.assert_close(wv.scattering(t, x, 3), expected)
    torch.testing.assert_close(wv.diffusion_features(t, x, 3), torch.cat(u, -1))


def test_features_are_batched_over_clouds_and_views() -> None:
    x = torch.stack([_cloud(seed=s) for s in range(3)])
    alpha = torch.rand(2, 4, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    xb = wv.reweight(x, alpha)
    t = wv.diffusion_operator(wv.gaussian_affinity(xb, 2.0, 0.4))
    batched = wv.scattering(t, xb, 3)
    one = wv.scattering(t[2, 1], xb[2, 1], 3)
    torch.testing.assert_close(batched[2, 1], one)


def test_simplicial_complex_of_a_small_graph() -> None:
    # nodes 0-1-2 a triangle, 2-3 an edge, 4 isolated
    w = torch.eye(5)
    for i, j in ((0, 1), (1, 2), (0, 2), (2, 3)):
        w[i, j] = w[j, i] = 0.9
    cx = wv.simplicial_complex(w, 0.5, 1000)
    assert cx.edges.tolist() == [[0, 1], [0, 2], [1, 2], [2, 3]]
    assert cx.triangles.tolist() == [[0, 1, 2]]
    assert sorted(cx.tri_edges[0].tolist()) == [0, 1, 2]
    assert len(wv.simplicial_complex(w, 0.5, 0).triangles) == 0  # the cap


def test_simplicial_complex_counts_the_cliques_of_a_complete_graph() -> None:
    cx = wv.simplicial_complex(torch.ones(6, 6), 0.5, 1000)
    assert len(cx.edges) == 15 and len(cx.triangles) == 20
    assert len(wv.simplicial_complex(torch.ones(6, 6), 0.5, 7).triangles) == 7


def test_simplicial_block_operators_match_their_definition() -> None:
    w = torch.eye(5, dtype=torch.float64)
    for i, j, v in ((0, 1, 0.9), (1, 2, 0.8), (0, 2, 0.7), (2, 3, 0.6), (1, 3, 0.95)):
        w[i, j] = w[j, i] = v
    cx = wv.simplicial_complex(w, 0.5, 1000)
    x = _cloud(5, 2)
    feats = wv.simplicial_scattering(x, w, cx, 2)
    n_e, n_t = len(cx.edges), len(cx.triangles)
    assert feats.shape == (5 + n_e + n_t, wv.scattering_width(2) * 2)
    # explicit edge-edge and triangle-triangle adjacencies
    edges = [set(e) for e in cx.edges.tolist()]
    a_e = torch.zeros(n_e, n_e, dtype=x.dtype)
    for p, e in enumerate(edges):
        for q, f in enumerate(edges):
            if len(e & f) == 1:
                a_e[p, q] = cx.w[p] + cx.w[q]
    tris = [set(t) for t in cx.triangles.tolist()]
    a_t = torch.tensor(
        [[1.0 if len(s & r) == 2 else 0.0 for r in tris] for s in tris], dtype=x.dtype
    )
    x_e = torch.stack([x[list(e)].mean(0) for e in cx.edges.tolist()])
    x_t = torch.stack([x[list(t)].mean(0) for t in cx.triangles.tolist()])
    expected = torch.cat(
        [wv.scattering(w, x, 2), wv.scattering(a_e, x_e, 2), wv.scattering(a_t, x_t, 2)]
    )
    torch.testing.assert_close(feats, expected)


def test_gradients_reach_the_view_weights() -> None:
    x = _cloud(10, 3).unsqueeze(0)
    alpha = torch.rand(2, 3, dtype=x.dtype, generator=torch.Generator().manual_seed(1))
    alpha.requires_grad_(True)
    xb = wv.reweight(x, alpha)
    t = wv.diffusion_operator(wv.gaussian_affinity(xb, 3.0, 0.1))
    wv.scattering(t, xb, 3).mean().backward()
    assert alpha.grad is not None and bool((alpha.grad != 0).all())


def test_bad_scales_are_refused() -> None:
    with pytest.raises(ValueError, match="sigma"):
        wv.gaussian_affinity(_cloud(), 0.0, 0.5)
    with pytest.raises(ValueError, match="scales"):
        wv.scattering(torch.eye(3), torch.ones(3, 1), 0)
