"""The pieces of the scale-out that need no server: merging a worker's result into the lab's
workspace, and the runner's view of its rank under multi-process training."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.cluster import merge_result
from subspacelab.config import lab_config
from subspacelab.runner import process_rank
from tests.helpers import LAB


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
