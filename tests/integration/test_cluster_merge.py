"""The pieces of the scale-out that need no server: merging a worker's result into the lab's
workspace, and the runner's view of its rank under multi-process training."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.cluster import merge_result
from subspacelab import registry
from subspacelab.config import lab_config
from subspacelab.runner import process_rank
from subspacelab.tracking import SPOOL_DIR, RunRecord, replay
from tests.fake_study import FAKE, FAKE2
from tests.helpers import LAB


@pytest.fixture(autouse=True)
def _fake_studies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", {"fake": FAKE, "fake2": FAKE2})


def _repo(root: Path) -> str:
    root.mkdir()
    who = ("-c", "user.email=t@t", "-c", "user.name=t")
    for cmd in (["git", "init", "-q"], ["git", *who, "commit", "-qm", "x", "--allow-empty"]):
        subprocess.run(cmd, cwd=root, check=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, check=True, capture_output=True, text=True
    ).stdout.strip()


def _result(slug: str, commit: str, claims: bytes, md5: str | None = None) -> dict[str, Any]:
    rel = f"reports/{slug}/claims.json"
    entry = {"cmd": f"python -m stages report {slug}", "outs": [{"path": rel, "hash": "md5"}]}
    entry["outs"][0]["md5"] = md5 or hashlib.md5(claims).hexdigest()
    return {
        "study": slug,
        "commit": commit,
        "lock": {f"{slug}_report": entry},
        "files": {rel: base64.b64encode(claims).decode(), f"reports/{slug}/plots": None},
    }


def test_merge_adds_each_study_entries_and_keeps_the_others(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    commit = _repo(root)
    other = {"cmd": "python -m stages fit other", "outs": [{"path": "models/other/fit"}]}
    (root / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"o": other}}))
    merge_result(root, _result("fake", commit, b"[]"))
    merge_result(root, _result("fake2", commit, b"[1]"))
    stages = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    assert set(stages) == {"o", "fake_report", "fake2_report"}
    assert stages["o"] == other
    assert (root / "reports/fake2/claims.json").read_bytes() == b"[1]"
    assert (root / "reports/fake/plots").is_dir()


def test_merge_refuses_a_result_of_another_commit(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    _repo(root)
    with pytest.raises(RuntimeError, match="redeploy"):
        merge_result(root, _result("fake", "0" * 40, b"[]"))
    assert not (root / "dvc.lock").exists()


def test_merge_refuses_a_report_that_does_not_match_its_lock_entry(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    commit = _repo(root)
    with pytest.raises(RuntimeError, match="does not match"):
        merge_result(root, _result("fake", commit, b"[]", md5="0" * 32))
    assert not (root / "dvc.lock").exists()


@pytest.mark.parametrize(
    "rel",
    [
        "../evil.json",
        "/tmp/evil.json",
        "reports/fake/../../dvc.yaml",
        "reports/fake2/claims.json",  # another study's report
        "params.yaml",
        "reports/fake/..\\..\\evil.json",
    ],
)
def test_merge_confines_worker_paths_to_the_study(tmp_path: Path, rel: str) -> None:
    root = tmp_path / "ws"
    commit = _repo(root)
    result = _result("fake", commit, b"[]")
    result["files"][rel] = base64.b64encode(b"pwned").decode()
    with pytest.raises(RuntimeError, match="outside its outputs"):
        merge_result(root, result)
    assert not (root / "dvc.lock").exists() and not (root / "reports").exists()
    assert not (tmp_path / "evil.json").exists()


def test_merge_refuses_other_stages_and_outputs(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    commit = _repo(root)
    result = _result("fake", commit, b"[]")
    result["lock"]["fake2_fit"] = {"cmd": "x", "outs": [{"path": "models/fake2/fit"}]}
    with pytest.raises(RuntimeError, match=r"dvc.lock entries of \['fake2_fit'\]"):
        merge_result(root, result)
    result = _result("fake", commit, b"[]")
    result["lock"]["fake_fit"] = {"cmd": "x", "outs": [{"path": "models/../../outside"}]}
    with pytest.raises(RuntimeError, match="outside its outputs"):
        merge_result(root, result)
    assert not (root / "dvc.lock").exists()


def _run(**over: Any) -> dict[str, Any]:
    record = RunRecord(
        study="fake",
        step="report",
        stage="fake_report",
        chain_key="c:1",
        tags={"subspacelab.role": "stage", "dvc_stage": "fake_report"},
        params={"cfg.x": "1"},
        metrics={"wall_s": 1.0},
        artifacts=["reports/fake/claims.json"],
        final=True,
        start_ms=1,
        end_ms=2,
        spool_id="a" * 32,
    )
    return {**record.__dict__, **over}


def test_a_workers_unsent_runs_reach_the_head(tmp_path: Path) -> None:
    """The worker's store was down: its runs travel in the result, wait in the head's spool
    and are sent from there, with the report artifact the merge wrote."""
    root = tmp_path / "ws"
    commit = _repo(root)
    result = {**_result("fake", commit, b"[]"), "runs": [_run()]}
    merge_result(root, result)
    (spooled,) = (root / SPOOL_DIR).glob("*.json")
    assert spooled.name == f"2-fake_report-{'a' * 32}.json"
    assert replay(root) == (1, 0, 0)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("fake")
    (run,) = client.search_runs([exp.experiment_id], "tags.dvc_stage = 'fake_report'")
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["claims.json"]


@pytest.mark.parametrize(
    "over",
    [
        {"artifacts": ["/etc/passwd"]},
        {"artifacts": ["reports/fake2/claims.json"]},
        {"stage": "fake2_report"},
        {"spool_id": "../../evil"},
        {"end_ms": "../x"},
    ],
)
def test_a_workers_runs_are_confined_too(tmp_path: Path, over: dict[str, Any]) -> None:
    root = tmp_path / "ws"
    commit = _repo(root)
    with pytest.raises(RuntimeError, match=r"outside its outputs|returned a run"):
        merge_result(root, {**_result("fake", commit, b"[]"), "runs": [_run(**over)]})
    assert not (root / SPOOL_DIR).exists()


@pytest.mark.parametrize(
    ("env", "rank"),
    [
        ({}, 0),
        ({"LOCAL_RANK": "1"}, 1),
        ({"NODE_RANK": "1", "LOCAL_RANK": "1"}, 3),  # two devices per node
        ({"RANK": "5", "LOCAL_RANK": "1"}, 5),
        ({"SLURM_PROCID": "2", "SLURM_NTASKS": "4"}, 2),
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "1", "LOCAL_RANK": "1"}, 1),
    ],
)
def test_process_rank(env: dict[str, str], rank: int, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert process_rank(lab_config({"lab": {**LAB, "accelerator_devices": 2}})) == rank
