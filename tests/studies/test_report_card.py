"""Tests of the report card: rebuilding gcr's models and the probes on one classifier."""

from __future__ import annotations

import torch

from subspacelab.studies.gcr import core as gcr_core
from subspacelab.studies.report_card import core
from subspacelab.studies.report_card.config import GcrModels
from subspacelab.studies.report_card.study import _table, rebuild_gcr


def _gcr_net(head: str) -> gcr_core.Classifier:
    torch.manual_seed(0)
    trunk = gcr_core.ConvTrunk([4, 6], 3, 2)
    return gcr_core.Classifier(
        trunk, gcr_core.build_head(gcr_core.parse_head(head), trunk.feature_dim, 3, 10.0)
    )


def test_rebuild_gcr_reproduces_the_outputs() -> None:
    net = _gcr_net("gcr2").eval()
    again = rebuild_gcr(
        net.state_dict(), {"head": "gcr2", "num_classes": "3"}, GcrModels(stride=2, gamma=10.0)
    )
    x = torch.randn(5, 12)
    torch.testing.assert_close(again(x), net(x))


def test_probe_classifier_values() -> None:
    net = _gcr_net("gcr2").eval()
    x, y = torch.randn(30, 12), torch.arange(30) % 3
    row = core.probe_classifier(
        net.trunk, net.head, x, y, 3, class_rank=2, top_k=2, head_bases=net.head.bases()
    )
    assert row["nc1"] > 0 and 1.0 <= row["effective_rank"] <= 6.0
    assert row["hessian_l1"] >= row["hessian_l2"]
    assert 0.0 <= row["head_angle_min"] <= row["head_angle_mean"] <= 90.0
    assert 0.0 <= row["nc4"] <= 1.0


def test_class_subspaces_and_angles_known_answer() -> None:
    e = torch.eye(4, dtype=torch.float64)
    h = torch.cat([e[[0]].repeat(3, 1) * torch.arange(1, 4)[:, None], e[[1]].repeat(3, 1)])
    bases = core.class_subspaces(h, torch.tensor([0, 0, 0, 1, 1, 1]), 2, 1)
    mean, smallest = core.mean_pairwise_angle_deg(bases)
    assert mean == smallest == 90.0


def test_table_has_a_column_per_seed() -> None:
    text = _table({0: {"nc1": 1.0}, 1: {"nc1": 3.0}})
    assert "| nc1 | 1 | 3 | 2 |" in text
