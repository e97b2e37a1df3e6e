"""concrete_merge: claim checks both ways and the tiny chain (with its task zoo)."""

from __future__ import annotations

from subspacelab.registry import Metrics
from subspacelab.studies.concrete_merge.study import CLAIMS

BY_ID = {c.id: c for c in CLAIMS}


def _m(**vals: float) -> Metrics:
    return Metrics({f"h1_{k}": [v] for k, v in vals.items()})


def test_claims_both_ways() -> None:
    good = _m(
        cta_norm=0.9,
        ta_norm=0.85,
        ta_lam=0.1,
        concrete_adamerging_norm=0.9,
        adamerging_norm=0.9,
        cta_abs=0.80,
        cta_discrete_abs=0.805,
    )
    bad = _m(
        cta_norm=0.85,
        ta_norm=0.85,
        ta_lam=0.1,
        concrete_adamerging_norm=0.89,
        adamerging_norm=0.9,
        cta_abs=0.80,
        cta_discrete_abs=0.79,
    )
    for cid in BY_ID:
        assert BY_ID[cid].check(good).holds, cid
        assert not BY_ID[cid].check(bad).holds, cid
