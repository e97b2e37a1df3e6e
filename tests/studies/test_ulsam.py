"""ulsam (arXiv 2006.15102): the module and the CNN arms against hand counts, the claims both
ways and the config's errors."""

from __future__ import annotations

import math

import pytest
import torch

from subspacelab.api import Metrics
from subspacelab.config import ParamsError, study_config
from subspacelab.modules.count import count
from subspacelab.studies.ulsam import core
from subspacelab.studies.ulsam.config import UlsamConfig
from subspacelab.studies.ulsam.study import STUDY
from tests.helpers import tiny_params

WIDTHS, STRIDES = [32, 64, 128, 128, 128], [1, 2, 2, 1, 1]


def test_maps_are_distributions_and_the_channels_are_kept() -> None:
    torch.manual_seed(0)
    m = core.ULSAM(8, 4).eval()
    x = torch.randn(3, 8, 5, 5)
    a = m.maps(x)
    assert a.shape == (3, 4, 5, 5)
    torch.testing.assert_close(a.sum(dim=(2, 3)), torch.ones(3, 4))
    assert m(x).shape == x.shape


def test_each_subspace_gets_its_own_map_and_a_residual() -> None:
    """F̂_n = A_n ⊙ F_n + F_n with A_n broadcast over the n-th group of m/g channels."""
    torch.manual_seed(1)
    m = core.ULSAM(6, 3).eval()
    x = torch.randn(2, 6, 4, 4)
    a = m.maps(x)
    want = torch.cat(
        [x[:, 2 * n : 2 * n + 2] * a[:, n : n + 1] + x[:, 2 * n : 2 * n + 2] for n in range(3)], 1
    )
    torch.testing.assert_close(m(x), want)
    # group n's map depends only on group n's channels
    y = x.clone()
    y[:, 4:] += 5.0
    torch.testing.assert_close(m.maps(y)[:, :2], a[:, :2])


def test_a_flat_pointwise_output_gives_uniform_attention() -> None:
    m = core.ULSAM(4, 2).eval()
    with torch.no_grad():
        m.pw.weight.zero_()
        m.pw.bias.zero_()
    x = torch.randn(1, 4, 5, 5)
    torch.testing.assert_close(m(x), x * (1 + 1 / 25))
    assert core.map_entropy(m.maps(x)) == pytest.approx(1.0)


def test_module_costs_by_hand() -> None:
    m, g, hw = 128, 4, 25
    c = count(core.ULSAM(m, g), torch.zeros(1, m, 5, 5))
    # depthwise 1x1 (m weights + m biases), BN (2m), pointwise m -> g grouped (m + g), BN (2g)
    assert c.params == 2 * m + 2 * m + (m + g) + 2 * g
    # dw: m*hw, pw: hw*g*(m/g), gate: one multiply-add per element of F
    assert c.macs == m * hw + hw * m + m * hw


def test_arms_costs() -> None:
    x = torch.zeros(1, 1, 40, 40)
    c = {
        a: count(core.build(a, 16, WIDTHS, STRIDES, 0.1), x)
        for a in ("baseline", "insert_g4", "replace_g1", "replace_g4")
    }
    block = 128 * 9 + 2 * 128 + 128 * 128 + 2 * 128  # the last separable block
    ulsam4 = 4 * 128 + 128 + 4 + 8
    assert c["insert_g4"].params - c["baseline"].params == ulsam4
    assert c["baseline"].params - c["replace_g4"].params == block - ulsam4
    assert c["replace_g4"].params / c["baseline"].params < 0.85
    assert c["replace_g4"].macs < c["baseline"].macs < c["insert_g4"].macs
    assert 45_000 < c["baseline"].params < 65_000  # the spec's ≈ 60k


def test_bad_arms_and_groups_are_refused() -> None:
    with pytest.raises(ValueError, match="divid"):
        core.ULSAM(10, 4)
    with pytest.raises(ValueError, match="unknown arm"):
        core.build("swap_g4", 16, WIDTHS, STRIDES, 0.1)
    with pytest.raises(ValueError, match="maps its width"):
        core.build("replace_g4", 16, [32, 64], [1, 2], 0.1)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"insert_groups": [3]}, "insert_groups"),
        ({"strides": [1, 2]}, "strides"),
        ({"widths": [32, 64, 128, 128, 64]}, "widths"),
    ],
)
def test_config_errors_name_the_field(change: dict, field: str) -> None:
    params = tiny_params(["ulsam"])
    params["ulsam"]["mini"]["model"].update(
        widths=list(WIDTHS), strides=list(STRIDES), insert_groups=[4], replace_groups=[1, 4]
    )
    params["ulsam"]["mini"]["model"].update(change)
    with pytest.raises(ParamsError, match=field):
        study_config(UlsamConfig, params, "ulsam", "mini")


def test_map_entropy_extremes() -> None:
    peaked = torch.zeros(1, 1, 3, 3)
    peaked[0, 0, 1, 1] = 1.0
    assert core.map_entropy(peaked) == pytest.approx(0.0, abs=1e-6)
    assert core.map_entropy(torch.full((2, 3, 3, 3), 1 / 9)) == pytest.approx(1.0)
    assert math.isclose(core.map_entropy(torch.full((1, 1, 1, 4), 0.25)), 1.0)


def _m(
    base: list[float], ins: list[float], r1: list[float], r4: list[float], r4_params: float
) -> Metrics:
    n = len(base)
    return Metrics(
        {
            "cluttered/baseline/acc": base,
            "cluttered/insert_g4/acc": ins,
            "cluttered/replace_g1/acc": r1,
            "cluttered/replace_g4/acc": r4,
            "cluttered/insert_g4/entropy": [0.9] * n,
            "cluttered/baseline/params": [50000.0] * n,
            "cluttered/replace_g4/params": [r4_params] * n,
            "cluttered/baseline/macs": [1.6e6] * n,
            "cluttered/replace_g4/macs": [1.2e6] * n,
        }
    )


def test_claims_hold_fail_and_are_inconclusive() -> None:
    checks = {c.id: c.check for c in STUDY.claims}
    good = _m(
        [0.80, 0.81, 0.82], [0.82, 0.83, 0.84], [0.79, 0.80, 0.81], [0.80, 0.81, 0.82], 33000.0
    )
    bad = _m(
        [0.80, 0.81, 0.82], [0.79, 0.80, 0.81], [0.82, 0.83, 0.84], [0.78, 0.79, 0.80], 33000.0
    )
    unsure = _m(
        [0.80, 0.81, 0.82], [0.84, 0.80, 0.82], [0.80, 0.83, 0.80], [0.82, 0.79, 0.82], 33000.0
    )
    for cid in ("replace_saves", "insert_helps", "subspaces_help"):
        assert checks[cid](good).verdict == "holds", cid
        assert checks[cid](bad).verdict == "does not hold", cid
        assert checks[cid](unsure).verdict == "inconclusive", cid
    # the cost half of (a) can fail on its own: a replacement that saves only 10 % of params
    cheap = _m(
        [0.80, 0.81, 0.82], [0.82, 0.83, 0.84], [0.79, 0.80, 0.81], [0.80, 0.81, 0.82], 45000.0
    )
    assert checks["replace_saves"](cheap).verdict == "does not hold"
