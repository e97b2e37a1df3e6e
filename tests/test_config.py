"""params.yaml validation: every bad value stops with a message naming the key."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest
import yaml

from subspacelab.config import ParamsError, build, lab_config, param, read_params, study_config
from tests.fake_study import FAKE_PARAMS, FakeConfig
from tests.helpers import REPO, deep_merge

LAB = yaml.safe_load((REPO / "params.yaml").read_text())["lab"]


def _params(**over: object) -> dict:
    return {"lab": dict(LAB), "fake": deep_merge(FAKE_PARAMS, over)}


def test_valid_config_is_typed() -> None:
    cfg = study_config(FakeConfig, _params(), "fake", "mini")
    assert isinstance(cfg, FakeConfig)
    assert cfg.data.n == 50 and cfg.seeds == [0, 1]


@pytest.mark.parametrize(
    ("over", "key", "hint"),
    [
        ({"mini": {"data": {"n": "many"}}}, "fake.mini.data.n", "n"),
        ({"mini": {"data": {"nn": 3}}}, "fake.mini.data.nn", "unknown key"),
        ({"mini": {"data": {"n": 0}}}, "fake.mini.data.n", ">= 1"),
        ({"mini": {"data": {"scale": -1.0}}}, "fake.mini.data.scale", "> 0"),
        ({"mini": {"seeds": []}}, "fake.mini.seeds", "at least 1"),
        ({"full": {"fit": {"ridge": -0.5}}}, "fake.full.fit.ridge", ">= 0"),
        ({"mini": {"data": {"scale": float("nan")}}}, "fake.mini.data.scale", "> 0"),
    ],
)
def test_bad_values_name_the_key(over: dict, key: str, hint: str) -> None:
    with pytest.raises(ParamsError) as err:
        study_config(FakeConfig, _params(**over), "fake", "mini")
    assert key in str(err.value)
    assert hint in str(err.value)


def test_missing_value_names_the_key() -> None:
    params = _params()
    del params["fake"]["mini"]["fit"]["ridge"]
    with pytest.raises(ParamsError, match=r"fake\.mini\.fit\.ridge: missing"):
        study_config(FakeConfig, params, "fake", "mini")


def test_unknown_profile_and_missing_section() -> None:
    with pytest.raises(ParamsError, match=r"fake\.tiny: unknown key"):
        study_config(FakeConfig, _params(tiny={}), "fake", "mini")
    with pytest.raises(ParamsError, match="fake: missing section"):
        study_config(FakeConfig, {"lab": LAB}, "fake", "mini")


@pytest.mark.parametrize(
    ("over", "key"),
    [
        ({"profile": "huge"}, "lab.profile"),
        ({"threads": 0}, "lab.threads"),
        ({"device": "tpu"}, "lab.device"),
        ({"colour": "red"}, "lab.colour"),
    ],
)
def test_lab_section(over: dict, key: str) -> None:
    with pytest.raises(ParamsError, match=key.replace(".", r"\.")):
        lab_config({"lab": {**LAB, **over}})


def test_read_params_errors(tmp_path) -> None:
    with pytest.raises(ParamsError, match="not found"):
        read_params(tmp_path / "params.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("lab: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        read_params(bad)


def test_repository_params_are_valid() -> None:
    from subspacelab.cli import check_params

    check_params(REPO)


@dataclass
class _Layer:
    width: int = param(ge=1)


@dataclass
class _Net:
    layers: list[_Layer] = field(default_factory=list)
    named: dict[str, _Layer] = field(default_factory=dict)


def test_lists_and_dicts_of_sections_are_validated() -> None:
    ok = build(_Net, {"layers": [{"width": 3}], "named": {"a": {"width": 2}}}, "net")
    assert ok.layers[0].width == 3 and ok.named["a"].width == 2
    with pytest.raises(ParamsError, match=r"net\.layers\[1\]\.width: got 0"):
        build(_Net, {"layers": [{"width": 3}, {"width": 0}], "named": {}}, "net")
    with pytest.raises(ParamsError, match=r"net\.named\.b\.width: got -1"):
        build(_Net, {"layers": [], "named": {"b": {"width": -1}}}, "net")


def test_full_inherits_from_mini_section_by_section() -> None:
    """full writes only its overrides: sections merge key by key, values, lists and maps of
    names are replaced whole, and what full leaves out is mini's."""
    from subspacelab.config import inherit

    mini = {"seeds": [0, 1], "train": {"epochs": 5, "lr": 0.1}, "per_class": {"a": 1, "b": 2}}
    over = {"seeds": [0], "train": {"epochs": 50}, "per_class": {"c": 3}}
    assert inherit(mini, over, _Schema) == {
        "seeds": [0],
        "train": {"epochs": 50, "lr": 0.1},
        "per_class": {"c": 3},
    }
    assert inherit(mini, {"train": None}, _Schema)["train"] is None
    assert inherit(mini, {}, _Schema) == mini


@dataclasses.dataclass
class _Train:
    epochs: int = 1
    lr: float = 0.1


@dataclasses.dataclass
class _Schema:
    seeds: list[int] = dataclasses.field(default_factory=list)
    train: _Train | None = None
    per_class: dict[str, int] = dataclasses.field(default_factory=dict)
