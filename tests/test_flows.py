"""Prefect flows run the registry's chains through DVC: same outputs, one cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from subspacelab import registry
from tests.fake_study import FAKE, FAKE2
from tests.helpers import default_sigint, dvc, dvc_workspace, interrupt_when_computing


@pytest.mark.slow
def test_lab_flow_leaves_what_dvc_repro_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.testing.utilities import prefect_test_harness

    from flows.lab import lab_flow

    ws = dvc_workspace(tmp_path)
    monkeypatch.setattr(registry, "_REGISTRY", {"fake": FAKE, "fake2": FAKE2})  # in this process
    monkeypatch.setenv(registry.PLUGINS_ENV, "tests.fake_study:FAKE,tests.fake_study:FAKE2")
    monkeypatch.setenv("PYTHONPATH", f"{ws / 'src'}:{ws}")
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    with prefect_test_harness(server_startup_timeout=120):
        results = lab_flow(root=str(ws))
    assert results == [
        {"study": "fake", "holding": 0, "inconclusive": 1, "claims": 1},
        {"study": "fake2", "holding": 0, "inconclusive": 1, "claims": 1},
    ]
    assert (ws / "reports/fake/metrics.json").is_file()
    assert (ws / "reports/SUMMARY.md").is_file()
    # DVC recorded the flow's outputs as its own: nothing is left to run
    assert "Data and pipelines are up to date" in dvc(ws, "status").stdout


@pytest.mark.slow
def test_ctrl_c_stops_the_flow_s_stages_and_the_next_repro_completes(tmp_path: Path) -> None:
    ws = dvc_workspace(tmp_path)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        registry.PLUGINS_ENV: "tests.fake_study:FAKE,tests.fake_study:FAKE2",
        "PYTHONPATH": f"{ws / 'src'}:{ws}",
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "true",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",  # a busy 2-core machine
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows"],
        cwd=ws,
        env={**env, "FAKE_HANG": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    interrupt_when_computing(ws, proc, need_all=False)
    status = dvc(ws, "status").stdout
    assert "fake_download" in status and "fake2_download" in status
    dvc(ws, "repro")  # no stale lock, no leftovers in the way
    assert "Data and pipelines are up to date" in dvc(ws, "status").stdout
