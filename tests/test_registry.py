"""The study registry's step context (save/load for its own study, seeds, per-seed metrics) and
metric lookup by pattern."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from subspacelab.config import LabConfig
from subspacelab.io import ModelFileError
from subspacelab.registry import Metrics, SeedMetrics, StepContext
from tests.fake_study import FAKE


def _ctx(tmp_path: Path, step: str, inputs: dict[str, Path], cfg: Any = None) -> StepContext:
    out = tmp_path / step
    out.mkdir(parents=True, exist_ok=True)
    return StepContext(
        study=FAKE,
        step=FAKE.step(step),
        cfg=cfg,
        lab=LabConfig(profile="mini"),
        root=tmp_path,
        out=out,
        inputs=inputs,
        device=torch.device("cpu"),
        progress=lambda _msg: None,
    )


def test_save_and_load_tensors_and_models_for_the_own_study(tmp_path: Path) -> None:
    writer = _ctx(tmp_path, "download", {})
    path = writer.save("seed0/features", {"x": torch.arange(3.0)}, kind="features")
    assert path == tmp_path / "download" / "seed0" / "features.safetensors"
    net = nn.Linear(2, 2)
    writer.save_model("net", net)
    reader = _ctx(tmp_path, "fit", {"download": tmp_path / "download"})
    assert torch.equal(reader.load("seed0/features", kind="features")["x"], torch.arange(3.0))
    other = reader.load_model(nn.Linear(2, 2), "net", step="download")
    assert torch.equal(other.weight, net.weight)
    with pytest.raises(ModelFileError, match="holds 'features'"):
        reader.load("seed0/features", kind="model")
    with pytest.raises(KeyError, match="no input 'fit'"):
        reader.load("net", step="fit")
    for bad in ("../escape", "/abs", "a/../b", ""):
        with pytest.raises(ValueError, match="want names like"):
            writer.save(bad, {"x": torch.zeros(1)})


def test_another_study_s_file_is_refused(tmp_path: Path) -> None:
    from subspacelab.io import save_tensors

    (tmp_path / "up").mkdir()
    save_tensors(tmp_path / "up" / "z.safetensors", {"x": torch.zeros(1)}, study="gcr", kind="d")
    reader = _ctx(tmp_path, "fit", {"download": tmp_path / "up"})
    with pytest.raises(ModelFileError, match="written by study 'gcr'"):
        reader.load("z")


def test_seeded_seeds_everything_before_each_body(tmp_path: Path) -> None:
    class Cfg:
        seeds = (3, 4)

    ctx = _ctx(tmp_path, "download", {}, Cfg())
    draws = [(seed, torch.rand(1).item(), random.random()) for seed in ctx.seeded()]
    torch.manual_seed(4)
    random.seed(4)
    assert [d[0] for d in draws] == [3, 4]
    assert draws[1][1:] == (torch.rand(1).item(), random.random())


def test_seed_metrics_collects_one_value_per_seed_and_refuses_ragged_records() -> None:
    per_seed = SeedMetrics()
    per_seed.record({"a/acc": 0.5, "a/loss": 1})
    per_seed.record({"a/acc": 0.7, "a/loss": 2})
    assert per_seed.as_dict() == {"a/acc": [0.5, 0.7], "a/loss": [1.0, 2.0]}
    with pytest.raises(ValueError, match="other metrics"):
        per_seed.record({"a/acc": 0.1})


def test_metrics_select_and_family_by_pattern() -> None:
    m = Metrics({"h1/ties/abs": [1.0], "h1/ta/abs": [2.0], "h1/ta/norm": [3.0], "h2/ta/abs": 4.0})
    assert list(m.select("h1/*/abs")) == ["h1/ta/abs", "h1/ties/abs"]
    assert list(m.select("**/abs")) == ["h1/ta/abs", "h1/ties/abs", "h2/ta/abs"]
    assert list(m.select("*/abs")) == []  # one level only
    assert {k: s.mean for k, s in m.family("h1/{arm}/abs").items()} == {"ta": 2.0, "ties": 1.0}
    with pytest.raises(KeyError, match="no metric matches"):
        m.family("h3/{arm}/abs")
    with pytest.raises(ValueError, match="exactly one"):
        m.family("{a}/{b}/abs")
