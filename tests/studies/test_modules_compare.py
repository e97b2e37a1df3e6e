"""modules_compare (issue 14's table): the arms against hand counts, the gated classifier's
maths, the product MACs, and the params kept equal to ulsam's."""

from __future__ import annotations

import pytest
import torch
import yaml

from subspacelab.config import study_config
from subspacelab.modules.count import count
from subspacelab.studies.modules_compare import study
from subspacelab.studies.modules_compare.config import ModulesCompareConfig
from tests.helpers import REPO

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
CFG = study_config(ModulesCompareConfig, PARAMS, "modules_compare", "mini")


def test_backbone_schedule_and_seeds_are_ulsam_s() -> None:
    """The baseline and ULSAM rows are ulsam's models: the arms trained here must share their
    backbone, schedule and seeds, or the table would compare unlike runs."""
    mine, theirs = PARAMS["modules_compare"]["mini"], PARAMS["ulsam"]["mini"]
    for key in ("stem", "widths", "strides", "bn_momentum"):
        assert mine["backbone"][key] == theirs["model"][key], key
    for key in ("epochs", "lr", "batch"):
        assert mine["train"][key] == theirs["train"][key], key
    assert theirs["train"]["optimizer"] == "adam" and theirs["train"]["schedule"] == "constant"
    assert mine["seeds"] == theirs["seeds"]
    assert mine["backbone"]["ulsam_groups"] in theirs["model"]["insert_groups"]
    assert mine["backbone"]["ulsam_groups"] in theirs["model"]["replace_groups"]


def test_arm_parameters_by_hand() -> None:
    base = count(study.build(CFG, "baseline"), torch.zeros(1, 1, 40, 40)).params
    se = count(study.build(CFG, "se"), torch.zeros(1, 1, 40, 40)).params
    cbam = count(study.build(CFG, "cbam"), torch.zeros(1, 1, 40, 40)).params
    gate = count(study.build(CFG, "hydra_gate"), torch.zeros(1, 1, 40, 40)).params
    assert se - base == (128 * 8 + 8) + (8 * 128 + 128)  # W1, b1, W2, b2 at reduction 16
    assert cbam - base == 2 * 7 * 7 + 2  # the 2→1 conv (no bias) and its BN
    embed, hidden = 32, 64  # label embedding, then ReLU-BN-Linear twice
    assert gate - base == 10 * embed + 2 * embed + embed * hidden + hidden + 2 * hidden + (
        hidden * 128 + 128
    )


def test_gated_classifier_scores_each_class_through_its_own_gate() -> None:
    torch.manual_seed(0)
    model = study.build(CFG, "hydra_gate").eval()
    x = torch.randn(3, 1, 40, 40)
    cnn = model.cnn
    z = cnn.pool(cnn.blocks(cnn.stem(x))).flatten(1)
    with torch.no_grad():
        logits = model(x)
        for c in range(10):
            g = model.gate(torch.tensor([c]))[0]
            want = z @ (cnn.fc.weight[c] * g) + cnn.fc.bias[c]
            torch.testing.assert_close(logits[:, c], want)


def test_product_macs_count_one_per_element() -> None:
    x = torch.zeros(1, 1, 40, 40)
    assert study.scale_products(study.build(CFG, "baseline"), x) == 0
    assert study.scale_products(study.build(CFG, "se"), x) == 128 * 5 * 5
    assert study.scale_products(study.build(CFG, "cbam"), x) == 128 * 5 * 5
    assert study.scale_products(study.build(CFG, "hydra_gate"), x) == 10 * 128


def test_table_shows_the_paired_gap_and_latency() -> None:
    arms = ("baseline", "se")
    metrics = {
        "cluttered/baseline/acc": [0.8, 0.9],
        "cluttered/se/acc": [0.85, 0.9],
        **{f"cluttered/{a}/params": [10.0, 10.0] for a in arms},
        **{f"cluttered/{a}/macs": [100.0, 100.0] for a in arms},
        **{f"cluttered/{a}/latency_b1_seconds": [0.001, 0.003] for a in arms},
    }
    text = study.table(metrics, arms, [1])
    assert "| se | 0.8750 ± 0.0250 | +0.0250 | 10 | 100 | 2.00 |" in text


def test_latency_is_a_positive_median() -> None:
    model = study.build(CFG, "baseline").eval()
    assert study.latency(model, torch.zeros(2, 1, 40, 40), repeats=3) > 0


@pytest.mark.parametrize("arm", ["insert_g4", "replace_g4"])
def test_ulsam_rows_build_ulsam_s_models(arm: str) -> None:
    from subspacelab.studies.ulsam.core import ULSAM

    assert any(isinstance(m, ULSAM) for m in study.build(CFG, arm).modules())
