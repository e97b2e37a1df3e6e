"""What a study's report step writes (subspacelab.report): the headline DVC compares and the
declared curves, on the fake three-step study."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from subspacelab import registry
from subspacelab.registry import HEADLINE_MAX
from subspacelab.report import headline
from subspacelab.runner import run_step
from tests.fake_study import FAKE, FAKE_PARAMS
from tests.helpers import REPO, make_workspace, run_chain

LAB = yaml.safe_load((REPO / "params.yaml").read_text())["lab"]


@pytest.fixture
def fake_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", {"fake": FAKE})


@pytest.fixture
def ws(tmp_path: Path, fake_registry: None) -> Path:
    return make_workspace(tmp_path / "ws", {"lab": LAB, "fake": FAKE_PARAMS})


def test_headline_holds_means_and_verdict_counts_only(ws: Path) -> None:
    metrics, claims = run_chain(ws, "fake")
    headline = json.loads((ws / "reports/fake/headline.json").read_text())
    (claim,) = claims
    assert headline == {
        "verdicts": {"holds": 0, "does_not_hold": 0, "inconclusive": 1},
        "claims": {claim["id"]: {"verdict": "inconclusive", "trace": claim["tests"][0]["mean"]}},
        "metrics": {"trace": metrics["metrics"]["trace"]["mean"]},
    }


def _doc(n: int) -> dict[str, Any]:
    return {"metrics": {f"m{i}": {"mean": float(i)} for i in range(n)}}


def test_headline_keeps_a_large_study_to_its_claims_or_named_metrics() -> None:
    claims = [
        {"id": "a", "verdict": "holds", "tests": [{"name": "gap", "mean": 0.5}]},
        {"id": "b", "verdict": "does not hold", "tests": [{"name": "x", "mean": math.inf}]},
    ]
    small = headline(FAKE, _doc(HEADLINE_MAX), claims)
    assert len(small["metrics"]) == HEADLINE_MAX
    assert small["claims"] == {
        "a": {"verdict": "holds", "gap": 0.5},
        "b": {"verdict": "does not hold", "x": None},
    }
    assert small["verdicts"] == {"holds": 1, "does_not_hold": 1, "inconclusive": 0}
    assert headline(FAKE, _doc(HEADLINE_MAX + 1), claims)["metrics"] == {}
    named = dataclasses.replace(FAKE, headline=("m1", "m2*"))
    expected = ["m1", "m2", *(f"m2{i}" for i in range(10))]
    assert list(headline(named, _doc(30), claims)["metrics"]) == expected


def _curve_study(returned: dict[str, list[dict[str, float]]]) -> registry.Study:
    def report(ctx: registry.StepContext) -> registry.Report:
        return registry.Report(metrics={"x": 1.0}, curves=returned)

    return registry.Study(
        **{
            **FAKE.__dict__,
            "steps": (*FAKE.steps[:-1], registry.Step("report", report, kind="report")),
            "claims": (),
            "kind": "comparison",
            "curves": (registry.Curve("loss_vs_d", x="d", y=("train", "test")),),
        }
    )


def test_declared_curves_are_written_as_csv(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"d": 1, "train": 0.5, "test": 0.25}, {"d": 2, "train": 0.125, "test": float("nan")}]
    monkeypatch.setattr(registry, "_REGISTRY", {"fake": _curve_study({"loss_vs_d": rows})})
    run_chain(ws, "fake")
    text = (ws / "reports/fake/curves/loss_vs_d.csv").read_text()
    assert text == "d,train,test\n1,0.5,0.25\n2,0.125,\n"


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        ({}, "missing: \\['loss_vs_d'\\]"),
        ({"loss_vs_d": [{"d": 1, "train": 0.5}]}, "lacks columns \\['test'\\]"),
        ({"loss_vs_d": [{"d": 1, "train": 0.5, "test": "x"}]}, "non-numbers in \\['test'\\]"),
        ({"loss_vs_d": [], "other": []}, "undeclared: \\['other'\\]"),
    ],
)
def test_bad_curves_stop_the_report(
    ws: Path, monkeypatch: pytest.MonkeyPatch, returned: dict, message: str
) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", {"fake": _curve_study(returned)})
    run_step(ws, "fake", "download")
    run_step(ws, "fake", "fit")
    with pytest.raises(ValueError, match=message):
        run_step(ws, "fake", "report")
    assert not (ws / "reports/fake").exists()


def test_curve_names_are_checked() -> None:
    with pytest.raises(ValueError, match="curve names"):
        registry.Study(**{**FAKE.__dict__, "curves": (registry.Curve("../x", x="a", y="b"),)})
