"""The runner's guarantees, on a fake three-step study: validation before compute, atomic
outputs that survive a kill, determinism, MLflow outages, and provenance checks."""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from subspacelab import registry
from subspacelab.config import ParamsError
from subspacelab.io import ModelFileError, save_tensors
from subspacelab.registry import HEADLINE_MAX
from subspacelab.report import headline
from subspacelab.runner import MissingInputError, run_step
from subspacelab.tracking import dvc_dir_md5, file_md5, replay
from tests.fake_study import FAKE, FAKE_PARAMS
from tests.helpers import REPO, deep_merge, make_workspace, run_chain

LAB = yaml.safe_load((REPO / "params.yaml").read_text())["lab"]


@pytest.fixture
def fake_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", {"fake": FAKE})


@pytest.fixture
def ws(tmp_path: Path, fake_registry: None) -> Path:
    return make_workspace(tmp_path / "ws", {"lab": LAB, "fake": FAKE_PARAMS})


def test_chain_writes_reports(ws: Path) -> None:
    metrics, claims = run_chain(ws, "fake")
    assert metrics["metrics"]["trace"]["n"] == 2
    assert set(metrics["timing_s"]) == {"download", "fit", "report", "total"}
    assert claims == [
        {
            "id": "a",
            "statement": "trace > 0",
            "paper": "n/a",
            "verdict": "inconclusive",  # two seeds: t(0.975, 1) = 12.7 makes a wide interval
            "holds": False,
            "resolution": claims[0]["resolution"],
            "tests": claims[0]["tests"],
            "measured": {},
        }
    ]
    (test,) = claims[0]["tests"]
    assert test["values"] == metrics["metrics"]["trace"]["values"]
    assert test["low"] < 0 < test["mean"] and test["verdict"] == "inconclusive"
    meta = json.loads((ws / "data/fake/download/_meta.json").read_text())
    assert set(meta["files"]) == {"x_0.safetensors", "x_1.safetensors"}
    assert not (ws / ".stage-tmp" / "fake_download").exists()


def test_same_seed_same_metrics(ws: Path, tmp_path: Path, fake_registry: None) -> None:
    first, _ = run_chain(ws, "fake")
    other = make_workspace(tmp_path / "ws2", {"lab": LAB, "fake": FAKE_PARAMS})
    second, _ = run_chain(other, "fake")
    assert first["metrics"] == second["metrics"]


def test_bad_param_stops_before_compute(ws: Path) -> None:
    bad = {"lab": LAB, "fake": deep_merge(FAKE_PARAMS, {"mini": {"data": {"n": -3}}})}
    make_workspace(ws, bad)
    with pytest.raises(ParamsError, match=r"fake\.mini\.data\.n"):
        run_step(ws, "fake", "download")
    assert not (ws / "data").exists()
    assert not (ws / ".stage-tmp" / "fake_download").exists()


def test_missing_input_names_the_stage(ws: Path) -> None:
    with pytest.raises(MissingInputError, match="dvc repro fake_download"):
        run_step(ws, "fake", "fit")


def test_model_from_another_study_is_refused(ws: Path) -> None:
    run_step(ws, "fake", "download")
    save_tensors(
        ws / "data/fake/download/x_0.safetensors", {"x": torch.ones(2, 3)}, study="gcr", kind="data"
    )
    with pytest.raises(ModelFileError, match="written by study 'gcr'"):
        run_step(ws, "fake", "fit")
    assert not (ws / "models/fake/fit").exists()


