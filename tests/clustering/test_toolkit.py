"""Known-answer tests of the clustering toolkit (subspacelab.clustering)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from subspacelab.clustering import (
    MLCSchedule,
    cluster_accuracy,
    coding_rate,
    conductance,
    csbm,
    dimension_prior,
    evaluate,
    kmeans_baseline,
    lrr,
    lsr,
    membership_coding_rate,
    mlc_loss,
    modularity,
    postprocess_coefficients,
    sinkhorn,
    spectral_clustering,
    ssc,
    two_nn_dimension,
    union_of_manifolds,
    union_of_subspaces,
)


def test_accuracy_invariant_under_label_permutation() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    pred = y.copy()
    pred[:20] = (pred[:20] + 1) % 4
    perm = np.array([2, 0, 3, 1])
    assert cluster_accuracy(y, perm[pred]) == pytest.approx(0.9)
    assert cluster_accuracy(y, pred) == pytest.approx(0.9)
    m = evaluate(y, perm[y])
    assert m == pytest.approx({"acc": 1.0, "nmi": 1.0, "ari": 1.0})


def test_accuracy_known_confusion_and_errors() -> None:
    y = np.array([0, 0, 0, 1, 1, 1])
    assert cluster_accuracy(y, np.array([5, 5, 7, 7, 7, 7])) == pytest.approx(5 / 6)
    assert cluster_accuracy(y, np.zeros(6)) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        cluster_accuracy(y, np.zeros(5))


def test_coding_rate_of_orthogonal_subspaces() -> None:
    """n points evenly on d/k orthogonal directions per cluster: closed-form logdets."""
    d, n_per, k = 6, 10, 3
    eye = torch.eye(d, dtype=torch.float64)
    z = torch.cat([eye[2 * c : 2 * c + 2].repeat(n_per // 2, 1) for c in range(k)])  # n×d
    n = z.shape[0]
    eps2 = 0.5
    # ZᵀZ = (n_per/2)·I_d, so R = d/2·log(1 + d/(n ε²)·n_per/2)
    expected = 0.5 * d * math.log(1 + d / (n * eps2) * n_per / 2)
    assert float(coding_rate(z, eps2)) == pytest.approx(expected)
    gamma = torch.zeros(k, n, dtype=torch.float64)
    for c in range(k):
        gamma[c, c * n_per : (c + 1) * n_per] = 1.0
    # each cluster: 2 directions with n_per/2 points: logdet = 2·log(1 + d/(n_per ε²)·n_per/2)
    rc = k * n_per / (2 * n) * 2 * math.log(1 + d / (n_per * eps2) * n_per / 2)
    assert float(membership_coding_rate(z, gamma, eps2)) == pytest.approx(rc)
    # orthogonal subspaces: R equals the sum of the per-cluster rates (no shared directions)
    parts = sum(float(coding_rate(z[c * n_per : (c + 1) * n_per], eps2)) for c in range(k))
    assert float(coding_rate(z, eps2)) < parts  # total rate is below the sum at this scale
    loss, terms = mlc_loss(z, gamma, eps2, frob=0.1)
    assert float(loss) == pytest.approx(-terms["R"] + terms["Rc"] + terms["reg"])
    # the paper's (γ/2)‖Γ‖²_F, not divided by n: a one-hot Γ of 3 groups has ‖Γ‖²_F = n
    assert terms["reg"] == pytest.approx(0.5 * 0.1 * n)


def test_sinkhorn_marginals_and_errors() -> None:
    torch.manual_seed(0)
    c = torch.nn.functional.normalize(torch.randn(50, 8, dtype=torch.float64), dim=1)
    a = (c @ c.T).abs()
    p = sinkhorn(a, eta=0.175, iters=5, tol=1e-9) * 50
    ones = torch.ones(50, dtype=torch.float64)
    assert torch.allclose(p.sum(1), ones, atol=1e-12)  # the last update normalises the rows
    assert torch.allclose(p.sum(0), ones, atol=1e-8)
    assert bool((p >= 0).all())
    # the same fixed point as many plain log-domain Sinkhorn updates
    log_p = a / 0.175
    for _ in range(3000):
        log_p = log_p - torch.logsumexp(log_p, dim=0, keepdim=True) - math.log(50)
        log_p = log_p - torch.logsumexp(log_p, dim=1, keepdim=True) - math.log(50)
    torch.testing.assert_close(p / 50, log_p.exp(), atol=1e-10, rtol=1e-7)
    # constant affinity gives the uniform matrix
    u = sinkhorn(torch.zeros(4, 4), eta=1.0, iters=1) * 4
    assert torch.allclose(u, torch.full((4, 4), 0.25))
    with pytest.raises(ValueError):
        sinkhorn(torch.zeros(3, 4), eta=1.0, iters=1)
    with pytest.raises(ValueError, match="underflow"):
        sinkhorn(torch.tensor([[0.0, 100.0], [100.0, 0.0]]), eta=1.0, iters=1)


def test_sinkhorn_gradient_flows_through_the_last_updates() -> None:
    torch.manual_seed(1)
    c = torch.nn.functional.normalize(torch.randn(20, 4, dtype=torch.float64), dim=1)
    c.requires_grad_()
    p = sinkhorn((c @ c.T).abs(), eta=0.175, iters=5)
    (grad,) = torch.autograd.grad(p.pow(2).sum(), c)
    assert float(grad.abs().max()) > 0


def test_lsr_closed_form_against_direct_solve() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((30, 5))
    lam = 0.3
    free = lsr(x, lam, zero_diag=False)
    # min ‖X − CX‖² + λ‖C‖²: normal equations C (XXᵀ + λI) = XXᵀ
    direct = np.linalg.solve(x @ x.T + lam * np.eye(30), x @ x.T).T
    np.testing.assert_allclose(free, direct, atol=1e-10)
    zero = lsr(x, lam)
    assert np.allclose(np.diag(zero), 0.0)
    # column i of LSR1 solves min ‖x_i − Σ_j c_j x_j‖² + λ‖c‖² over j ≠ i... with x as rows
    i = 3
    others = np.delete(np.arange(30), i)
    # KKT of min ‖c‖²λ + ‖X - CX‖ column-wise: zero-diag LSR via Lagrange, compare to solve
    g = x @ x.T + lam * np.eye(30)
    sub = np.linalg.solve(g[np.ix_(others, others)], g[others, i])
    np.testing.assert_allclose(zero[others, i], sub, atol=1e-8)


def test_lrr_closed_form_is_projection_for_clean_low_rank() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((40, 3)) @ rng.standard_normal((3, 10))
    c = lrr(x, tau=1e8)
    u, _, _ = np.linalg.svd(x, full_matrices=False)
    np.testing.assert_allclose(c, u[:, :3] @ u[:, :3].T, atol=1e-6)
    np.testing.assert_allclose(c @ x, x, atol=1e-5)


def test_selfexpressive_recover_independent_subspaces() -> None:
    x, y = union_of_subspaces(20, 3, 2, 12, 0.0, seed=0)
    for coef in (lsr(x, 0.1), lrr(x, 100.0), ssc(x, 1e-3)):
        pred = spectral_clustering(postprocess_coefficients(coef, 5), 3, seed=0)
        assert cluster_accuracy(y, pred) == 1.0


def test_postprocess_topk_symmetric() -> None:
    c = np.array([[5.0, 1, 2, 3], [-4, 0, 1, 0], [0, 0, 0, 9], [1, 2, 3, 4]])
    a = postprocess_coefficients(c, top_k=1)
    assert np.allclose(a, a.T) and np.allclose(np.diag(a), 0.0)
    assert a[0, 3] == pytest.approx(1.5) and a[1, 0] == pytest.approx(2.0)
    with pytest.raises(ValueError):
        postprocess_coefficients(np.zeros((2, 3)), None)


def test_spectral_clustering_block_affinity_dense_and_sparse() -> None:
    blocks = np.kron(np.eye(3), np.ones((5, 5))) + 0.01
    y = np.repeat(np.arange(3), 5)
    assert cluster_accuracy(y, spectral_clustering(blocks, 3, seed=0)) == 1.0
    assert cluster_accuracy(y, spectral_clustering(sp.csr_matrix(blocks), 3, seed=0)) == 1.0
    with pytest.raises(ValueError):
        spectral_clustering(blocks, 15, seed=0)


def test_conductance_and_modularity_known_graph() -> None:
    # two triangles joined by one edge
    edges = [(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5), (2, 3)]
    r, c = zip(*edges, strict=True)
    adj = sp.coo_matrix((np.ones(7), (r, c)), shape=(6, 6))
    adj = (adj + adj.T).tocsr()
    pred = np.array([0, 0, 0, 1, 1, 1])
    assert conductance(pred, adj) == pytest.approx(1 / 7)
    assert modularity(pred, adj) == pytest.approx(2 * (6 / 14 - 0.25))
    f = np.array([[1.0, 0], [1, 0], [0, 1], [0, 1]])
    assert conductance(np.array([0, 0, 1, 1]), factor=f) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        conductance(pred)


def test_generators_shapes_and_determinism() -> None:
    x, y = union_of_subspaces(10, 3, 2, 8, 0.1, seed=3, warp="tanh")
    x2, _ = union_of_subspaces(10, 3, 2, 8, 0.1, seed=3, warp="tanh")
    assert x.shape == (30, 8) and np.array_equal(x, x2) and np.bincount(y).tolist() == [10] * 3
    m, ym = union_of_manifolds(20, 2, 3, 10, 16, 0.05, seed=0, latent=5, offset=1.0)
    assert m.shape == (40, 10) and ym.max() == 1
    # without noise the manifolds live in a shared 5-d subspace of R^10
    clean, _ = union_of_manifolds(20, 2, 3, 10, 16, 0.0, seed=0, latent=5, offset=1.0)
    s = np.linalg.svd(clean - clean.mean(0), compute_uv=False)
    assert s[5] < 1e-5 * s[4]
    with pytest.raises(ValueError):
        union_of_manifolds(20, 2, 3, 10, 16, 0.05, seed=0, latent=2, offset=1.0)
    a, _ = union_of_subspaces(10, 3, 2, 8, 0.0, seed=3, offset=2.0)
    assert np.linalg.norm(a, axis=1).min() > 0.9  # unit rows moved by centres of norm 2
    g = csbm(600, 3, 10.0, 4.0, 50, 20, 0.2, seed=0)
    assert (g.adjacency != g.adjacency.T).nnz == 0 and g.adjacency.diagonal().sum() == 0
    assert np.allclose(np.asarray(g.features.sum(1)).ravel(), 20)
    same = g.labels[g.adjacency.tocoo().row] == g.labels[g.adjacency.tocoo().col]
    assert 0.5 < same.mean() < 0.8  # p_in/p_out = 4 with k=3: 4/(4+2) = 2/3 of edges inside
    assert 8 < g.adjacency.nnz / 600 < 11
    assert kmeans_baseline(x, 3, seed=0).shape == (30,)
    with pytest.raises(ValueError):
        union_of_subspaces(10, 3, 8, 8, 0.1, seed=0)


def test_two_nn_recovers_the_dimension_of_flat_data() -> None:
    rng = np.random.default_rng(0)
    for dim in (2, 5):
        x = rng.uniform(size=(2000, dim)) @ np.linalg.qr(rng.standard_normal((12, dim)))[0].T
        assert two_nn_dimension(x) == pytest.approx(dim, rel=0.15)
    with pytest.raises(ValueError):
        two_nn_dimension(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="duplicate"):
        two_nn_dimension(np.zeros((5, 3)))


def test_dimension_prior_prefers_the_configured_then_the_known_then_twonn() -> None:
    rng = np.random.default_rng(0)
    flat = rng.uniform(size=(500, 3)) @ np.linalg.qr(rng.standard_normal((16, 3)))[0].T
    images = flat.reshape(-1, 1, 4, 4)
    assert dimension_prior(images, 9, 4) == (9, "configured prior")
    assert dimension_prior(images, 0, 4) == (4, "generator's subspace dimension")
    top, source = dimension_prior(images, 0, None)
    assert (top, source) == (round(two_nn_dimension(flat)), "TwoNN estimate") and top == 3


def test_mlc_schedule_reads_its_fields_by_name_from_a_section() -> None:
    names = [f for f in MLCSchedule.__dataclass_fields__]
    section = type("Section", (), {n: float(i) for i, n in enumerate(names)} | {"extra": 1.0})
    schedule = MLCSchedule.of(section)
    assert [getattr(schedule, n) for n in names] == [float(i) for i in range(len(names))]
    with pytest.raises(AttributeError, match="sinkhorn_tol"):
        MLCSchedule.of(type("Partial", (), {n: 0 for n in names if n != "sinkhorn_tol"}))
