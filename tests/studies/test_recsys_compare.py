"""recsys_compare: the Pareto frontier, parameter counts and log check against known answers (the
whole chain runs in tests/test_studies_smoke.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from subspacelab.api import save_tensors, state_dict_cpu, write_json
from subspacelab.studies.optfs.core import GatedDeepFM
from subspacelab.studies.recsys_compare.study import (
    Point,
    ctr_table,
    deepfm_params,
    pareto_front,
    same_log,
    seed_rows,
)


def test_pareto_front_known_answer() -> None:
    params = [1.0, 2.0, 2.0, 3.0, 0.5, 1.0]
    auc = [0.50, 0.60, 0.55, 0.60, 0.40, 0.50]
    # (2, .55) loses to (2, .60); (3, .60) to (2, .60); the tied (1, .50) pair dominate neither
    assert pareto_front(params, auc) == [True, True, False, False, True, True]
    assert pareto_front([5.0], [0.7]) == [True]


def test_deepfm_params_counts_kept_rows_mlp_and_bias() -> None:
    field_of = np.repeat(np.arange(3), 4)
    kept = torch.zeros(12, dtype=torch.bool)
    kept[[0, 1, 5, 11]] = True
    backbone = GatedDeepFM(12, 3, 4, [5], "none", 0.5, field_of)
    gated = GatedDeepFM(12, 3, 4, [5], "value", 0.5, field_of)
    gated.hard = kept.float()
    state = state_dict_cpu(torch.nn.ModuleList([backbone, gated]))
    dense = (12 * 5 + 5) + (5 + 1) + 1  # MLP 12 -> 5 -> 1, then the bias
    assert deepfm_params(state, 0) == 12 * (4 + 1) + dense  # every id: embedding + first order
    assert deepfm_params(state, 1) == 4 * (4 + 1) + dense  # the gates are not stored


def test_seed_rows_names_the_missing_seed() -> None:
    doc = {"results": {"seed0": {"a": 1.0}, "seed1": {"a": 2.0}}}
    assert seed_rows(doc, [1, 0], "optfs", "seeds") == [{"a": 2.0}, {"a": 1.0}]
    with pytest.raises(ValueError, match=r"optfs's results have no seed\(s\) \[7\] \(it ran"):
        seed_rows(doc, [0, 7], "optfs", "seeds")


def _log(root: Path, study: str, x: np.ndarray, y: np.ndarray) -> Path:
    root.mkdir(parents=True)
    save_tensors(root / "log.safetensors", {"x": x, "y": y}, study=study, kind="data")
    write_json(root / "log.json", {"vocab": [5, 5], "splits": [4, 1, 1]})
    return root


def test_same_log_compares_the_logs_themselves(tmp_path: Path) -> None:
    x, y = np.arange(12).reshape(6, 2) % 5, np.array([0, 1, 0, 1, 1, 0], np.float32)
    ue = _log(tmp_path / "ue", "unified_embedding", x, y)
    assert same_log(ue, _log(tmp_path / "a", "optfs", x, y))
    assert not same_log(ue, _log(tmp_path / "b", "optfs", x, 1 - y))  # same shape, other labels


def test_ctr_table_orders_by_log_and_parameters() -> None:
    points = [
        Point("b", "big", "optfs", (30.0, 30.0), (0.7, 0.7)),
        Point("s", "small", "optfs", (10.0, 10.0), (0.6, 0.62)),
        Point("u", "ue", "unified_embedding", (5.0, 5.0), (0.5, 0.5)),
    ]
    groups = {"optfs": "optfs's", "unified_embedding": "unified_embedding's"}
    table = ctr_table(points, groups, {"b": True, "s": True, "u": True}).splitlines()
    assert [row.split(" | ")[1] for row in table[2:]] == ["small", "big", "ue"]
    assert "0.6100 ± 0.0141" in table[2]
