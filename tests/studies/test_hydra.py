"""hydra (Hydra/SimLAP, arXiv 2410.18200): the gated loss, the sampler, the augmentation and
the evaluation's maths against known answers, the claims both ways and the config's errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from subspacelab.api import Metrics
from subspacelab.config import ParamsError, study_config
from subspacelab.modules.gates import ClassPairGate, OpenGate
from subspacelab.studies.hydra import core
from subspacelab.studies.hydra.config import HydraConfig
from subspacelab.studies.hydra.study import STUDY
from tests.helpers import tiny_params


def test_gated_logits_equal_the_cosine_of_gated_vectors() -> None:
    torch.manual_seed(0)
    z, gate = torch.randn(5, 4), torch.rand(5, 4)
    want = torch.stack([F.cosine_similarity(gate[i] * z[i], gate[i] * z, dim=1) for i in range(5)])
    torch.testing.assert_close(core.gated_logits(z, gate, 0.5), want / 0.5)
    # an open gate: plain cosine similarity
    torch.testing.assert_close(
        core.gated_logits(z, torch.ones(5, 4), 1.0), F.normalize(z) @ F.normalize(z).T
    )


def test_masks_exclude_the_anchor_class_from_negatives_and_self_from_positives() -> None:
    y = torch.tensor([0, 0, 1, 2])
    y1, y2 = y, torch.tensor([1, 0, 2, 2])
    pos, neg = core.pair_masks(y1, y2, y)
    assert pos.tolist() == [
        [False, False, True, False],
        [True, False, False, False],  # y2 = y1: the other sample of class 0, not itself
        [False, False, False, True],
        [False, False, False, False],  # y2 = y1 = 2 and no other sample of class 2
    ]
    assert neg.tolist() == [
        [False, False, False, True],  # neither class 0 (y1) nor class 1 (y2)
        [False, False, True, True],
        [True, True, False, False],
        [True, True, True, False],
    ]


def test_multi_positive_loss_by_hand() -> None:
    logits = torch.tensor([[0.0, 2.0, 1.0], [1.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    pos = torch.tensor([[False, True, False], [False, False, False], [True, False, False]])
    neg = torch.tensor([[False, False, True], [False, False, False], [False, True, True]])
    c = logits - logits.mean(1, keepdim=True)
    row0 = math.log(math.exp(c[0, 1]) + math.exp(c[0, 2])) - float(c[0, 1])
    row2 = math.log(3.0)  # all centred logits 0: log(1 + 2)
    got = core.multi_positive_loss(logits, pos, neg)
    assert float(got) == pytest.approx((row0 + row2) / 2, rel=1e-6)
    # no positive anywhere: 0, not NaN; a row without negatives adds log(exp l) - l = 0
    assert float(core.multi_positive_loss(logits, torch.zeros_like(pos), neg)) == 0.0
    only = torch.tensor([[False, True, False], [False] * 3, [False] * 3])
    assert float(core.multi_positive_loss(logits, only, torch.zeros_like(neg))) == 0.0


def test_partners_by_pair_type() -> None:
    y = torch.arange(10).repeat(5)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(core.partners(y, "identical", 10, gen), y)
    distinct = core.partners(y, "distinct", 10, gen)
    assert bool((distinct != y).all()) and int(distinct.max()) < 10
    arbitrary = core.partners(y, "arbitrary", 10, gen)
    assert sorted(arbitrary.tolist()) == sorted(y.tolist())  # the batch's labels, reordered
    with pytest.raises(ValueError, match="unknown pair type"):
        core.partners(y, "random", 10, gen)


def test_augment_shifts_scales_and_adds_noise() -> None:
    x = torch.arange(1.0, 9.0).repeat(3, 1)
    gen = torch.Generator().manual_seed(0)
    out = core.augment(x, gen, 0, 1.0, 1.0, 0.0)
    assert torch.equal(out, x)  # nothing asked: the identity
    out = core.augment(x, torch.Generator().manual_seed(1), 2, 1.0, 1.0, 0.0)
    for row in out:  # each row is x shifted by s in [-2, 2], zero-filled
        s = next(s for s in range(-2, 3) if torch.equal(row, _shift(x[0], s)))
        assert abs(s) <= 2
    scaled = core.augment(x, torch.Generator().manual_seed(2), 0, 2.0, 2.0, 0.0)
    assert torch.equal(scaled, 2 * x)
    images = torch.ones(2, 3, 4, 4)
    assert core.augment(images, gen, 1, 0.5, 1.5, 0.1).shape == images.shape


def _shift(v: torch.Tensor, s: int) -> torch.Tensor:
    out = torch.zeros_like(v)
    if s >= 0:
        out[s:] = v[: len(v) - s]
    else:
        out[:s] = v[-s:]
    return out


def test_effective_rank_of_known_spectra() -> None:
    basis = torch.linalg.qr(torch.randn(6, 6))[0]
    equal = torch.cat([basis[:, :3] * 2, -basis[:, :3] * 2])  # centred, three equal σ
    er, p = core.effective_rank(equal)
    assert er == pytest.approx(3.0, rel=1e-5)
    torch.testing.assert_close(p[:3], torch.full((3,), 1 / 3))
    line = torch.tensor([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]])  # rank one
    assert core.effective_rank(line)[0] == pytest.approx(1.0, abs=1e-5)


def test_soft_confusion_gate_similarity_and_spearman() -> None:
    probs = torch.tensor([[0.8, 0.2, 0.0], [0.6, 0.4, 0.0], [0.1, 0.1, 0.8]])
    y = torch.tensor([0, 1, 2])
    c = core.soft_confusion(probs, y, 3)
    torch.testing.assert_close(c, c.T)
    assert float(c[0, 1]) == pytest.approx((0.2 + 0.6) / 2)
    with pytest.raises(ValueError, match="every class"):
        core.soft_confusion(probs, torch.tensor([0, 0, 1]), 3)
    gates = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    sim = core.gate_similarity(gates)
    assert float(sim[0, 2]) == pytest.approx(0.0)
    assert float(sim[0, 1]) == pytest.approx(1 / math.sqrt(2))
    a = torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 3.0], [2.0, 3.0, 0.0]])
    assert core.spearman_off_diagonal(a, a * 10) == pytest.approx(1.0)
    assert core.spearman_off_diagonal(a, -a) == pytest.approx(-1.0)


def test_linear_probe_separates_separable_features() -> None:
    torch.manual_seed(0)
    y = torch.arange(3).repeat(30)
    r = F.one_hot(y, 3).float() * 5 + 0.1 * torch.randn(90, 3)
    assert core.linear_probe(r, y, r, y, 1.0, 200) == 1.0


def test_arm_loss_trains_the_head_on_detached_features_only() -> None:
    torch.manual_seed(0)
    backbone = core.Conv1dEncoder(12, [2, 3, 3], 3, 6)
    model = core.SimLAP(backbone, 6, 8, 4, ClassPairGate(3, 4, 2, 5), 3)
    x, y = torch.randn(9, 12), torch.arange(3).repeat(3)
    gen = torch.Generator().manual_seed(0)
    kw = {"classes": 3, "temperature": 0.1, "label_smoothing": 0.1, "gen": gen}
    loss = core.arm_loss(model, core.ARMS["simlap_distinct"], x, y, **kw)
    head_grad = torch.autograd.grad(loss, model.head.weight, retain_graph=True)[0]
    assert float(head_grad.abs().sum()) > 0
    # the backbone's gradient is the contrastive loss's alone (CE sees a detached r)
    r = model.backbone(x)
    z = model.projector(r)
    y2 = core.partners(y, "distinct", 3, torch.Generator().manual_seed(0))
    pos, neg = core.pair_masks(y, y2, y)
    contrast = core.multi_positive_loss(core.gated_logits(z, model.gate(y, y2), 0.1), pos, neg)
    ce_value = F.cross_entropy(model.head(r), y, label_smoothing=0.1)
    assert float((loss - contrast).detach()) == pytest.approx(float(ce_value.detach()), rel=1e-5)
    g_all = torch.autograd.grad(loss, model.backbone.fc.weight, retain_graph=True)[0]
    g_con = torch.autograd.grad(contrast, model.backbone.fc.weight)[0]
    torch.testing.assert_close(g_all, g_con)
    ce = core.arm_loss(model, core.ARMS["ce"], x, y, **kw)
    assert float(torch.autograd.grad(ce, model.backbone.fc.weight)[0].abs().sum()) > 0


def test_the_no_gate_arm_uses_an_open_gate() -> None:
    assert core.ARMS["distinct_nogate"] == core.Arm("distinct", gated=False)
    assert set(core.GATED) == {"simlap_arbitrary", "simlap_distinct"}
    gate = OpenGate(4)
    assert torch.equal(gate(torch.tensor([0, 1])), torch.ones(2, 4))


def _m(
    distinct: list[float],
    supcon: list[float],
    nogate: list[float],
    er: list[float],
    rho: list[float],
) -> Metrics:
    n = len(distinct)
    return Metrics(
        {
            "mnist1d/simlap_distinct/probe_acc": distinct,
            "mnist1d/supcon/probe_acc": supcon,
            "mnist1d/distinct_nogate/probe_acc": nogate,
            "mnist1d/simlap_arbitrary/erank_z": er,
            "mnist1d/simlap_distinct/erank_z": er,
            "mnist1d/supcon/erank_z": [10.0] * n,
            "mnist1d/simlap_arbitrary/gate_spearman": rho,
            "mnist1d/simlap_distinct/gate_spearman": rho,
            "mnist1d/untrained_gate/gate_spearman": [0.0] * n,
        }
    )


def test_claims_hold_fail_and_are_inconclusive() -> None:
    checks = {c.id: c.check for c in STUDY.claims}
    good = _m([0.9, 0.91, 0.92], [0.9, 0.9, 0.9], [0.6, 0.6, 0.6], [20, 21, 22], [0.3, 0.4, 0.5])
    bad = _m([0.5, 0.51, 0.52], [0.9, 0.9, 0.9], [0.6, 0.6, 0.6], [5, 6, 7], [-0.3, -0.4, -0.5])
    unsure = _m([0.85, 0.9, 0.8], [0.9, 0.9, 0.9], [0.6, 0.6, 0.6], [5, 15, 12], [-0.3, 0.4, 0.1])
    for cid in ("distinct_pairs_need_the_gate", "no_collapse", "gates_reveal_classes"):
        assert checks[cid](good).verdict == "holds", cid
        assert checks[cid](bad).verdict == "does not hold", cid
        assert checks[cid](unsure).verdict == "inconclusive", cid
    # (a)'s second half fails on its own: the gate adds only 5 points over no gate
    close = _m([0.9, 0.91, 0.92], [0.9, 0.9, 0.9], [0.85, 0.86, 0.87], [20, 21, 22], [0.3] * 3)
    assert checks["distinct_pairs_need_the_gate"](close).verdict == "does not hold"


def test_config_errors_name_the_field() -> None:
    params = tiny_params(["hydra"])
    cfg = study_config(HydraConfig, params, "hydra", "mini")  # the tiny profile is valid
    assert cfg.model.backbone == "cnn1d"
    params["hydra"]["mini"]["model"]["backbone"] = "resnet18"
    with pytest.raises(ParamsError, match="backbone"):
        study_config(HydraConfig, params, "hydra", "mini")
    params["hydra"]["mini"]["model"]["backbone"] = "cnn1d"
    params["hydra"]["mini"]["data"]["scale_min"] = 2.0
    with pytest.raises(ParamsError, match="scale_max"):
        study_config(HydraConfig, params, "hydra", "mini")


def test_the_full_backbone_is_cifar_resnet18() -> None:
    pytest.importorskip("torchvision")
    from subspacelab.studies.hydra.full import resnet18_cifar

    assert resnet18_cifar()(torch.zeros(2, 3, 32, 32)).shape == (2, 512)
