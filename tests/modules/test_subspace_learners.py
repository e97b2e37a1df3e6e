"""Dynamic subspace learners toolkit (arXiv 2206.09068) against known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from subspacelab.modules import subspace_learners as sl


def _tiny_embedder(dim: int = 12) -> sl.AttentionEmbedder:
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.ReLU())
    return sl.AttentionEmbedder(backbone, 6, (4, 2), dim, 0.0, 1.2)


def test_recall_of_a_perfect_embedding_is_one_and_of_a_swapped_one_is_zero() -> None:
    labels = np.repeat(np.arange(4), 5)
    centres = np.eye(4) * 10
    emb = centres[labels] + np.random.default_rng(0).normal(0, 0.01, (20, 4))
    assert sl.recall_at_k(emb, labels, [1, 4]) == {1: 1.0, 4: 1.0}
    # two items per class, each nearest to the other class's pair: recall@1 = 0
    emb2 = np.array([[0.0], [10.0], [0.1], [10.1]])
    assert sl.recall_at_k(emb2, np.array([0, 0, 1, 1]), [1])[1] == 0.0
    with pytest.raises(ValueError, match="every k"):
        sl.recall_at_k(emb, labels, [20])


def test_kmeans_nmi_is_one_on_separated_classes() -> None:
    labels = np.repeat(np.arange(3), 10)
    emb = np.eye(3)[labels] * 5 + np.random.default_rng(1).normal(0, 0.01, (30, 3))
    assert sl.kmeans_nmi(emb, labels, 3, seed=0) == pytest.approx(1.0)


def test_dice_known_values() -> None:
    a = np.zeros((2, 4, 4), dtype=bool)
    a[0, :2] = True  # 8 pixels
    b = a.copy()
    assert np.allclose(sl.dice(a, a), 1.0)  # identical (and both-empty) masks
    b[0, :1] = False  # 4 of the 8 left: 2*4 / (8+4)
    assert sl.dice(b, a)[0] == pytest.approx(2 / 3)
    assert sl.dice(~a, a)[0] == 0.0
    with pytest.raises(ValueError, match="one shape"):
        sl.dice(a, a[:, :2])


def test_grad_cam_of_a_linear_model_is_the_weighted_feature_sum() -> None:
    """F = x itself, logits = W GAP(F): ∂y_c/∂F_k = W_ck/(hw), so the map is
    ReLU(Σ_k W_ck F_k)/(hw)."""
    torch.manual_seed(0)
    x = torch.randn(3, 4, 5, 5)
    w = torch.randn(2, 4)

    def head(f: torch.Tensor) -> torch.Tensor:
        return f.mean(dim=(2, 3)) @ w.T

    target = torch.tensor([0, 1, 1])
    cam = sl.grad_cam(lambda t: t, head, x, target)
    expected = torch.relu(torch.einsum("bk,bkhw->bhw", w[target], x)) / 25
    assert torch.allclose(cam, expected, atol=1e-6)


def test_map_to_mask_thresholds_the_min_max_scaled_upsampled_map() -> None:
    maps = torch.zeros(2, 2, 2)
    maps[0, 0, 0] = 1.0  # top-left quadrant hot
    mask = sl.map_to_mask(maps, 8, 0.5)
    assert mask[0, 0, 0] and not mask[0, 7, 7]
    assert not mask[1].any()  # a constant map gives an empty mask


def test_plateau_rule_fires_on_a_constructed_nmi_sequence() -> None:
    nmi = [0.1, 0.3, 0.5, 0.4, 0.45, 0.5]  # best at epoch 2, ties do not count as improving
    assert not sl.plateaued(nmi[:5], since=0, patience=3)
    assert sl.plateaued(nmi, since=0, patience=3)
    assert not sl.plateaued(nmi, since=4, patience=3)  # restarted after a split at epoch 4
    assert not sl.plateaued([0.1, 0.2, 0.3, 0.4, 0.5], since=0, patience=1)
    with pytest.raises(ValueError):
        sl.plateaued(nmi, 0, 0)


def test_taylor_importance_scales_to_unit_range() -> None:
    a = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    g = torch.tensor([[1.0, -1.0, 1.0], [1.0, -1.0, 1.0]])
    s = sl.taylor_importance([a], [g])  # |mean a·g| = 1, 2, 3 -> 0, 0.5, 1
    assert torch.allclose(s, torch.tensor([0.0, 0.5, 1.0]))
    assert torch.equal(sl.taylor_importance([a], [g * 0]), torch.zeros(3))


def test_split_keeps_important_rows_and_moves_their_optimiser_state() -> None:
    layer = nn.Linear(3, 8)
    opt = torch.optim.Adam(layer.parameters())
    layer(torch.randn(4, 3)).sum().backward()
    opt.step()
    moment = opt.state[layer.weight]["exp_avg"].clone()
    bounds = sl.split_last_learner(
        layer, [0, 2, 8], torch.tensor([3, 1]), torch.Generator().manual_seed(0), opt
    )
    assert bounds == [0, 2, 4, 8]
    after = layer.weight.detach()
    state = opt.state[layer.weight]["exp_avg"]
    assert torch.equal(state[2:4], moment[[3, 5]])  # rows lo+1, lo+3 moved to lo, lo+1
    assert torch.equal(state[4:], torch.zeros(4, 3))
    assert torch.equal(layer.bias.detach()[4:], torch.zeros(4))
    assert after[4:].abs().max() <= (6 / 11) ** 0.5
    assert sl.can_split(12, 5, 10, 5) and not sl.can_split(10, 5, 10, 5)
    assert not sl.can_split(20, 4, 10, 5)
    with pytest.raises(ValueError, match="proper subset"):
        sl.split_last_learner(layer, [0, 8], torch.arange(8), torch.Generator())


def test_split_copies_the_important_weights() -> None:
    layer = nn.Linear(2, 6)
    w = layer.weight.detach().clone()
    sl.split_last_learner(layer, [0, 6], torch.tensor([4, 2]), torch.Generator().manual_seed(0))
    assert torch.equal(layer.weight.detach()[:2], w[[2, 4]])


def test_blocks_are_normalised_separately() -> None:
    emb = torch.tensor([[3.0, 4.0, 0.0, 2.0]])
    out = sl.normalise_blocks(emb, [0, 2, 4])
    assert torch.allclose(out, torch.tensor([[0.6, 0.8, 0.0, 1.0]]))
    assert sl.even_bounds(32, 4) == [0, 8, 16, 24, 32]
    with pytest.raises(ValueError, match="increase strictly"):
        sl.normalise_blocks(emb, [0, 3, 3, 4])


def test_margin_loss_is_zero_for_separated_classes_and_positive_otherwise() -> None:
    gen = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 0, 1, 1])
    beta = torch.tensor(1.2)
    tight = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.01], [0, 1], [0, 1.0]]))
    # D_ap ≈ 0 < β − α, D_an = √2 > β + α would be needed: with α=0.2, β=1.2 the negative
    # term is [0.2 − 1.414 + 1.2]_+ = 0 -> zero loss; pairs farther than 1.4 are never drawn
    assert float(sl.margin_loss(tight, labels, beta, 0.2, gen, nonzero_cutoff=2.0)) == 0.0
    mixed = tight[[0, 2, 1, 3]]
    assert float(sl.margin_loss(mixed, labels, beta, 0.2, gen, nonzero_cutoff=2.0)) > 0.5
    assert float(sl.margin_loss(tight, torch.arange(4), beta, 0.2, gen)) == 0.0


def _learners(mode: str, k: int, patience: int = 1) -> sl.SubspaceLearners:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(40, 3, 12, 12, generator=gen)
    y = torch.arange(40) % 4
    sched = sl.LearnerSchedule(mode, k, 0.2, 10, 6, 2, 5, patience, 0.5, 4, 2, 2, 4)
    return sl.SubspaceLearners(_tiny_embedder(), sched, x, y, x[:20], y[:20], seed=0)


def test_dynamic_learners_split_on_a_plateau_and_join_for_finetuning() -> None:
    dsl = _learners("dynamic", 1)
    assert dsl.k == 1
    dsl.nmi = [0.9]  # a best epoch no later epoch can beat: the next one plateaus
    event = dsl.end_epoch(0, None)
    assert event.tried and event.split and dsl.k == 2 and len(dsl.clusters) == 2
    loss = dsl.loss()
    assert loss.requires_grad and torch.isfinite(loss)
    for epoch in range(1, 4):
        dsl.end_epoch(epoch, None)
    k_before = dsl.k
    dsl.end_epoch(4, None)  # epoch 5 of 6 starts fine-tuning
    assert dsl.k == 1 and dsl.k_found == k_before >= 2


def test_fixed_learners_keep_k_and_cluster_the_start() -> None:
    dc = _learners("fixed", 3)
    assert dc.k == 3 and len(dc.clusters) == 3
    assert sum(len(c) for c in dc.clusters) == 40
    assert dc.end_epoch(0, None).nmi is None and dc.k == 3
    with pytest.raises(ValueError, match="mode"):
        sl.LearnerSchedule("grow", 1, 0.2, 10, 6, 2, 5, 1, 0.5, 4, 2, 2, 4).check(12)
