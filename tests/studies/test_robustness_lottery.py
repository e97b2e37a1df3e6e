"""Tests of the robustness_lottery study (Li et al., arXiv:2206.07918)."""

from __future__ import annotations

import itertools

import pytest
import torch

from subspacelab.config import ParamsError, build
from subspacelab.probes import pruning as pr
from subspacelab.registry import Metrics
from subspacelab.studies.robustness_lottery import core
from subspacelab.studies.robustness_lottery import study as rl
from subspacelab.studies.robustness_lottery.config import TrainConfig


def test_methods_reach_the_sparsity_and_summaries() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(64, 12), torch.arange(64) % 10
    models = core.train_methods(
        lambda: core.SmallCNN(12, 2, 4, 10),
        x,
        y,
        epochs=3,
        finetune_epochs=1,
        rewind_epoch=1,
        sparsity=0.8,
        lr=0.01,
        batch=32,
        seed=0,
    )
    assert set(models) == set(core.METHODS)
    for method in ("magnitude_finetune", "gradual_magnitude", "lottery_rewind"):
        weights = pr.prunable(models[method])
        zeros = sum(int((w == 0).sum()) for w in weights.values())
        total = sum(w.numel() for w in weights.values())
        assert zeros / total == pytest.approx(0.8, abs=0.01), method
    popup = models["edge_popup"]
    w, _ = popup.last_layer()
    assert float((w != 0).double().mean()) == pytest.approx(0.2, abs=0.03)
    row = core.summarise(models["dense"], x, y)
    assert 0 <= row["acc"] <= 1 and 0 <= row["angle"] <= 180 and row["length"] >= 0


def test_config_rewind_error() -> None:
    raw = {
        "channels": 2,
        "hidden": 4,
        "epochs": 2,
        "finetune_epochs": 1,
        "rewind_epoch": 2,
        "sparsity": 0.9,
        "lr": 0.1,
        "batch_size": 8,
    }
    with pytest.raises(ParamsError, match="rewind_epoch"):
        build(TrainConfig, raw, "robustness_lottery.mini.train")


def _metrics(good: bool) -> Metrics:
    vals: dict[str, float] = {}
    corr = ["gaussian_noise", "shot_noise", "blur", "contrast"]
    profile = {"gaussian_noise": 10.0, "shot_noise": 10.5, "blur": 2.0, "contrast": 30.0}
    if not good:
        profile = {"gaussian_noise": 10.0, "shot_noise": 30.0, "blur": 11.0, "contrast": 29.0}
    for i, method in enumerate(core.METHODS):
        for c, s in itertools.product(corr, range(1, 6)):
            vals[f"{method}/{c}/{s}/d_angle"] = profile[c] * s * (1 + 0.01 * i)
            vals[f"{method}/{c}/{s}/d_length"] = -1.0 if good else 1.0
        vals[f"{method}/corrupted/d_angle"] = float(i)
        vals[f"{method}/corrupted/acc"] = (0.9 - 0.1 * i) if good else (0.5 + 0.1 * i)
    return Metrics(vals)


def test_claims_both_ways() -> None:
    for claim in rl.CLAIMS:
        assert claim.check(_metrics(True)).holds, claim.id
        assert not claim.check(_metrics(False)).holds, claim.id
