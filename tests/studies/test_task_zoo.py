"""task_zoo and merging_compare: the shared zoo loads back; the comparison tables are built."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from subspacelab import registry
from subspacelab.config import ParamsError, study_config
from subspacelab.merging.bench import load_zoo
from subspacelab.studies.concrete_merge.study import METHODS as CONCRETE_METHODS
from subspacelab.studies.dc_merge.study import CLAIMS_BY_ID as DC_CLAIMS
from subspacelab.studies.merging_compare.study import adapter_rows, budget_level, merge_rows
from subspacelab.studies.task_zoo.config import TaskZooConfig
from subspacelab.studies.task_zoo.study import STUDY
from tests.helpers import tiny_params
from tests.studies.merging_helpers import CHAIN, tiny_merging_chain


def test_config_rejects_too_many_samples() -> None:
    params = tiny_params(["task_zoo"])
    params["task_zoo"]["mini"]["data"]["n_train"] = 1700
    with pytest.raises(ParamsError, match="n_train"):
        study_config(TaskZooConfig, params, "task_zoo", "mini")


def test_compare_rows() -> None:
    dc = {"0/h1/lora": {"ta": {"abs": 0.8, "norm": 0.9, "alpha": 0.3, "time_s": 0.01}}}
    concrete = {
        "0/h1/fft": {
            "cta": {"abs": 0.7, "norm": 0.8, "lam": 0.1, "time_s": 2.0, "task_norm": [0.8]},
            "ta": {"abs": 0.6, "norm": 0.7, "lam": 0.1, "time_s": 0.1},
        },
        "0/h1/lora": {"ta": {"abs": 0.5, "norm": 0.5, "lam": 0.1, "time_s": 0.1}},
    }
    rows = merge_rows(dc, concrete, ["h1"], ["lora", "fft"])
    assert len(rows) == 5
    assert rows[2].startswith("| cta | h1 | fft | 0.700 | 0.800 | 0.10 |")
    assert rows[3].startswith("| ta | h1 | fft | 0.600") and rows[3].endswith("concrete_merge |")
    # the same method on the same slice: dc_merge's row only
    assert rows[4].startswith("| ta | h1 | lora | 0.800") and rows[4].endswith("dc_merge |")


def test_adapter_rows_claim_a_match_only_where_counts_show_it() -> None:
    def arms(lora: float, flora: float) -> dict:
        return {
            "linear_probe": {"acc": 0.4, "params": 0.0, "budget_frac": 0.0},
            "lora_0.02": {"acc": 0.5, "params": lora, "budget_frac": 0.02},
            "flora_0.02": {"acc": 0.6, "params": flora, "budget_frac": 0.02},
        }

    rows = adapter_rows({"0/a": arms(841.0, 489.0)})
    lora = next(r for r in rows if r.startswith("| lora_0.02 | 0.500"))
    assert lora.endswith("| 0.02 | no (1.72) |")
    assert next(r for r in rows if r.startswith("| linear_probe")).endswith("| — | — |")
    rows = adapter_rows({"0/a": arms(500.0, 489.0)})
    assert next(r for r in rows if r.startswith("| flora_0.02")).endswith("| yes (1.02) |")
    assert budget_level("flora_0.05") == 0.05 and budget_level("full_ft") is None


@pytest.mark.slow
def test_tiny_merging_chain(tmp_path: Path) -> None:
    """task_zoo, dc_merge, concrete_merge, flora and merging_compare in one workspace."""
    out = tiny_merging_chain(tmp_path)
    dc = out["dc_merge"][0]["metrics"]
    assert 0.0 <= dc["h1/lora/dc/abs"]["mean"] <= 1.0
    assert np.isfinite(dc["h2/lora/tsvm/dir_energy"]["mean"])
    assert dc["h1/lora/individual/norm"]["mean"] == pytest.approx(1.0)
    assert [c["id"] for c in out["dc_merge"][1]] == list(DC_CLAIMS)
    cm = out["concrete_merge"][0]["metrics"]
    for method in CONCRETE_METHODS:
        assert 0.0 <= cm[f"h1/fft/{method}/abs"]["mean"] <= 1.0
        assert cm[f"h1/fft/{method}/task_norm"]["n"] == 3  # 1 seed x 3 tasks
    assert cm["h1/fft/cta/steps"]["mean"] == 3  # the tiny profile's cta_steps, none skipped
    assert cm["h1/fft/cta/logit_std"]["mean"] > 0.0  # the mask moved off its start
    assert {c["verdict"] for c in out["concrete_merge"][1]} <= {
        "holds",
        "does not hold",
        "inconclusive",
    }
    assert len(out["flora"][1]) == 2
    ws = tmp_path / "ws"
    zoo = load_zoo(ws / "data/task_zoo/data", ws / "models/task_zoo/zoo", 0)
    assert zoo.tasks == ["identity", "hflip", "invert"] and zoo.lora_rank == 2
    lora = zoo.finetuned[("h1", "lora")][0]
    delta = lora["0.weight"] - zoo.base["0.weight"]
    assert int(torch.linalg.matrix_rank(delta)) <= 2  # LoRA task vectors: rank r
    assert out["merging_compare"][0]["metrics"]["merge_runs"]["mean"] > 0
    tables = (ws / "reports/merging_compare/tables.md").read_text()
    assert "merges_on_the_task_zoo" in tables and "adapters_and_their_budgets" in tables
    assert "| ta | h1 | fft |" in tables  # the FFT task-arithmetic row (concrete_merge's)
    # the miniature's report names its deviations from the spec (the full profile's has none)
    assert "deviations" in (ws / "reports/flora/tables.md").read_text()
    for slug in CHAIN:  # every declared curve written, its x then its y columns first
        for curve in registry.get_study(slug).curves:
            with (ws / f"reports/{slug}/curves/{curve.name}.csv").open() as fh:
                header, *rows = list(csv.reader(fh))
            assert header[: 1 + len(curve.ys)] == [curve.x, *curve.ys] and rows, (slug, curve)


def test_path_curve_one_row_per_alpha_and_every_series() -> None:
    from subspacelab.studies.task_zoo.study import PATH_ALPHAS, path_curve

    path = {"h1_fft": {a: [0.2 + a / 2, 0.4 + a / 2] for a in PATH_ALPHAS}}
    rows = path_curve(path)
    (curve,) = STUDY.curves
    assert [r["alpha"] for r in rows] == list(PATH_ALPHAS) and PATH_ALPHAS[0] == 0.0
    assert all(set(r) == {curve.x, *curve.ys} for r in rows)
    assert rows[-1]["h1_fft"] == pytest.approx(0.3 + PATH_ALPHAS[-1] / 2)
    assert math.isnan(rows[0]["h2_lora"])  # a head × regime the zoo lacks: an empty cell
    with pytest.raises(ValueError, match="unknown path series"):
        path_curve({"h3_fft": {}})


def test_adapter_curve_one_row_per_budget_level() -> None:
    from subspacelab.studies.merging_compare.study import STUDY as COMPARE
    from subspacelab.studies.merging_compare.study import adapter_curve

    def seed(shift: float) -> dict:
        return {
            "linear_probe": {"acc": 0.4 + shift},
            "full_ft": {"acc": 0.9 + shift},
            "lora_0.02": {"acc": 0.5 + shift},
            "flora_0.02": {"acc": 0.6 + shift},
            "lora_0.1": {"acc": 0.7 + shift},
        }

    rows = adapter_curve({"0/a": seed(0.0), "1/a": seed(0.1)})
    (curve,) = COMPARE.curves
    assert [r["budget"] for r in rows] == [0.02, 0.1]
    assert all(set(r) == {curve.x, *curve.ys} for r in rows)
    assert rows[0]["flora"] == pytest.approx(0.65) and rows[1]["full_ft"] == pytest.approx(0.95)
    assert math.isnan(rows[1]["flora"])  # no FLoRA arm at that level
