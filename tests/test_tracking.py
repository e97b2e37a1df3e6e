"""The MLflow spool: exactly-once replay, corrupt spool files, and the default async mode."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from subspacelab import registry, tracking
from subspacelab.tracking import SPOOL_DIR, replay
from tests.fake_study import FAKE, FAKE_PARAMS
from tests.helpers import REPO, make_workspace, run_chain

LAB = yaml.safe_load((REPO / "params.yaml").read_text())["lab"]


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(registry, "_REGISTRY", {"fake": FAKE})
    return make_workspace(tmp_path / "ws", {"lab": LAB, "fake": FAKE_PARAMS})


def _stage_runs(role: str = "stage") -> list:
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("fake")
    if exp is None:
        return []
    return [
        r
        for r in client.search_runs([exp.experiment_id])
        if r.data.tags.get("subspacelab.role") == role
    ]


def test_a_send_that_failed_after_create_run_is_completed_not_duplicated(
    ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_chain(ws, "fake")  # SUBSPACELAB_TRACKING=off: three runs wait in the spool
    real = MlflowClient.log_batch
    calls = {"n": 0}

    def flaky(self: MlflowClient, run_id: str, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # the second stage run: created, then the store goes away
            raise ConnectionError("store went away")
        real(self, run_id, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", flaky)
    assert replay(ws) == (2, 1, 0)
    assert len(_stage_runs()) == 3  # the failed one exists, unfinished
    assert replay(ws) == (1, 0, 0)
    assert replay(ws) == (0, 0, 0)
    runs = _stage_runs()
    assert sorted(r.data.tags["dvc_stage"] for r in runs) == [
        "fake_download",
        "fake_fit",
        "fake_report",
    ]
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert all(r.data.metrics["wall_s"] >= 0 and r.data.params for r in runs)
    assert len({r.data.tags[tracking.SPOOL_TAG] for r in runs}) == 3
    assert len(_stage_runs("chain")) == 1


def test_a_run_already_sent_is_not_sent_again(ws: Path) -> None:
    """A replay killed after a run was sent but before its spool file was removed."""
    run_chain(ws, "fake")
    spooled = sorted((ws / SPOOL_DIR).glob("*.json"))
    copies = [p.read_text() for p in spooled]
    assert replay(ws) == (3, 0, 0)
    for path, text in zip(spooled, copies, strict=True):
        path.write_text(text)  # the files come back, as if the unlink never happened
    assert replay(ws) == (3, 0, 0)
    assert len(_stage_runs()) == 3


def test_a_corrupt_spool_file_is_set_aside_and_the_rest_are_sent(
    ws: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_chain(ws, "fake")
    spool = ws / SPOOL_DIR
    (spool / "0-broken.json").write_text('{"study": "fake", "ste')
    (spool / "1-alien.json").write_text(json.dumps({"not": "a run"}))
    assert replay(ws) == (3, 0, 2)
    assert sorted(p.name for p in (spool / tracking.CORRUPT_DIR).iterdir()) == [
        "0-broken.json",
        "1-alien.json",
    ]
    assert "0-broken.json" in caplog.text and "1-alien.json" in caplog.text
    assert not list(spool.glob("*.json"))
    assert len(_stage_runs()) == 3


def test_records_spooled_before_spool_ids_still_replay(ws: Path) -> None:
    run_chain(ws, "fake")
    for path in (ws / SPOOL_DIR).glob("*.json"):
        data = json.loads(path.read_text())
        del data["spool_id"]
        path.write_text(json.dumps(data))
    assert replay(ws) == (3, 0, 0)
    assert len(_stage_runs()) == 3


@pytest.mark.slow
def test_async_mode_sends_every_run_once(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default: each stage starts a detached flush; together they send every run once."""
    monkeypatch.setenv("SUBSPACELAB_TRACKING", "async")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO / "src"), str(REPO)]))
    run_chain(ws, "fake")
    deadline = time.time() + 240
    while time.time() < deadline:
        if not list((ws / SPOOL_DIR).glob("*.json")) and len(_stage_runs()) == 3:
            break
        time.sleep(1)
    log = (ws / SPOOL_DIR / "flush.log").read_text()
    assert not list((ws / SPOOL_DIR).glob("*.json")), log
    runs = _stage_runs()
    assert sorted(r.data.tags["dvc_stage"] for r in runs) == [
        "fake_download",
        "fake_fit",
        "fake_report",
    ], log
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert len(_stage_runs("chain")) == 1


def test_a_worker_hands_back_its_unsent_runs_with_relative_artifacts(ws: Path) -> None:
    run_chain(ws, "fake")
    (ws / SPOOL_DIR / "0-broken.json").write_text("{")
    runs = tracking.spooled_runs(ws)
    assert [r.stage for r in runs] == ["fake_download", "fake_fit", "fake_report"]
    assert runs[0].artifacts == ["data/fake/download/_meta.json", "logs/fake_download.log"]
    assert "reports/fake/metrics.json" in runs[2].artifacts
    assert all(len(r.spool_id) == 32 for r in runs)


def test_model_files_whose_names_mlflow_refuses_are_still_logged(ws: Path) -> None:
    """MLflow's logged-model names may not hold ``. / : % " '``; model files often do."""
    run_chain(ws, "fake")
    for path in (ws / SPOOL_DIR).glob("*.json"):
        record = json.loads(path.read_text())
        for ref in record.get("model_files", []):
            ref["name"] = ref["name"].replace("cov_", "cov:lam0.5/")
        path.write_text(json.dumps(record))
    assert replay(ws) == (3, 0, 0)
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("fake")
    models = {m.name: m for m in client.search_logged_models([exp.experiment_id])}
    assert sorted(models) == ["cov_lam0_5_0", "cov_lam0_5_1"]
    assert models["cov_lam0_5_0"].tags["file"] == "cov:lam0.5/0"
