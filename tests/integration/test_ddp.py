"""Training scales through params alone: the same study trained by two DDP processes (CPU, gloo)
shows the same claims as one process, and only rank 0 writes outputs and MLflow runs."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from subspacelab import registry
from subspacelab.io import read_json
from subspacelab.runner import run_step
from tests.helpers import LAB, REPO, make_workspace, run_chain
from tests.integration.ddp_study import LIT, LIT_PARAMS

STUDIES = "tests.integration.ddp_study:LIT"


def _workspace(root: Path, lab: dict[str, object]) -> Path:
    ws = make_workspace(root, {"lab": lab, "lit": copy.deepcopy(LIT_PARAMS)}, with_code=True)
    for pkg in (ws / "src/subspacelab/studies").iterdir():
        if pkg.is_dir():  # only the test study is registered: the real ones are not needed
            shutil.rmtree(pkg)
    shutil.copytree(REPO / "tests", ws / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    return ws


def _stage(ws: Path, step: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SUBSPACELAB_STUDIES": STUDIES,
        "PYTHONPATH": f"{ws / 'src'}:{ws}",
        "SUBSPACELAB_TRACKING": "off",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "stages", step, "lit"],
        cwd=ws,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_two_ddp_processes_give_the_same_claims_as_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", {"lit": LIT})  # in this process
    one = _workspace(tmp_path / "one", {**LAB, "strategy": "auto", "accelerator_devices": 1})
    two = _workspace(tmp_path / "two", {**LAB, "strategy": "ddp", "accelerator_devices": 2})
    run_chain(one, "lit")  # one process, in this one
    shutil.copytree(one / "data", two / "data")  # the same inputs: only the training differs
    # `ddp` reruns the stage's command line per extra device: a real `python -m stages` process
    fit_two = _stage(two, "fit")
    run_step(two, "lit", "report")

    # two ranks trained in one gloo process group; rank 0 alone reported, committed and logged
    # (Lightning's info lines are off; each rank's own output is in its log file)
    assert (two / "logs/lit_fit.rank1.log").is_file()  # the second rank ran the step
    assert fit_two.stderr.count("done in") == 1
    assert sorted(p.name for p in (two / "models/lit/fit").iterdir()) == [
        "_meta.json",
        "model_0.safetensors",
        "model_1.safetensors",
    ]
    assert not list((two / ".stage-tmp").iterdir())  # every rank removed its scratch area
    spooled = [p.name for p in (two / ".mlflow-spool").glob("*.json")]
    assert sum("lit_fit" in name for name in spooled) == 1  # one MLflow run, from rank 0

    claims_one = read_json(one / "reports/lit/claims.json")
    claims_two = read_json(two / "reports/lit/claims.json")
    assert [(c["id"], c["holds"]) for c in claims_two] == [
        (c["id"], c["holds"]) for c in claims_one
    ]
    assert all(c["holds"] for c in claims_two)
    acc_one = read_json(one / "reports/lit/metrics.json")["metrics"]["accuracy"]["mean"]
    acc_two = read_json(two / "reports/lit/metrics.json")["metrics"]["accuracy"]["mean"]
    assert abs(acc_one - acc_two) < 0.05
