"""representation.directions (arXiv 2503.06269's measurements) on known answers: a planted
direction is recovered, ablation removes exactly its component, probes separate separable data."""

from __future__ import annotations

import math

import pytest
import torch

from subspacelab.representation import directions as D


def _planted(
    n: int, d: int, shift: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(d, generator=g)
    u = u / u.norm()
    neg = torch.randn(n, d, generator=g)
    pos = torch.randn(n, d, generator=g) + shift * u
    return pos, neg, u


def test_diff_in_means_recovers_a_planted_direction() -> None:
    pos, neg, u = _planted(4000, 16, 3.0, 0)
    r, r_hat = D.diff_in_means(pos, neg)
    assert r.norm().item() == pytest.approx(3.0, abs=0.15)
    assert D.cosine(r_hat, u).item() > 0.99
    # exact on constructed means
    a = torch.tensor([[1.0, 2.0], [3.0, 2.0]])
    b = torch.tensor([[0.0, 2.0], [0.0, 2.0]])
    r, r_hat = D.diff_in_means(a, b)
    torch.testing.assert_close(r, torch.tensor([2.0, 0.0]))
    torch.testing.assert_close(r_hat, torch.tensor([1.0, 0.0]))


def test_diff_in_means_per_layer_and_a_zero_difference() -> None:
    pos = torch.stack([torch.ones(3, 4), torch.eye(4)[:3]])
    neg = torch.stack([torch.ones(3, 4), torch.zeros(3, 4)])
    r, r_hat = D.diff_in_means(pos, neg)
    assert r.shape == r_hat.shape == (2, 4)
    torch.testing.assert_close(r_hat[0], torch.zeros(4))  # no difference: no direction
    torch.testing.assert_close(r_hat[1], torch.tensor([1.0, 1.0, 1.0, 0.0]) / math.sqrt(3))
    with pytest.raises(ValueError, match="do not match"):
        D.diff_in_means(torch.zeros(3, 4), torch.zeros(3, 5))
    with pytest.raises(ValueError, match="at least one"):
        D.diff_in_means(torch.zeros(0, 4), torch.zeros(3, 4))


def test_ablation_removes_the_component_exactly_and_keeps_the_rest() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(50, 8, generator=g, dtype=torch.float64)
    v = torch.randn(8, generator=g, dtype=torch.float64) * 5.0  # not unit: normalised inside
    u = v / v.norm()
    out = D.ablate(x, v)
    torch.testing.assert_close(out @ u, torch.zeros(50, dtype=torch.float64), atol=1e-12, rtol=0)
    # the orthogonal complement is untouched
    p = torch.eye(8, dtype=torch.float64) - torch.outer(u, u)
    torch.testing.assert_close(out @ p, x @ p)
    # ablation is idempotent; steering with a = -2 reflects; a = 0 is the identity
    torch.testing.assert_close(D.ablate(out, v), out)
    torch.testing.assert_close(D.steer(x, v, -2.0) @ u, -(x @ u))
    torch.testing.assert_close(D.steer(x, v, 0.0), x)
    torch.testing.assert_close(D.project(x, v), torch.outer(x @ u, u))


def test_ablation_per_layer_directions() -> None:
    x = torch.ones(2, 3, 2)  # (L, n, d)
    dirs = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    out = D.ablate(x, dirs)
    torch.testing.assert_close(out[0], torch.tensor([[0.0, 1.0]] * 3))
    torch.testing.assert_close(out[1], torch.tensor([[1.0, 0.0]] * 3))


def test_probe_on_separable_data_reaches_one_and_on_noise_stays_near_chance() -> None:
    pos, neg, u = _planted(300, 10, 8.0, 2)
    x = torch.cat([pos, neg])
    y = torch.cat([torch.ones(300), torch.zeros(300)]).long()
    noise = torch.randn(600, 10, generator=torch.Generator().manual_seed(3))
    xs = torch.stack([x, noise])  # layer 0 separable, layer 1 pure noise
    order = torch.randperm(600, generator=torch.Generator().manual_seed(4))
    train, test = order[:400], order[400:]
    probes = D.fit_probes(
        xs[:, train], y[train], epochs=300, lr=0.05, generator=torch.Generator().manual_seed(5)
    )
    acc = D.probe_accuracy(probes, xs[:, test], y[test])
    assert acc[0].item() == 1.0
    assert abs(acc[1].item() - 0.5) < 0.15
    assert D.cosine(probes.weight[0], u).item() > 0.8


def test_layers_of_a_joint_probe_fit_are_independent() -> None:
    g = torch.Generator().manual_seed(6)
    x = torch.randn(3, 40, 5, generator=g)
    y = (x[1, :, 0] > 0).long()
    joint = D.fit_probes(x, y, epochs=30, lr=0.01, generator=torch.Generator().manual_seed(7))
    # the layer-1 probe alone from the same initial draw
    g2 = torch.Generator().manual_seed(7)
    w0 = (torch.rand(3, 5, generator=g2) * 2 - 1) / math.sqrt(5)
    b0 = (torch.rand(3, generator=g2) * 2 - 1) / math.sqrt(5)
    w, b = w0[1].clone().requires_grad_(True), b0[1].clone().requires_grad_(True)
    opt = torch.optim.Adam([w, b], lr=0.01)
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(x[1] @ w + b, y.float()).backward()
        opt.step()
    torch.testing.assert_close(joint.weight[1], w.detach())
    torch.testing.assert_close(joint.bias[1], b.detach())


def test_probe_input_errors() -> None:
    with pytest.raises(ValueError, match=r"\(L, n, d\)"):
        D.fit_probes(torch.zeros(4, 3), torch.zeros(4), epochs=1, lr=0.1)
    with pytest.raises(ValueError, match="epochs"):
        D.fit_probes(torch.zeros(1, 4, 3), torch.zeros(4), epochs=0, lr=0.1)


def test_cosines_and_subspace_overlap() -> None:
    dirs = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, -3.0]])
    c = D.cosine_matrix(dirs)
    torch.testing.assert_close(torch.diag(c), torch.ones(3))
    assert c[0, 1].item() == pytest.approx(1 / math.sqrt(2))
    assert c[0, 2].item() == 0.0
    e = torch.eye(4)
    assert D.subspace_overlap(e[:, :2], e[:, 2:]) == pytest.approx(0.0)
    assert D.subspace_overlap(e[:, :2], e[:, :2] @ torch.tensor([[1.0, 2.0], [3.0, 4.0]])) == (
        pytest.approx(1.0)
    )
    assert D.subspace_overlap(e[:, :1], e[:, :3]) == pytest.approx(1.0)  # contained
    # 45 degrees: cos² = 1/2
    assert D.subspace_overlap(e[:, :1], (e[:, 0] + e[:, 1])[:, None]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="ambient"):
        D.subspace_overlap(torch.zeros(3, 1), torch.zeros(4, 1))
