"""Segmentation losses and scores (subspacelab.shapes.segloss): known answers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from subspacelab.shapes.segloss import (
    ClusterContrast,
    confusion,
    iou,
    lovasz_softmax,
    sinkhorn,
)


def test_lovasz_of_a_perfect_prediction_is_zero() -> None:
    labels = torch.tensor([0, 1, 2, 1, 0])
    assert float(lovasz_softmax(F.one_hot(labels, 3).float(), labels)) == 0.0


def test_lovasz_on_one_hot_predictions_is_one_minus_iou() -> None:
    """On a vertex of the simplex the Lovász extension equals the Jaccard loss itself."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (200,), generator=gen)
    pred = torch.where(torch.rand(200, generator=gen) < 0.7, labels, torch.randint(0, 4, (200,)))
    per_class = iou(confusion(pred, labels, 4))
    expected = (1 - per_class[labels.unique()]).mean()
    got = lovasz_softmax(F.one_hot(pred, 4).float(), labels)
    assert float(got) == pytest.approx(float(expected), abs=1e-6)


def test_lovasz_leaves_ignored_points_out() -> None:
    labels = torch.tensor([0, 1, 255, 255])
    probs = F.one_hot(torch.tensor([0, 1, 0, 1]), 2).float()
    assert float(lovasz_softmax(probs, labels, ignore=255)) == 0.0
    assert float(lovasz_softmax(probs, torch.full((4,), 255), ignore=255)) == 0.0


def test_iou_of_hand_made_labels() -> None:
    pred = torch.tensor([0, 0, 1, 1, 2])
    labels = torch.tensor([0, 1, 1, 1, 2])
    conf = confusion(pred, labels, 4)
    assert conf.tolist() == [[1, 0, 0, 0], [1, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    per_class = iou(conf)
    assert per_class[:3].tolist() == pytest.approx([0.5, 2 / 3, 1.0])
    assert torch.isnan(per_class[3])  # absent from truth and prediction
    assert float(per_class.nanmean()) == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)


def test_confusion_refuses_out_of_range_labels() -> None:
    with pytest.raises(ValueError, match="must lie in"):
        confusion(torch.tensor([0, 3]), torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError, match="shape"):
        confusion(torch.tensor([0]), torch.tensor([0, 1]), 3)
    assert confusion(torch.tensor([0, 2]), torch.tensor([0, 255]), 3, ignore=255).sum() == 1


def test_sinkhorn_balances_clusters() -> None:
    """Every point prefers cluster 0 a little; the equipartition still splits them evenly,
    and clear preferences are kept."""
    scores = torch.tensor([[0.6, 0.4]] * 8)
    scores[:4] = torch.tensor([0.9, 0.1])
    labels = sinkhorn(scores, 25.0, 1e-6, 1000)
    assert labels.tolist() == [0] * 4 + [1] * 4
    eye = torch.eye(3).repeat(2, 1) * 0.9 + 0.05
    assert sinkhorn(eye, 25.0, 1e-6, 1000).tolist() == [0, 1, 2, 0, 1, 2]


def _loss(k: int = 2, queue: int = 6) -> ClusterContrast:
    return ClusterContrast(
        3, k, 4, momentum=0.9, tau=0.1, tau_base=2.0, power=25.0, max_samples=30,
        max_views=10, queue=queue, enqueue=2, sinkhorn_tol=0.01, sinkhorn_iter=100, seed=0,
    )  # fmt: skip


def test_cluster_contrast_learns_only_through_the_embedding_and_updates_state() -> None:
    cc = _loss()
    emb = F.normalize(torch.randn(90, 4, generator=torch.Generator().manual_seed(1)), dim=1)
    emb.requires_grad_()
    labels = torch.arange(90) % 3
    pred = torch.where(torch.arange(90) < 45, labels, (labels + 1) % 3)
    before = cc.protos.clone()
    loss = cc(emb, labels, pred)
    loss.backward()
    assert loss.item() > 0 and emb.grad is not None and emb.grad.abs().sum() > 0
    assert not torch.equal(before, cc.protos)
    torch.testing.assert_close(cc.protos.norm(dim=-1), torch.ones(3, 2))
    assert int(cc.filled.sum()) > 0 and int(cc.filled.max()) <= 6
    # eval mode: the same loss, no state change
    cc.eval()
    state = {k: v.clone() for k, v in cc.state_dict().items()}
    cc(emb.detach(), labels, pred)
    for key, value in cc.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_cluster_contrast_prefers_embeddings_on_their_sub_centroids() -> None:
    """Points sitting on their own class's sub-centroids cost less than random points."""
    cc = _loss().eval()
    labels = torch.arange(60) % 3
    sub = (torch.arange(60) // 3) % 2
    on_centroids = cc.protos[labels, sub]
    random = F.normalize(torch.randn(60, 4, generator=torch.Generator().manual_seed(2)), dim=1)
    assert float(cc(on_centroids, labels, labels)) < float(cc(random, labels, labels))
    assert torch.equal(cc.nearest(on_centroids, labels), sub)


def test_anchor_sampling_takes_hard_and_easy_points() -> None:
    cc = _loss()
    labels = torch.zeros(40, dtype=torch.long)
    pred = torch.cat([torch.zeros(30), torch.ones(10)]).long()  # 10 hard, 30 easy
    idx = cc._sample(labels, pred)
    assert len(idx) == 10  # max_views
    assert int((pred[idx] != labels[idx]).sum()) == 5
    none_hard = cc._sample(labels, torch.zeros(40, dtype=torch.long))
    assert len(none_hard) == 10  # topped up from the easy points


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="momentum"):
        ClusterContrast(
            3, 2, 4, momentum=1.0, tau=0.1, tau_base=2.0, power=25.0, max_samples=30,
            max_views=10, queue=6, enqueue=2, sinkhorn_tol=0.01, sinkhorn_iter=100, seed=0,
        )  # fmt: skip
    with pytest.raises(ValueError, match="probs"):
        lovasz_softmax(torch.rand(3, 2), torch.zeros(4, dtype=torch.long))