def test_step_reading_undeclared_section_fails(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def sneaky(ctx):  # reads `fit` while declaring only `data`
        return ctx.cfg.fit.ridge

    step = registry.Step("download", sneaky, reads=("data",))
    study = registry.Study(**{**FAKE.__dict__, "steps": (step, *FAKE.steps[1:])})
    monkeypatch.setattr(registry, "_REGISTRY", {"fake": study})
    with pytest.raises(AttributeError, match="without declaring it"):
        run_step(ws, "fake", "download")


def test_mlflow_down_still_writes_results(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("SUBSPACELAB_TRACKING", "sync")
    with pytest.warns(UserWarning, match="not reachable"):
        metrics, _ = run_chain(ws, "fake")
    assert metrics["claims_inconclusive"] == 1
    spooled = sorted((ws / ".mlflow-spool").glob("*.json"))
    assert len(spooled) == 3
    # once the store is back, the spooled runs are sent, exactly once
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{ws / 'back.db'}")
    assert replay(ws) == (3, 0, 0)
    assert replay(ws) == (0, 0, 0)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("fake")
    assert len(client.search_runs([exp.experiment_id])) == 4  # the chain and three stages


def test_mlflow_runs_nested_and_tagged(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("SUBSPACELAB_TRACKING", "sync")
    run_chain(ws, "fake")
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("fake")
    runs = client.search_runs([exp.experiment_id])
    chains = [r for r in runs if r.data.tags.get("subspacelab.role") == "chain"]
    stages = [r for r in runs if r.data.tags.get("subspacelab.role") == "stage"]
    assert len(chains) == 1 and chains[0].info.status == "FINISHED"
    assert {r.data.tags["dvc_stage"] for r in stages} == {
        "fake_download",
        "fake_fit",
        "fake_report",
    }
    for r in stages:
        assert r.data.tags["mlflow.parentRunId"] == chains[0].info.run_id
        assert r.data.tags["git_commit"]
        assert r.data.params["cfg.data.n"] == "50"
    report = next(r for r in stages if r.data.tags["subspacelab.step"] == "report")
    assert report.data.metrics["claim.a.holds"] == 0.0
    assert report.data.metrics["claim.a.inconclusive"] == 1.0
    arts = {a.path for a in client.list_artifacts(report.info.run_id)}
    assert {"metrics.json", "headline.json", "claims.json", "plots"} <= arts
    # the experiment is model training; the chain run carries the verdicts and claims table
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "arXiv:0000.00000" in exp.tags["mlflow.note.content"]
    assert chains[0].data.tags["claim.a"] == "inconclusive"  # two seeds: a wide interval
    assert "| a | trace > 0 | inconclusive | trace = " in chains[0].data.tags["mlflow.note.content"]
    # inputs are datasets carrying DVC's hash; model files are logged models pointing at DVC
    fit = next(r for r in stages if r.data.tags["subspacelab.step"] == "fit")
    (data,) = fit.inputs.dataset_inputs
    assert data.dataset.name == "data/fake/download"
    assert data.dataset.digest == dvc_dir_md5(ws / "data/fake/download")[0]
    assert fit.data.tags["dvc.out_md5"] == dvc_dir_md5(ws / "models/fake/fit")[0]
    models = {m.name: m for m in client.search_logged_models([exp.experiment_id])}
    assert sorted(models) == ["cov_0", "cov_1"]
    assert models["cov_0"].source_run_id == fit.info.run_id  # no model run of that name
    assert models["cov_0"].tags["dvc.path"] == "models/fake/fit/cov_0.safetensors"


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


def test_dvc_dir_md5_follows_the_files_not_a_stale_manifest(ws: Path) -> None:
    run_step(ws, "fake", "download")
    out = ws / "data/fake/download"
    digest, md5s = dvc_dir_md5(out)
    assert set(md5s) == {"_meta.json", "x_0.safetensors", "x_1.safetensors"}
    blob = (out / "x_0.safetensors").read_bytes()
    (out / "x_0.safetensors").write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))  # same size
    changed, md5s = dvc_dir_md5(out)
    assert changed != digest and md5s["x_0.safetensors"] == file_md5(out / "x_0.safetensors")


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


def _stage_subprocess(ws: Path, step: str, env: dict[str, str]) -> subprocess.Popen:
    code = (
        "import sys; from pathlib import Path; from subspacelab import registry;"
        "from tests.fake_study import FAKE; registry._REGISTRY['fake'] = FAKE;"
        "from subspacelab.runner import run_step; run_step(Path(sys.argv[1]), 'fake', sys.argv[2])"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, str(ws), step],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_killed_stage_leaves_no_partial_output(ws: Path) -> None:
    run_step(ws, "fake", "download")
    before = (ws / "data/fake/download/_meta.json").read_text()
    proc = _stage_subprocess(ws, "download", {"FAKE_HANG": "1"})
    partial = ws / ".stage-tmp/fake_download/out/partial.txt"
    deadline = time.time() + 60
    while not partial.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert partial.exists(), "the stage never started writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # the previous complete output is still in place, untouched; nothing partial in it
    assert (ws / "data/fake/download/_meta.json").read_text() == before
    assert not (ws / "data/fake/download/partial.txt").exists()
    # the rerun completes and clears the leftovers
    run_step(ws, "fake", "download")
    assert not (ws / ".stage-tmp/fake_download").exists()
    assert not (ws / "data/fake/download/partial.txt").exists()


def _consume(ctx: registry.StepContext) -> registry.Report:
    files = sorted(ctx.inputs["fake.fit"].glob("cov_*.safetensors"))
    return registry.Report(metrics={"files": float(len(files))})


CONSUMER = registry.Study(
    slug="consumer",
    title="Reads another study's models",
    arxiv="0000.00001",
    group="tests",
    config=FAKE.config,
    steps=(registry.Step("report", _consume, uses=("fake.fit",), kind="report"),),
    claims=(),
    kind="comparison",
)


def test_cross_study_inputs(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from subspacelab import dvcgen

    monkeypatch.setattr(registry, "_REGISTRY", {"fake": FAKE, "consumer": CONSUMER})
    make_workspace(ws, {"lab": LAB, "fake": FAKE_PARAMS, "consumer": FAKE_PARAMS})
    with pytest.raises(MissingInputError, match="dvc repro fake_fit"):
        run_step(ws, "consumer", "report")
    run_chain(ws, "fake")
    metrics, claims = run_chain(ws, "consumer")
    assert metrics["metrics"]["files"]["mean"] == 2.0 and claims == []
    stage = dvcgen.dvc_yaml(REPO, {"fake": FAKE, "consumer": CONSUMER})["stages"]["consumer_report"]
    assert "models/fake/fit" in stage["deps"]


def test_paper_study_must_declare_claims() -> None:
    with pytest.raises(ValueError, match="declares its claims"):
        registry.Study(**{**CONSUMER.__dict__, "kind": "paper"})


def test_stat_formats_mean_and_sample_std() -> None:
    from subspacelab.registry import Stat

    stat = Stat((1.0, 2.0, 3.0))
    assert stat.mean == 2.0 and stat.std == 1.0  # sample std (n - 1)
    assert stat.fmt(2) == "2.00 ± 1.00"
    assert Stat((0.5,)).fmt() == "0.500"


def test_stage_output_goes_to_its_log_and_the_console_gets_our_lines(
    ws: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    import warnings

    from subspacelab import console

    def noisy(ctx):
        print("library chatter on stdout")
        os.write(2, b"C-level chatter on stderr\n")
        warnings.warn("a library's warning", UserWarning, stacklevel=1)  # from tests/: not ours
        warnings.warn_explicit("our own warning", UserWarning, console.__file__, 1)
        ctx.progress("halfway")
        return FAKE.steps[0].run(ctx)

    step = registry.Step("download", noisy, reads=("data",))
    study = registry.Study(**{**FAKE.__dict__, "steps": (step, *FAKE.steps[1:])})
    monkeypatch.setattr(registry, "_REGISTRY", {"fake": study})
    monkeypatch.delenv(console.DRIVER_ENV, raising=False)
    monkeypatch.delenv(console.PROGRESS_ENV, raising=False)
    capfd.readouterr()
    run_step(ws, "fake", "download")
    out, err = capfd.readouterr()
    shown = [line for line in (out + err).splitlines() if line.strip()]
    assert len(shown) == 2, shown  # our warning and the end line (no progress off a terminal)
    assert "our own warning" in shown[0]
    assert "done in" in shown[1]
    assert "1 third-party warning(s) in logs/fake_download.log" in shown[1]
    log = (ws / "logs/fake_download.log").read_text()
    for text in ("library chatter", "C-level chatter", "a library's warning", "halfway"):
        assert text in log


# ------------------------------------------------------------------ divergence and bad numbers


def _fit_diverging(ctx: registry.StepContext) -> None:
    from torch.nn import functional as F

    from subspacelab.nets.training import LossModule, fit, tensor_loader

    gen = torch.Generator().manual_seed(0)
    x = 100 * torch.randn(64, 3, generator=gen)
    net = torch.nn.Linear(3, 1)
    module = LossModule(net, lambda n, b: F.mse_loss(n(b[0]), b[1]), lr=1.0, optimizer="sgd")
    loader = tensor_loader(x, x.sum(1, keepdim=True), batch_size=16, seed=0)
    fit(ctx, module, loader, epochs=50, label="ridge")
    save_tensors(ctx.out / "w.safetensors", {"w": net.weight}, study="fake", kind="model")


def _with_step(name: str, run: object, monkeypatch: pytest.MonkeyPatch) -> None:
    steps = tuple(
        registry.Step(**{**s.__dict__, "run": run}) if s.name == name else s for s in FAKE.steps
    )
    monkeypatch.setattr(
        registry, "_REGISTRY", {"fake": registry.Study(**{**FAKE.__dict__, "steps": steps})}
    )


def _nothing_committed(ws: Path) -> None:
    assert not (ws / "models/fake/fit").exists()
    assert not (ws / "reports/fake").exists()
    assert not list((ws / ".mlflow-spool").glob("*fake_fit*.json"))
    assert not (ws / ".stage-tmp/fake_fit").exists()


def test_diverging_training_stops_the_stage_naming_study_step_model_epoch(
    ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from subspacelab.io import NonFiniteError

    _with_step("fit", _fit_diverging, monkeypatch)
    run_step(ws, "fake", "download")
    with pytest.raises(
        NonFiniteError,
        match=r"fake\.fit: model 'ridge' diverged: the loss is "
        r"(nan|inf) at epoch \d+/50",
    ):
        run_step(ws, "fake", "fit")
    _nothing_committed(ws)


def test_non_finite_report_metric_commits_nothing(
    ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from subspacelab.io import NonFiniteError

    _with_step(
        "report", lambda ctx: registry.Report(metrics={"trace": [1.0, float("nan")]}), monkeypatch
    )
    run_step(ws, "fake", "download")
    run_step(ws, "fake", "fit")
    with pytest.raises(
        NonFiniteError,
        match=r"fake_report: metric 'trace' is not finite: nan at "
        r"index 1 of 2.*nothing was committed",
    ):
        run_step(ws, "fake", "report")
    assert not (ws / "reports/fake").exists()
    assert len(list((ws / ".mlflow-spool").glob("*.json"))) == 2  # download and fit only


def test_non_finite_step_metric_commits_nothing(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from subspacelab.io import NonFiniteError

    _with_step(
        "download", lambda ctx: registry.StepOutput(metrics={"n": float("inf")}), monkeypatch
    )
    with pytest.raises(NonFiniteError, match=r"fake_download: metric 'n' is inf"):
        run_step(ws, "fake", "download")
    assert not (ws / "data/fake/download").exists()


def test_metrics_reject_non_finite_values_by_name() -> None:
    from subspacelab.io import NonFiniteError

    with pytest.raises(NonFiniteError, match=r"metric 'acc' is not finite: inf at index 0"):
        registry.Metrics({"acc": float("inf")})


# ------------------------------------------------------------------ a full disk


def _no_space(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_while_writing_outputs_is_clear_and_keeps_the_old_ones(
    ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from subspacelab.io import DiskFullError

    run_step(ws, "fake", "download")
    before = (ws / "data/fake/download/_meta.json").read_text()
    monkeypatch.setattr(Path, "write_bytes", _no_space)  # save_tensors' write
    with pytest.raises(
        DiskFullError,
        match=r"fake_download: no space left on device.*nothing "
        "was committed",
    ):
        run_step(ws, "fake", "download")
    assert (ws / "data/fake/download/_meta.json").read_text() == before
    assert not (ws / ".stage-tmp/fake_download").exists()


def test_disk_full_at_the_last_write_fails_before_the_commit(
    ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run record is the last file a stage writes: a full disk there used to strike after
    the outputs were committed (a traceback, and DVC reran the stage)."""
    from subspacelab import tracking
    from subspacelab.io import DiskFullError

    monkeypatch.setattr(tracking, "write_json", _no_space)
    with pytest.raises(DiskFullError, match="fake_download: no space left on device"):
        run_step(ws, "fake", "download")
    assert not (ws / "data/fake/download").exists()


# ------------------------------------------------------------------ killed mid-commit


_KILL_MID_COMMIT = """
import os, signal, sys
from pathlib import Path
from subspacelab import io, registry
from tests.fake_study import FAKE
registry._REGISTRY["fake"] = FAKE
real = os.replace
def replace(src, dst):
    real(src, dst)
    if ".old-" in str(dst):
        os.kill(os.getpid(), signal.SIGKILL)
io.os.replace = replace
from subspacelab.runner import run_step
run_step(Path(sys.argv[1]), "fake", "download")
"""


def test_stage_killed_between_the_two_renames_leaves_nothing_after_the_next_run(ws: Path) -> None:
    run_step(ws, "fake", "download")
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_MID_COMMIT, str(ws)],
        cwd=REPO,
        check=False,
        capture_output=True,
    )
    assert proc.returncode == -signal.SIGKILL
    assert [p.name[:14] for p in (ws / "data/fake").iterdir()] == [".download.old-"]
    run_step(ws, "fake", "download")
    assert sorted(p.name for p in (ws / "data/fake").iterdir()) == ["download"]
    assert (ws / "data/fake/download/_meta.json").is_file()
