"""concrete_merge: claim checks (holds / does not hold / inconclusive), each with its random-mask
control, on hand-made per seed x task metrics."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from subspacelab.api import Metrics
from subspacelab.studies.concrete_merge.study import CLAIMS, STUDY, TRAJECTORIES, entropy_curve

BY_ID = {c.id: c for c in CLAIMS}
SEEDS, TASKS = 3, 4
N = SEEDS * TASKS


def _per(base: float, jitter: float = 0.002) -> list[float]:
    """Per seed x task values around ``base`` (deterministic small spread)."""
    return [base + jitter * ((i * 7) % 5 - 2) / 2 for i in range(N)]


def _m(**arms: Sequence[float]) -> Metrics:
    """Metrics of every concrete_merge arm (h1, fft); ``arms`` override the defaults."""
    task = {
        "ta": _per(0.85),
        "cta": _per(0.90),
        "cta_random": _per(0.86),
        "cta_discrete": _per(0.90),
        "cta_discrete_random": _per(0.85),
        "adamerging": _per(0.88),
        "concrete_adamerging": _per(0.90),
        "concrete_adamerging_random": _per(0.87),
    } | {k: list(v) for k, v in arms.items()}
    vals: dict[str, list[float]] = {}
    for arm, per in task.items():
        for field in ("norm", "abs"):
            vals[f"h1/fft/{arm}/task_{field}"] = per
            vals[f"h1/fft/{arm}/{field}"] = [
                sum(per[s * TASKS : (s + 1) * TASKS]) / TASKS for s in range(SEEDS)
            ]
    for arm in ("cta", "concrete_adamerging"):
        vals[f"h1/fft/{arm}/logit_std"] = [0.4, 0.5, 0.45]
        vals[f"h1/fft/{arm}/logit_absmax"] = [1.8, 1.9, 2.0]
        vals[f"h1/fft/{arm}/collapsed"] = [0.0, 0.0, 0.0]
    vals["h1/fft/ta/lam"] = [0.1, 0.1, 0.12]
    return Metrics(vals)


def test_claims_hold_when_the_learned_mask_beats_its_control() -> None:
    for cid, claim in BY_ID.items():
        assert claim.check(_m()).verdict == "holds", cid


def test_claims_fail_without_the_relation() -> None:
    assert BY_ID["cta_gt_ta"].check(_m(ta=_per(0.92))).verdict == "does not hold"
    bad_b = _m(adamerging=_per(0.93))
    assert BY_ID["concrete_adamerging_ge_adamerging"].check(bad_b).verdict == "does not hold"
    bad_c = _m(cta_discrete=_per(0.87), cta_discrete_random=_per(0.84))  # 3 pt apart
    assert BY_ID["discrete_vs_continuous_mask"].check(bad_c).verdict == "does not hold"
    low_c = _m(cta_discrete=_per(0.93), cta_discrete_random=_per(0.84))  # 3 pt above
    assert BY_ID["discrete_vs_continuous_mask"].check(low_c).verdict == "does not hold"


def test_a_mask_no_better_than_random_fails_every_claim() -> None:
    """A uniform mask (logits at 0): CTA = TA-like, CAdaM = AdaM, discrete ≈ continuous — every
    main relation passes, and only the random mask of the same density exposes it."""
    uniform = _m(
        ta=_per(0.85),
        cta=_per(0.86),
        cta_random=_per(0.87),
        cta_discrete=_per(0.86),
        cta_discrete_random=_per(0.865),
        adamerging=_per(0.88),
        concrete_adamerging=_per(0.88),
        concrete_adamerging_random=_per(0.885),
    )
    for cid, claim in BY_ID.items():
        res = claim.check(uniform)
        assert res.verdict == "does not hold", cid
        controls = [t for t in res.tests if "random" in t.name]
        assert controls and all(t.verdict == "does not hold" for t in controls), cid


def test_straddling_seeds_are_inconclusive() -> None:
    noisy = [0.90 + (0.04 if i % 2 else -0.035) for i in range(N)]  # mean +0.0025 over TA 0.9
    res = BY_ID["cta_gt_ta"].check(_m(ta=_per(0.90, 0.0), cta=noisy))
    assert res.verdict == "inconclusive"
    res = BY_ID["concrete_adamerging_ge_adamerging"].check(
        _m(concrete_adamerging=_per(0.90), concrete_adamerging_random=noisy)
    )
    assert res.verdict == "inconclusive"
    assert "logit_std" in res.measured


def test_entropy_curve_means_seeds_and_pads_stopped_runs() -> None:
    def run(scale: float, cta_steps: int) -> dict:
        return {
            "cta": {"entropy_curve": [scale * (3 - i) for i in range(cta_steps)]},
            "adamerging": {"entropy_curve": [scale, scale]},
            "concrete_adamerging": {"entropy_curve": [1.0], "meta_entropy_curve": [2.0, 1.0]},
        }

    results = {"0/h1/fft": run(1.0, 3), "1/h1/fft": run(2.0, 2), "0/h2/fft": run(9.0, 3)}
    rows = entropy_curve(results, [0, 1])
    (curve,) = STUDY.curves
    assert curve.ys == tuple(TRAJECTORIES)
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert all(set(r) == {curve.x, *curve.ys} for r in rows)
    assert rows[0]["cta"] == pytest.approx(4.5) and rows[2]["cta"] == pytest.approx(1.0)
    assert math.isnan(rows[2]["adamerging"]) and rows[1]["concrete_adamerging_meta"] == 1.0
    assert all(math.isnan(v) for k, v in entropy_curve({}, [0])[0].items() if k != "step")
