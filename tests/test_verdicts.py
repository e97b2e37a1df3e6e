"""Verdicts on paired per-seed differences with a 95 % interval (subspacelab.verdicts)."""

from __future__ import annotations

import math

import pytest

from subspacelab.verdicts import (
    ClaimResult,
    Condition,
    Stat,
    combine,
    decide,
    every,
    gap,
    mean_interval,
    on_mean,
    ratio,
)


def test_interval_matches_the_t_table() -> None:
    # values 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.302653 -> half-width 4.302653 / sqrt(3)
    mean, lo, hi = mean_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)
    assert mean == 2.0
    assert lo == pytest.approx(2 - half, rel=1e-9) and hi == pytest.approx(2 + half, rel=1e-9)


def test_single_value_has_no_interval_and_is_inconclusive() -> None:
    _, lo, hi = mean_interval([0.7])
    assert lo == -math.inf and hi == math.inf
    assert on_mean("x", [0.7], ">=", 0.5).verdict == "inconclusive"


def test_paired_difference_resolves_what_unpaired_means_cannot() -> None:
    # two arms whose seed effect (±5) dwarfs a consistent +0.5 gain: paired, it holds
    base = [70.0, 80.0, 75.0, 65.0, 85.0]
    arm = [b + 0.5 + 0.01 * i for i, b in enumerate(base)]
    d = gap(arm, base)
    assert d.values == pytest.approx((0.5, 0.51, 0.52, 0.53, 0.54))
    assert on_mean("arm - base", d, ">", 0.3).verdict == "holds"
    # a 1-point margin is beyond every seed's gain: the interval lies below it
    assert on_mean("arm - base", d, ">=", 1.0).verdict == "does not hold"


def test_straddling_interval_is_inconclusive() -> None:
    d = Stat((0.9, -0.5, 1.4, 0.1))  # mean 0.475, wide interval around 0
    c = on_mean("gap", d, ">", 0.0)
    assert c.verdict == "inconclusive"
    assert c.resolution > 0.475
    assert on_mean("gap", d, "<", 0.0).verdict == "inconclusive"


@pytest.mark.parametrize(
    ("op", "threshold", "verdict"),
    [
        (">", 0.0, "holds"),
        (">=", 2.0, "holds"),  # zero spread: the interval is the point 2
        (">", 2.0, "does not hold"),
        ("<", 3.0, "holds"),
        ("<=", 2.0, "holds"),
        ("<", 2.0, "does not hold"),
        ("<=", 1.0, "does not hold"),
    ],
)
def test_directions_and_boundaries(op: str, threshold: float, verdict: str) -> None:
    assert on_mean("x", [2.0, 2.0, 2.0], op, threshold).verdict == verdict  # type: ignore[arg-type]


def test_every_is_an_invariant() -> None:
    assert every("dev", [1e-5, 2e-4], "<=", 1e-3).verdict == "holds"
    assert every("dev", [1e-5, 2e-2], "<=", 1e-3).verdict == "does not hold"
    assert every("dev", [1e-5], "<=", 1e-3).resolution == 0.0


def test_claim_combines_its_conditions() -> None:
    ok = on_mean("a", [1.0, 1.1, 0.9], ">", 0.0)
    unsure = on_mean("b", [1.0, -1.0, 0.5], ">", 0.0)
    bad = on_mean("c", [-1.0, -1.1, -0.9], ">", 0.0)
    assert decide(ok).verdict == "holds" and decide(ok).holds
    assert decide(ok, unsure).verdict == "inconclusive" and not decide(ok, unsure).holds
    assert decide(ok, unsure, bad).verdict == "does not hold"
    assert combine(["holds", "holds"]) == "holds"
    with pytest.raises(ValueError, match="at least one"):
        combine([])


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="equal lengths"):
        gap([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="non-finite"):
        on_mean("x", [1.0, float("nan")], ">", 0.0)
    with pytest.raises(ValueError, match="op must be"):
        Condition("x", (1.0,), "=>", 0.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Condition"):
        ClaimResult(())
    with pytest.raises(ValueError, match="zero"):
        ratio([1.0], [0.0])


def test_constant_baseline_and_ratio() -> None:
    assert gap([1.0, 2.0], 0.5).values == (0.5, 1.5)
    assert ratio([2.0, 3.0], [1.0, 2.0]).values == (2.0, 1.5)


def test_json_form_carries_interval_and_verdict() -> None:
    doc = on_mean("x", [1.0, 2.0, 3.0], ">", -1.0).to_json()
    assert doc["verdict"] == "holds" and doc["n"] == 3 and doc["low"] < 2 < doc["high"]
    single = on_mean("x", [1.0], ">", 0.0).to_json()
    assert single["low"] is None and single["high"] is None
