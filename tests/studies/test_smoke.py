"""Every registered study, whole chain, on its tiny profile (tests/tiny_params.yaml).

One test parametrised over the registry: a new study is covered the moment it is registered.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import yaml

from subspacelab import registry
from tests import golden
from tests.helpers import TINY, make_workspace, run_chain, tiny_params, upstream_studies

SLUGS = sorted(registry.studies())


def test_every_study_has_a_tiny_profile() -> None:
    tiny = yaml.safe_load(TINY.read_text()) or {}
    assert sorted(tiny) == SLUGS, "each study needs a section in tests/tiny_params.yaml"


@pytest.mark.parametrize("slug", SLUGS)
def test_study_metadata(slug: str) -> None:
    study = registry.get_study(slug)
    module = __import__(f"subspacelab.studies.{slug}", fromlist=["_"])
    if study.kind == "paper":
        assert study.arxiv in (module.__doc__ or ""), "the package docstring names the arXiv id"
        assert study.claims, "a paper's study without claims reports nothing"
    assert len({c.id for c in study.claims}) == len(study.claims)


@pytest.mark.slow
@pytest.mark.parametrize("slug", SLUGS)
def test_study_chain_runs_and_is_deterministic(slug: str, tmp_path: Path) -> None:
    upstream = upstream_studies(slug)
    params = tiny_params([*upstream, slug])
    first = make_workspace(tmp_path / "a", params)
    for other in upstream:  # studies whose outputs this one uses (a task zoo, models to probe)
        run_chain(first, other)
    metrics, claims = run_chain(first, slug)
    study = registry.get_study(slug)
    assert [c["id"] for c in claims] == [c.id for c in study.claims]
    for claim in claims:
        assert claim["verdict"] in ("holds", "does not hold", "inconclusive")
        assert claim["holds"] == (claim["verdict"] == "holds")
        assert claim["tests"], f"claim {claim['id']} is decided on no condition"
    assert metrics["metrics"], "no metrics"
    assert any((first / "reports" / slug / "plots").glob("*.png")), "no plots"
    # the same numbers as the golden run (tests/golden): a refactor moves none; values are
    # compared on the CPU kind that wrote them (rounding differs across kinds), names everywhere
    same_kind = golden.written_on(slug) == golden.machine()
    moved = golden.mismatches(slug, metrics["metrics"], values=same_kind)
    assert not moved, moved[:10]
    # same params and seeds, fresh workspace (the upstream outputs copied): identical metrics
    second = make_workspace(tmp_path / "b", params)
    for other in upstream:
        for kind in ("data", "models"):
            if (first / kind / other).is_dir():
                shutil.copytree(first / kind / other, second / kind / other)
    again, _ = run_chain(second, slug)
    assert _computed(again["metrics"]) == _computed(metrics["metrics"])


def _computed(metrics: dict) -> dict:
    """Every metric but wall-clock measurements (named ``*_time`` or ``*_seconds``), each value
    checked finite first: NaN == NaN passes a dict comparison when both are the same object
    (json's own NaN), so a diverged study would otherwise look deterministic."""
    for name, stat in metrics.items():
        assert all(math.isfinite(v) for v in stat["values"]), f"metric {name}: {stat['values']}"
    return {k: v for k, v in metrics.items() if not k.endswith(("_time", "_seconds"))}


def test_the_determinism_check_cannot_pass_on_nan() -> None:
    nan = {"acc": {"values": [float("nan")]}}
    with pytest.raises(AssertionError, match="metric acc"):
        _computed(nan)


def test_the_golden_check_catches_a_moved_number_and_follows_renames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    (tmp_path / "tiny_metrics").mkdir()
    (tmp_path / "renames").mkdir()
    (tmp_path / "tiny_metrics/demo.json").write_text(json.dumps({"acc": [0.5], "old": [1.0]}))
    (tmp_path / "renames/demo.json").write_text(json.dumps({"old": "a/new"}))
    monkeypatch.setattr(golden, "TINY_METRICS", tmp_path / "tiny_metrics")
    monkeypatch.setattr(golden, "RENAMES", tmp_path / "renames")
    same = {"acc": {"values": [0.5]}, "a/new": {"values": [1.0]}, "fit_time": {"values": [9.0]}}
    assert golden.mismatches("demo", same) == []
    moved = {**same, "acc": {"values": [0.5 + 1e-6]}}
    assert golden.mismatches("demo", moved) == ["acc: golden [0.5], now [0.500001]"]
    assert golden.mismatches("demo", {"acc": {"values": [0.5]}}) == ["missing a/new"]
    with pytest.raises(AssertionError, match=r"python -m tests\.golden other"):
        golden.mismatches("other", same)
    # written on another CPU kind: names compared, values not; the kind is not a metric
    (tmp_path / "tiny_metrics/demo.json").write_text(
        json.dumps({golden.MACHINE_KEY: "other-cpu", "acc": [0.5], "old": [1.0]})
    )
    assert golden.written_on("demo") == "other-cpu" != golden.machine()
    assert golden.mismatches("demo", moved, values=False) == []
    assert golden.mismatches("demo", moved) == ["acc: golden [0.5], now [0.500001]"]
    assert golden.mismatches("demo", {"acc": {"values": [0.5]}}, values=False) == ["missing a/new"]
