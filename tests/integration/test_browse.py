"""What a user sees in MLflow and DVC after a chain, with the real tools (issue 19).

One fake study that trains (tests.fake_study.TRAIN) runs under `dvc repro` with MLflow logging
synchronously to a SQLite store; then MLflow's client must show each trained model as a child
run with a loss curve, the inputs as datasets carrying DVC's own hashes (read from dvc.lock), the
model files as logged models linked to DVC, the experiment's kind and the claims on the chain run.
`dvc exp run -S` with another seed must then give a `dvc exp show` table within a column budget
and a `dvc plots diff` that draws the declared curve of both revisions.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from subspacelab.tracking import EXPERIMENT_KIND
from tests.helpers import dvc, dvc_workspace

# Columns of `dvc exp show` for the one-study workspace: the fixed ones (experiment, revision,
# date...), the headline metrics (two means, three verdict counts), the params (lab and the
# study's sections in both profiles) and the deps' hashes. A metrics file holding per-seed
# lists, spreads, timings and metadata would exceed it.
COLUMN_BUDGET = 60


def _git(ws: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=ws, check=True, capture_output=True)


@pytest.mark.slow
def test_mlflow_and_dvc_show_models_curves_and_datasets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    ws = dvc_workspace(tmp_path, train=True)
    uri = f"sqlite:///{ws / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("SUBSPACELAB_TRACKING", "sync")
    (ws / ".gitignore").write_text("mlflow.db\nmlartifacts/\n.mlflow-spool/\n.stage-tmp/\n")
    _git(ws, "add", "-A")
    _git(ws, "commit", "-qm", "code")
    dvc(ws, "repro")
    _git(ws, "add", "-A")
    _git(ws, "commit", "-qm", "results")
    lock = yaml.safe_load((ws / "dvc.lock").read_text())["stages"]

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("train")
    assert exp.tags["mlflow.experimentKind"] == EXPERIMENT_KIND  # the UI opens on the runs
    runs = client.search_runs([exp.experiment_id])
    fit = next(r for r in runs if r.data.tags.get("subspacelab.role") == "stage"
               and r.data.tags["dvc_stage"] == "train_fit")  # fmt: skip
    children = {
        r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == fit.info.run_id
    }
    assert sorted(children) == ["w2_s0", "w2_s1", "w8_s0", "w8_s1"]
    child = children["w8_s1"]
    assert child.data.tags["subspacelab.role"] == "model"
    assert {"width": "8", "seed": "1", "optimizer": "Adam", "max_epochs": "3"}.items() <= (
        child.data.params.items()
    )
    history = client.get_metric_history(child.info.run_id, "loss")
    steps = [m.step for m in history]
    assert len(history) == 3 and steps == sorted(set(steps)), steps  # one point per epoch
    assert history[-1].value < history[0].value

    # inputs: datasets whose digest is the hash DVC recorded for that dependency
    dep = next(d for d in lock["train_fit"]["deps"] if d["path"] == "data/train/download")
    inputs = {d.dataset.name: d.dataset for d in fit.inputs.dataset_inputs}
    assert list(inputs) == ["data/train/download"]
    assert inputs["data/train/download"].digest == dep["md5"]
    assert json.loads(inputs["data/train/download"].source)["path"] == "data/train/download"

    # model files: logged models (weights stay with DVC) pointing at their DVC path and hash
    out = next(o for o in lock["train_fit"]["outs"] if o["path"] == "models/train/fit")
    models = {m.name: m for m in client.search_logged_models([exp.experiment_id])}
    assert sorted(models) == sorted(children)
    model = models["w8_s1"]
    assert model.source_run_id == child.info.run_id
    assert model.tags["dvc.path"] == "models/train/fit/w8_s1.safetensors"
    assert model.tags["dvc.out_md5"] == out["md5"]
    assert fit.data.tags["dvc.out_md5"] == out["md5"]

    # the chain run carries the claims: verdict tags and the claims table as its description
    chain = next(r for r in runs if r.data.tags.get("subspacelab.role") == "chain")
    claims = json.loads((ws / "reports/train/claims.json").read_text())
    verdict = "holds" if claims[0]["holds"] else "does not hold"
    assert chain.data.tags["claim.above_chance"] == verdict
    assert "| above_chance | best accuracy > 0.5 |" in chain.data.tags["mlflow.note.content"]

    # DVC: the headline metrics only, declared curves as plots
    headline = json.loads((ws / "reports/train/headline.json").read_text())
    assert set(headline["metrics"]) == {"acc/w2", "acc/w8"}
    assert headline["verdicts"]["holds"] + headline["verdicts"]["does_not_hold"] == 1
    monkeypatch.setenv("SUBSPACELAB_TRACKING", "off")  # MLflow is checked above
    dvc(ws, "exp", "run", "-n", "seeds2", "-S", "train.mini.seeds=[2]")
    table = dvc(ws, "exp", "show", "--csv").stdout
    rows = list(csv.DictReader(io.StringIO(table)))
    assert len(rows[0]) <= COLUMN_BUDGET, list(rows[0])
    wanted = {"metrics.acc/w2", "metrics.acc/w8", "verdicts.holds", "train.mini.seeds"}
    assert wanted <= set(rows[0]), list(rows[0])
    exp_row = next(r for r in rows if r["Experiment"] == "seeds2")
    assert exp_row["train.mini.seeds"] == "[2]"

    diff = json.loads(dvc(ws, "plots", "diff", "HEAD", "seeds2", "--json").stdout)
    curve = next(v for k, v in diff["data"].items() if k.endswith("curves/acc_vs_width.csv"))
    values = curve[0]["content"]["data"]["values"]
    assert {v["rev"] for v in values} == {"HEAD", "seeds2"}
    assert curve[0]["content"]["encoding"]["x"]["field"] == "width"
