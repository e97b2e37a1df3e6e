"""unified_embedding: schemes at equal budgets, the shared tower, the decomposition probe, claims
decided three ways on hand-made metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from subspacelab.api import DownloadError, Metrics, ParamsError, load_tensors, sha256_file
from subspacelab.recsys import multiplexed
from subspacelab.runner import run_step
from subspacelab.studies.unified_embedding import core
from subspacelab.studies.unified_embedding.study import STUDY
from tests.helpers import make_workspace, tiny_params

VOCAB = [10, 50, 400, 3000, 20]


def test_schemes_spend_the_same_embedding_budget() -> None:
    schemes = core.build_schemes(VOCAB, 256, 8, large_fields=2, ue_chunks=2, ue_tables=2)
    assert set(schemes) == set(core.SCHEMES)
    for name in ("multiplexed", "unified"):
        assert schemes[name].n_params == 256 * 8
    for name in ("per_field_equal", "per_field_vocab"):  # floored shares: never above budget
        assert 256 * 8 - 5 * 8 <= schemes[name].n_params <= 256 * 8
    assert schemes["unified"].widths == (8, 8, 16, 16, 8)  # the two largest fields get 2 chunks
    with pytest.raises(ValueError, match="divisible"):
        core.build_schemes(VOCAB, 255, 8, 2, 2, 2)


def test_tower_is_the_same_for_every_equal_width_scheme() -> None:
    schemes = core.build_schemes(VOCAB, 64, 4, 1, 2, 2)
    nets = {n: core.CTRModel(s, 4, [8], 0.01) for n, s in schemes.items()}
    assert nets["per_field_equal"].dense_params() == nets["multiplexed"].dense_params()
    # unified: the widened fields' projections take 4 more inputs each (one field, 4 x 4)
    assert nets["unified"].dense_params() == nets["multiplexed"].dense_params() + 16
    x = np.random.default_rng(0).integers(0, 10, size=(7, 5))
    out = nets["unified"](torch.from_numpy(schemes["unified"].lookup_rows(x)))
    assert out.shape == (7,)


def test_shared_row_share_known_cases() -> None:
    x = np.stack([np.arange(40)] * 3, axis=1)
    assert core.shared_row_share(multiplexed(3, 1, 4), x) == 1.0
    roomy = core.build_schemes([40] * 3, 3 * 4096, 4, 0, 1, 1)["per_field_equal"]
    assert core.shared_row_share(roomy, x) < 0.05


def test_collision_cosine_is_one_for_identical_projections_and_lower_for_orthogonal() -> None:
    torch.manual_seed(0)
    scheme = core.build_schemes([30, 30], 8, 4, 0, 1, 1)["multiplexed"]
    net = core.CTRModel(scheme, 4, [4], 1.0)
    x = np.stack([np.arange(30), np.arange(30)], axis=1)
    same = [torch.eye(4), torch.eye(4)]
    assert core.collision_cosine(net, scheme, x, same) == pytest.approx(1.0)
    split = [torch.diag(torch.tensor([1.0, 1, 0, 0])), torch.diag(torch.tensor([0.0, 0, 1, 1]))]
    assert core.collision_cosine(net, scheme, x, split) < 0.5
    per_field = core.build_schemes([30, 30], 8, 4, 0, 1, 1)["per_field_equal"]
    with pytest.raises(ValueError, match="multiplexed"):
        core.collision_cosine(net, per_field, x, same)


def test_projections_taken_before_training_stay_the_initial_ones() -> None:
    """R4 compares trained projections with the initial ones: the snapshot must not follow
    the optimiser's in-place updates (it did, and R4 measured a gap of exactly 0)."""
    torch.manual_seed(0)
    scheme = core.build_schemes([30, 30], 8, 4, 0, 1, 1)["multiplexed"]
    net = core.CTRModel(scheme, 4, [4], 1.0)
    before = net.projections()
    with torch.no_grad():
        net.proj.add_(1.0)
    after = net.projections()
    assert all(not torch.equal(b, a) for b, a in zip(before, after, strict=True))


