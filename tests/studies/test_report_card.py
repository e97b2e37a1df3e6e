"""Tests of the report card: rebuilding gcr's models and the probes on one classifier."""

from __future__ import annotations

import pytest
import torch

from subspacelab.io import ModelFileError
from subspacelab.studies.gcr import core as gcr_core
from subspacelab.studies.gcr.config import CnnConfig, ModelConfig
from subspacelab.studies.gcr.study import architecture_meta
from subspacelab.studies.report_card import core
from subspacelab.studies.report_card.config import ProbeConfig, ReportCardConfig
from subspacelab.studies.report_card.study import _scope_table, _table, rebuild_gcr

META = {"head": "gcr2", "num_classes": "3", "backbone": "cnn", "gamma": "10.0"}


def _gcr_net(head: str) -> gcr_core.Classifier:
    torch.manual_seed(0)
    trunk = gcr_core.ConvTrunk([4, 6], 3, 2)
    return gcr_core.Classifier(
        trunk, gcr_core.build_head(gcr_core.parse_head(head), trunk.feature_dim, 3, 10.0)
    )


def test_rebuild_gcr_reproduces_the_outputs_from_the_metadata() -> None:
    net = _gcr_net("gcr2").eval()
    model = ModelConfig(
        backbone="cnn",
        cnn=CnnConfig(channels=[4, 6], kernel_size=3, stride=2),
        heads=["gcr2"],
        gamma=10.0,
    )
    meta = {"head": "gcr2", "num_classes": "3", **architecture_meta(model)}
    again = rebuild_gcr(net.state_dict(), meta)
    x = torch.randn(5, 12)
    torch.testing.assert_close(again(x), net(x))
    wrong_stride = rebuild_gcr(net.state_dict(), {**meta, "cnn_stride": "1"})
    assert not torch.allclose(wrong_stride(x), net(x))  # the stride read is the one used


def test_rebuild_gcr_without_architecture_metadata_fails_clearly() -> None:
    net = _gcr_net("gcr2")
    with pytest.raises(ModelFileError, match=r"cnn_stride.*rerun gcr's fit"):
        rebuild_gcr(net.state_dict(), META, "old.safetensors")
    with pytest.raises(ModelFileError, match="gamma"):
        rebuild_gcr(net.state_dict(), {k: v for k, v in META.items() if k != "gamma"})


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


def test_scope_table_states_the_seed_and_subset() -> None:
    cfg = ReportCardConfig(seeds=[0], probe=ProbeConfig(n_samples=512, class_rank=4, top_k=3))
    text = _scope_table(cfg, {0, 1, 2, 3, 4}, {"mnist1d": (512, 3972, [100, 103, 99, 110, 100])})
    assert "gcr seed 0 of gcr's 5 (0, 1, 2, 3, 4)" in text
    assert "512 of its 3972 source training examples (per class: 100, 103, 99, 110, 100)" in text
    assert "one seed gives no interval" in text
    several = ReportCardConfig(seeds=[0, 1], probe=cfg.probe)
    assert "gcr seeds 0, 1 of gcr's 5" in _scope_table(several, {0, 1, 2, 3, 4}, {})
