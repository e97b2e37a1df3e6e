"""The DAG: dvc.yaml is derived from the registry, and DVC reruns exactly what changed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from subspacelab import dvcgen, registry
from tests.fake_study import FAKE, TRAIN
from tests.helpers import REPO, default_sigint, dvc, dvc_workspace

LAB = yaml.safe_load((REPO / "params.yaml").read_text())["lab"]


def test_dvc_yaml_is_up_to_date() -> None:
    """Fails when a study changed and `python -m subspacelab dvc-yaml` was not rerun."""
    assert (REPO / "dvc.yaml").read_text() == dvcgen.render(REPO), (
        "dvc.yaml drifted from the registry: run `python -m subspacelab dvc-yaml`"
    )


def test_every_stage_is_named_for_its_study_and_has_fixed_outputs() -> None:
    stages = dvcgen.dvc_yaml(REPO)["stages"]
    for slug, study in registry.studies().items():
        for step in study.steps:
            stage = stages[f"{slug}_{step.name}"]
            assert "stages/__main__.py" in stage["deps"]
            assert any(d.startswith(f"src/subspacelab/studies/{slug}") for d in stage["deps"])
            assert all(p.startswith((f"{slug}.", "lab.")) for p in stage["params"])
            outs = [next(iter(o)) if isinstance(o, dict) else o for o in stage["outs"]]
            assert all(o.split("/")[1] == slug for o in outs)
    assert "summary" in stages


def test_import_closure_follows_relative_and_absolute_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "src/subspacelab"
    (pkg / "studies/demo").mkdir(parents=True)
    (pkg / "geometry").mkdir()
    for f in ("__init__.py", "studies/__init__.py", "geometry/__init__.py", "tracking.py"):
        (pkg / f).write_text("")
    (pkg / "geometry/pca.py").write_text("import math\n")
    (pkg / "studies/demo/__init__.py").write_text("")
    (pkg / "studies/demo/core.py").write_text("from subspacelab.geometry import pca\n")
    (pkg / "studies/demo/study.py").write_text("from .core import x\nimport subspacelab.tracking\n")
    files = dvcgen.import_closure(tmp_path, ["subspacelab.studies.demo.study"])
    rel = {p.relative_to(tmp_path).as_posix() for p in files}
    assert "src/subspacelab/studies/demo/core.py" in rel
    assert "src/subspacelab/geometry/pca.py" in rel
    assert "src/subspacelab/tracking.py" not in rel  # never changes a number


def test_report_declares_headline_as_metrics_and_curves_as_plots() -> None:
    doc = dvcgen.dvc_yaml(REPO, {"train": TRAIN})
    stage = doc["stages"]["train_report"]
    assert stage["metrics"] == [{"reports/train/headline.json": {"cache": False}}]
    outs = [next(iter(o)) for o in stage["outs"]]
    assert {"reports/train/metrics.json", "reports/train/curves"} <= set(outs)
    assert doc["plots"] == [
        {
            "reports/train/curves/acc_vs_width.csv": {
                "x": "width",
                "y": "acc",
                "template": "linear",
                "title": "train: accuracy vs hidden width",
            }
        }
    ]
    assert "plots" not in dvcgen.dvc_yaml(REPO, {"fake": FAKE})  # no curves declared


@pytest.mark.slow
def test_repro_then_nothing_then_only_what_changed(tmp_path: Path) -> None:
    dvc_ws = dvc_workspace(tmp_path)
    out = dvc(dvc_ws, "repro").stdout
    for stage in ("fake_download", "fake_fit", "fake_report", "fake2_report", "summary"):
        assert f"Running stage '{stage}'" in out
    assert (dvc_ws / "reports/SUMMARY.md").is_file()
    assert "Data and pipelines are up to date" in dvc(dvc_ws, "status").stdout
    second = dvc(dvc_ws, "repro").stdout
    assert "Running stage" not in second

    params = yaml.safe_load((dvc_ws / "params.yaml").read_text())
    params["fake"]["mini"]["fit"]["ridge"] = 0.5
    (dvc_ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = dvc(dvc_ws, "repro").stdout
    ran = {line.split("'")[1] for line in third.splitlines() if line.startswith("Running stage")}
    assert ran == {"fake_fit", "fake_report", "summary"}


def test_step_deps_follow_what_the_step_function_reaches(tmp_path: Path) -> None:
    pkg = tmp_path / "src/subspacelab"
    (pkg / "studies/demo").mkdir(parents=True)
    for f in ("__init__.py", "studies/__init__.py", "studies/demo/__init__.py"):
        (pkg / f).write_text("")
    (pkg / "studies/demo/data.py").write_text("def make():\n    return 1\n")
    (pkg / "studies/demo/train.py").write_text("import math\n")
    (pkg / "studies/demo/plots.py").write_text("")
    (pkg / "studies/demo/study.py").write_text(
        "from subspacelab.studies.demo import data, plots\n"
        "from subspacelab.studies.demo.train import fit as _fit\n"
        "HELPERS = {'make': data.make}\n"
        "def _helper():\n    return HELPERS['make']()\n"
        "def _download(ctx: plots.Figure) -> int:\n    return _helper()\n"
        "def _fit(ctx):\n    from subspacelab.studies.demo import train\n    return train\n"
        "def _report(ctx):\n    return plots\n"
    )
    mod = "subspacelab.studies.demo.study"

    def reached(name: str) -> set[str]:
        return {m for m in dvcgen.reached_modules(tmp_path, mod, name) if m.count(".") == 3}

    # through a helper and a module-level constant; the annotation is not a dependency
    assert reached("_download") == {"subspacelab.studies.demo.data"}
    assert reached("_fit") == {"subspacelab.studies.demo.train"}  # a local import
    assert reached("_report") == {"subspacelab.studies.demo.plots"}


def test_params_are_mini_the_active_profile_and_lab_settings() -> None:
    stages = dvcgen.dvc_yaml(REPO)["stages"]
    for slug, study in registry.studies().items():
        for step in study.steps:
            params = stages[f"{slug}_{step.name}"]["params"]
            assert "lab.profile" in params and "lab.jobs" not in params
            own = [p for p in params if not p.startswith("lab.")]
            reads = ["seeds", *step.reads]
            # mini's values (full inherits them) and the active profile's
            assert own == [f"{slug}.{p}.{r}" for r in reads for p in ("mini", dvcgen.PROFILE_VAR)]


def test_make_lab_waits_for_the_dvc_lock() -> None:
    """A flow's stage holds DVC's lock; `make lab` (the lab driver) must wait for it, not fail."""
    from subspacelab.lab import _dvc_cmd

    recipe = (REPO / "Makefile").read_text().split("\nlab:", 1)[1].split("\n\n", 1)[0]
    assert "python -m subspacelab lab" in recipe
    assert _dvc_cmd(["a_b"])[2:5] == ["subspacelab.dvcjob", "--wait-for-lock", "repro"]


def _interrupted_repro(ws: Path, sig: signal.Signals) -> None:
    """``dvc repro`` with the first stage hanging mid-write, then ``sig`` to its process group
    (what Ctrl-C does in a terminal; SIGKILL: a lost node or the OOM killer)."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        registry.PLUGINS_ENV: "tests.fake_study:FAKE,tests.fake_study:FAKE2",
        "PYTHONPATH": f"{ws / 'src'}:{ws}",
        "FAKE_HANG": "1",
    }
    started = time.time()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro"],
        cwd=ws,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=default_sigint,
    )
    partial = ws / ".stage-tmp/fake_download/out/partial.txt"
    deadline = time.time() + 120

    def writing() -> bool:  # this run's stage, not a killed one's leftover
        return partial.exists() and partial.stat().st_mtime >= started

    while not writing() and time.time() < deadline:
        time.sleep(0.2)
    try:
        assert writing(), "the stage never started writing"
        os.killpg(proc.pid, sig)
        assert proc.wait(timeout=60) != 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if sig == signal.SIGKILL:  # nothing ran the stage's cleanup: the next run does it
        assert partial.exists()


@pytest.mark.slow
def test_interrupted_repro_then_repro_completes_and_status_is_true(tmp_path: Path) -> None:
    ws = dvc_workspace(tmp_path)
    dvc(ws, "repro", "fake_download")
    meta = ws / "data/fake/download/_meta.json"
    before = meta.read_text()
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["fake"]["mini"]["data"]["n"] = 60  # fake_download must run again
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    for sig in (signal.SIGKILL, signal.SIGINT):  # the next interruption starts from the last's
        _interrupted_repro(ws, sig)
        status = dvc(ws, "status", "fake_download").stdout
        assert "fake_download" in status and "up to date" not in status  # not claimed done
        assert not meta.exists() or meta.read_text() == before  # old or absent, never partial
        assert not (ws / "data/fake/download/partial.txt").exists()
    assert not (ws / ".stage-tmp/fake_download").exists()  # Ctrl-C cleans up after itself

    dvc(ws, "repro", "fake_download")  # no stale lock, no leftovers in the way
    assert "Data and pipelines are up to date" in dvc(ws, "status", "fake_download").stdout
    assert json.loads(meta.read_text())["files"]  # the new output, complete
    assert not [p for p in (ws / "data/fake").iterdir() if ".old-" in p.name]