def _metrics(gain: float, spread: float, cos_gap: float) -> Metrics:
    """Two budgets, three seeds: multiplexed = others + gain (+ seed noise of size spread)."""
    noise = np.array([1.0, -1.0, 0.5]) * spread
    m: dict[str, list[float]] = {}
    for i, b in enumerate((64, 256)):
        base = 0.70 + 0.02 * i + np.array([0.01, -0.02, 0.0])
        m[f"multiplexed/{b}/auc"] = list(base + gain + noise)
        for s in ("per_field_equal", "per_field_vocab", "unified"):
            m[f"{s}/{b}/auc"] = list(base)
        for s in core.SCHEMES:
            m[f"{s}/{b}/params"] = [float(b * 8 + 100)] * 3
        m[f"multiplexed/{b}/cos_trained"] = list(0.5 + cos_gap + 0.01 * noise)
        m[f"multiplexed/{b}/cos_random"] = [0.5] * 3
    return Metrics(m)


@pytest.mark.parametrize(
    ("gain", "spread", "verdict"),
    [(0.01, 0.001, "holds"), (-0.01, 0.001, "does not hold"), (0.001, 0.01, "inconclusive")],
)
def test_auc_claims_three_ways(gain: float, spread: float, verdict: str) -> None:
    m = _metrics(gain, spread, -0.1)
    for claim in STUDY.claims[:3]:
        assert claim.check(m).verdict == verdict, claim.id


def test_decomposition_claim_can_fail() -> None:
    r4 = STUDY.claims[3]
    assert r4.check(_metrics(0.01, 0.001, -0.1)).verdict == "holds"
    assert r4.check(_metrics(0.01, 0.001, 0.1)).verdict == "does not hold"


def _criteo_file(path: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    with path.open("w") as fh:
        for i in range(n):
            ints = [str(v) if v >= 0 else "" for v in rng.integers(-1, 50, 13)]
            cats = [f"{v:08x}" for v in rng.integers(0, 2**32, 26)]
            cats[3] = ""
            fh.write("\t".join([str(i % 2), *ints, *cats]) + "\n")


def test_full_data_step_reads_a_pinned_criteo_file(tmp_path: Path) -> None:
    params = tiny_params(["unified_embedding"])
    full = params["unified_embedding"]["full"]
    full["data"].update(n_train=120, n_val=100, n_test=100)
    params["lab"] = {**params["lab"], "profile": "full", "device": "cpu"}
    ws = make_workspace(tmp_path / "ws", params)
    placed = ws / "data/criteo/train.txt"
    placed.parent.mkdir(parents=True)
    _criteo_file(placed, 330)
    with pytest.raises(ParamsError, match=r"log\.sha256"):  # refused before any compute
        run_step(ws, "unified_embedding", "data")
    full["data"]["log"] = {**full["data"]["log"], "sha256": "0" * 64}
    make_workspace(ws, params)
    with pytest.raises(DownloadError, match="mismatch"):
        run_step(ws, "unified_embedding", "data")
    assert placed.is_file(), "a hand-placed file is never deleted"
    full["data"]["log"] = {**full["data"]["log"], "sha256": sha256_file(placed)}
    make_workspace(ws, params)
    run_step(ws, "unified_embedding", "data")
    t, _ = load_tensors(
        ws / "data/unified_embedding/data/log.safetensors", study="unified_embedding"
    )
    assert tuple(t["x"].shape) == (320, 39) and int(t["x"].min()) >= 0
    assert set(t["y"].unique().tolist()) == {0.0, 1.0}


def test_budget_curves_one_row_per_budget() -> None:
    from subspacelab.studies.unified_embedding.study import budget_curves

    budgets = [16, 64]
    metrics: dict[str, list[float] | float] = {
        f"{s}/{b}/auc": [0.6 + i / 100 + b / 1000, 0.62 + i / 100 + b / 1000]
        for i, s in enumerate(core.SCHEMES)
        for b in budgets
    }
    for b in budgets:
        metrics[f"multiplexed/{b}/cos_trained"] = [0.1, 0.2]
        metrics[f"multiplexed/{b}/cos_random"] = [0.3, 0.4]
    curves = budget_curves(metrics, budgets)
    assert sorted(curves) == sorted(c.name for c in STUDY.curves)
    for curve in STUDY.curves:
        rows = curves[curve.name]
        assert [r["rows"] for r in rows] == budgets
        assert all(set(r) == {curve.x, *curve.ys} for r in rows)
    assert curves["auc_vs_budget"][1]["multiplexed"] == pytest.approx(0.61 + 0.02 + 0.064)
    assert curves["collision_cosine_vs_budget"][0]["random"] == pytest.approx(0.35)
