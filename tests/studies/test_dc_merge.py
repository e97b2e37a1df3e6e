"""dc_merge: claim checks both ways, the merge runner on a tiny zoo, the bench helpers."""

from __future__ import annotations

import pytest
import torch

from subspacelab.api import Metrics
from subspacelab.merging.bench import (
    TRANSFORMS,
    apply_transform,
    collect_results,
    normalised,
    pixel_permutation,
)
from subspacelab.studies.dc_merge.study import CLAIMS_BY_ID

N = 6  # 2 seeds x 3 tasks


def _m(**norms: float | list[float]) -> Metrics:
    """Per seed x task normalised accuracy (a float: the same on every task, with a small
    deterministic spread) and the per-seed means the claims show beside the tests."""
    vals: dict[str, list[float]] = {}
    for k, v in norms.items():
        per = [v + 0.001 * (i % 3 - 1) for i in range(N)] if isinstance(v, float) else v
        vals[f"h1/lora/{k}/task_norm"] = per
        vals[f"h1/lora/{k}/norm"] = [sum(per[:3]) / 3, sum(per[3:]) / 3]
    return Metrics(vals)


def test_claims_three_ways() -> None:
    good = _m(dc=0.92, tsvm=0.921, ta=0.90, ties=0.89, dc_nosmooth=0.91)
    bad = _m(dc=0.90, tsvm=0.92, ta=0.91, ties=0.93, dc_nosmooth=0.95)
    for cid in ("dc_ge_tsvm_h1", "svd_beats_ta_ties_h1", "smoothing_h1"):
        assert CLAIMS_BY_ID[cid].check(good).verdict == "holds", cid
        assert CLAIMS_BY_ID[cid].check(bad).verdict == "does not hold", cid
    # −0.5 pt is the tolerance: 0.6 pt below on every seed x task fails
    assert CLAIMS_BY_ID["dc_ge_tsvm_h1"].check(_m(dc=0.914, tsvm=0.92)).verdict == "does not hold"
    # one arm of four below: the SVD claim fails
    one_bad = _m(dc=0.92, tsvm=0.921, ta=0.925, ties=0.89)
    assert CLAIMS_BY_ID["svd_beats_ta_ties_h1"].check(one_bad).verdict == "does not hold"
    # gains of +3 pt on some seed x task and −3 pt on others: the seeds cannot decide
    straddle = [0.92 + (0.03 if i % 2 else -0.028) for i in range(N)]
    unsure = _m(dc=0.92, dc_nosmooth=straddle)
    assert CLAIMS_BY_ID["smoothing_h1"].check(unsure).verdict == "inconclusive"


def test_transforms_and_normalised() -> None:
    x = torch.arange(64.0).reshape(1, 64) / 64
    perm = pixel_permutation(0)
    assert torch.equal(apply_transform("identity", x, perm), x)
    assert torch.equal(apply_transform("hflip", apply_transform("hflip", x, perm), perm), x)
    assert torch.equal(apply_transform("permute", x, perm)[0], x[0, torch.as_tensor(perm)])
    rot = apply_transform("rot90", x, perm)
    assert torch.equal(rot.reshape(8, 8), torch.rot90(x.reshape(8, 8), 1, (0, 1)))
    assert len({tuple(apply_transform(t, x, perm)[0].tolist()) for t in TRANSFORMS}) == 8
    with pytest.raises(KeyError, match="unknown task transform"):
        apply_transform("blur", x, perm)
    assert normalised([0.5, 0.9], [1.0, 0.9]) == pytest.approx(0.75)


def test_collect_orders_by_seed() -> None:
    results = {
        "1/h1/lora": {"ta": {"norm": 0.2, "time_s": 0.5}},
        "0/h1/lora": {"ta": {"norm": 0.1, "time_s": 0.4}},
    }  # wall times are not metrics: a rerun must reproduce the metrics exactly
    assert collect_results(results, [0, 1]) == {"h1/lora/ta/norm": [0.1, 0.2]}
    per_task = {
        "1/h1/lora": {"ta": {"task_norm": [0.3, 0.4]}},
        "0/h1/lora": {"ta": {"task_norm": [0.1, 0.2]}},
    }  # per seed x task lists, seed-major
    assert collect_results(per_task, [0, 1]) == {"h1/lora/ta/task_norm": [0.1, 0.2, 0.3, 0.4]}


def test_alpha_curve_means_seeds_and_leaves_absent_heads_empty() -> None:
    import math

    from subspacelab.studies.dc_merge.study import STUDY, SWEPT, alpha_curve

    alphas = [0.1, 0.5, 1.0]
    results = {
        f"{s}/h1/lora": {m: {"abs": 0.5, "val_curve": [0.1 * s, 0.2 + s, 0.3]} for m in SWEPT}
        for s in (0, 1)
    }
    rows = alpha_curve(results, [0, 1], "h1", alphas)
    assert [r["alpha"] for r in rows] == alphas
    assert rows[0]["dc"] == pytest.approx(0.05) and rows[1]["tsvm"] == pytest.approx(0.7)
    assert all(set(r) == {"alpha", *SWEPT} for r in rows)
    assert {c.name: c.ys for c in STUDY.curves} == {
        "val_acc_vs_alpha_h1": SWEPT,
        "val_acc_vs_alpha_h2": SWEPT,
    }
    assert all(math.isnan(r["ta"]) for r in alpha_curve(results, [0, 1], "h2", alphas))


def test_collect_results_leaves_the_validation_sweep_out_of_the_metrics() -> None:
    results = {"0/h1/lora": {"ta": {"abs": 0.5, "time_s": 1.0, "val_curve": [0.1, 0.2]}}}
    assert collect_results(results, [0]) == {"h1/lora/ta/abs": [0.5]}
