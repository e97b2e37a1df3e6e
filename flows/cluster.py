"""Scale-out: one study's chain on a work-pool worker, and its merge back into the lab.

A worker runs :func:`study_worker_flow` in its own clone of the repository (prefect.yaml's pull
steps clone the deployed commit and install it): it pulls from the DVC remote what the study's
stages need, reproduces them, pushes their outputs, sends its MLflow runs (children of the lab
flow's run), and returns the study's dvc.lock entries and report files. The lab flow
(flows/lab.py) fans one such run out per study and merges each result into its own workspace
with :func:`merge_result`, under a file lock; it then ``dvc pull``s the outputs the entries name.

Nothing a worker does touches another worker's clone, and the shared pieces are safe to share:
DVC's remote is content-addressed (a push that dies midway leaves only objects no dvc.lock names
yet; a directory's manifest is uploaded after its files), and the lab's dvc.lock changes only when
a worker has finished its push. See docs/CLUSTER.md.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from prefect import flow
from prefect.logging import get_run_logger

from flows.tasks import dvc_chain, stage_env
from subspacelab.io import read_json
from subspacelab.registry import get_study, report_paths, resolve_use
from subspacelab.tracking import RunRecord, spool, spooled_runs

MERGE_LOCK = ".dvc/tmp/subspacelab-merge.lock"
SPOOL_ID = re.compile(r"[0-9a-f]{32}")


def _run(cmd: Sequence[str], root: Path, env: dict[str, str]) -> str:
    """Run a command in ``root``; its output, or a RuntimeError with the end of stderr."""
    proc = subprocess.run(list(cmd), cwd=root, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = proc.stderr[-2000:]
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}): {tail}")
    return proc.stdout + proc.stderr


def _dvc(root: Path, env: dict[str, str], *args: str) -> str:
    return _run([sys.executable, "-m", "dvc", "--wait-for-lock", *args], root, env)


def git_head(root: Path) -> str:
    """The commit checked out at ``root``."""
    return _run(["git", "rev-parse", "HEAD"], root, dict(os.environ)).strip()


def study_stages(slug: str) -> list[str]:
    """The DVC stages of a study, in chain order."""
    study = get_study(slug)
    return [study.stage_name(step.name) for step in study.steps]


def upstream_stages(slug: str) -> list[str]:
    """Other studies' stages whose outputs this study uses."""
    study = get_study(slug)
    refs = sorted({ref for step in study.steps for ref in step.uses})
    return [other.stage_name(step.name) for other, step in map(resolve_use, refs)]


def _locked(root: Path) -> dict[str, Any]:
    path = root / "dvc.lock"
    doc = yaml.safe_load(path.read_text()) if path.is_file() else None
    return doc or {"schema": "2.0", "stages": {}}


def lock_entries(root: Path, stages: Sequence[str]) -> dict[str, Any]:
    """The dvc.lock entries at ``root`` of those ``stages`` that have one."""
    locked = _locked(root)["stages"]
    return {s: locked[s] for s in stages if s in locked}


def _update_lock(root: Path, entries: dict[str, Any]) -> None:
    """Replace ``entries`` in dvc.lock at ``root`` (a new file renamed into place)."""
    doc = _locked(root)
    doc["stages"].update(entries)
    with tempfile.NamedTemporaryFile("w", dir=root, suffix=".lock.tmp", delete=False) as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    os.replace(f.name, root / "dvc.lock")


def _report_files(root: Path, slug: str) -> dict[str, str | None]:
    """Every file (base64) and directory (None) of the study's report, by relative path."""
    base = report_paths(root, slug)["metrics"].parent
    return {
        p.relative_to(root).as_posix(): base64.b64encode(p.read_bytes()).decode()
        if p.is_file()
        else None
        for p in sorted(base.rglob("*"))
    }


@flow(
    name="study-worker",
    flow_run_name="worker-{slug}",
    persist_result=True,
    result_serializer="json",
)
def study_worker_flow(
    slug: str,
    parent_run_id: str | None = None,
    tracking_uri: str | None = None,
    upstream_lock: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One study's chain in this worker's clone (the working directory the pull steps set).

    ``upstream_lock``: the lab's current dvc.lock entries of the other studies' stages this one
    uses (newer than the deployed commit's when the lab flow has just rebuilt them).

    Returns what the lab flow merges: the commit, the study's dvc.lock entries, its report
    files (base64; None for a directory) and its claims tally. Outputs travel through the DVC
    remote.
    """
    logger = get_run_logger()
    root = Path.cwd().resolve()
    env = stage_env(root)
    env["SUBSPACELAB_TRACKING"] = "off"  # spooled here, sent below before the clone goes away
    if parent_run_id:
        env["SUBSPACELAB_PARENT_RUN_ID"] = parent_run_id
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    stages = study_stages(slug)
    if upstream_lock:
        _update_lock(root, upstream_lock)
    have = set(_locked(root)["stages"])
    wanted = [s for s in [*upstream_stages(slug), *stages] if s in have]
    if wanted:  # the inputs (and unchanged outputs) this commit's dvc.lock names
        logger.info("%s", _dvc(root, env, "pull", "--allow-missing", *wanted).strip())
    dvc_chain(slug, stages, str(root), env)
    logger.info("%s", _dvc(root, env, "push", *stages).strip())
    sent = subprocess.run(
        [sys.executable, "-m", "subspacelab", "replay-tracking"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    runs = [asdict(r) for r in spooled_runs(root)]  # not sent: the head spools them
    if sent.returncode != 0 or runs:  # MLflow never costs a result: the outputs are pushed
        logger.warning(
            "%d MLflow run(s) of %s not sent, handed to the lab flow: %s",
            len(runs),
            slug,
            sent.stderr[-2000:],
        )
    claims = read_json(report_paths(root, slug)["claims"])
    return {
        "study": slug,
        "commit": git_head(root),
        "lock": lock_entries(root, stages),
        "files": _report_files(root, slug),
        "runs": runs,
        "holding": sum(bool(c["holds"]) for c in claims),
        "inconclusive": sum(c["verdict"] == "inconclusive" for c in claims),
        "claims": len(claims),
    }


def confined(root: Path, rel: str, slug: str) -> Path:
    """``root / rel`` for a path a worker returned, if it names something inside the study's own
    outputs (``data/<slug>/``, ``models/<slug>/``, ``reports/<slug>/``); a RuntimeError otherwise
    (an absolute path, ``..``, a backslash, another study's files or the repository's own).

    The check is on the name: a worker cannot place links in this workspace, and DVC's cache
    may legitimately link the outputs' files elsewhere.
    """
    parts = PurePosixPath(rel).parts
    if (
        PurePosixPath(rel).is_absolute()
        or "\\" in rel
        or ".." in parts
        or len(parts) < 2
        or parts[0] not in ("data", "models", "reports")
        or parts[1] != slug
    ):
        raise RuntimeError(f"{slug}: the worker returned the path {rel!r}, outside its outputs")
    return root.joinpath(*parts)


def _check_result(root: Path, result: dict[str, Any]) -> list[RunRecord]:
    """Refuse a result that reaches beyond its study: other stages' dvc.lock entries, files or
    outputs outside the study's directories, runs of another study. Returns its runs."""
    slug = result["study"]
    own = set(study_stages(slug))
    foreign = sorted(set(result["lock"]) - own)
    if foreign:
        raise RuntimeError(f"{slug}: the worker returned dvc.lock entries of {foreign}")
    for entry in result["lock"].values():
        for out in [*entry.get("outs", []), *entry.get("metrics", [])]:
            confined(root, out["path"], slug)
    for rel in result["files"]:
        confined(root, rel, slug)
    runs = []
    for data in result.get("runs", []):
        record = RunRecord(**data)
        if record.study != slug or record.stage not in own:
            raise RuntimeError(f"{slug}: the worker returned a run of {record.stage!r}")
        if not (SPOOL_ID.fullmatch(str(record.spool_id)) and isinstance(record.end_ms, int)):
            raise RuntimeError(
                f"{slug}: the worker returned a run with spool id {record.spool_id!r}"
            )
        for art in record.artifacts:
            confined(root, art, slug)
        runs.append(record)
    return runs


def merge_result(root: Path, result: dict[str, Any]) -> None:
    """Merge a worker's result into the workspace at ``root``, under a file lock.

    Every path it names must lie in the study's own directories (:func:`confined`) and its
    dvc.lock entries must be the study's stages. Its report files are written (checked against
    the md5 its dvc.lock entries record), its stages' entries replace the old ones in dvc.lock
    and the MLflow runs it could not send are spooled here; :func:`checkout_merged` then brings
    the data and model outputs they name from the remote.
    """
    slug = result["study"]
    head = git_head(root)
    if result["commit"] != head:
        raise RuntimeError(
            f"{slug}: the worker ran commit {result['commit'][:12]}, this workspace is at "
            f"{head[:12]}; redeploy (prefect deploy --all) after committing"
        )
    runs = _check_result(root, result)
    recorded = {
        out["path"]: out.get("md5")
        for entry in result["lock"].values()
        for out in [*entry.get("outs", []), *entry.get("metrics", [])]
    }
    lock_path = root / MERGE_LOCK
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one merge at a time into dvc.lock
        for rel, data in result["files"].items():
            if data is None:
                (root / rel).mkdir(parents=True, exist_ok=True)
                continue
            blob = base64.b64decode(data)
            want = recorded.get(rel)
            if want is not None and hashlib.md5(blob).hexdigest() != want:
                raise RuntimeError(f"{slug}: {rel} does not match the md5 in its dvc.lock entry")
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(blob)
        _update_lock(root, result["lock"])
        for record in runs:  # the worker's unsent MLflow runs wait in this workspace's spool
            spool(record, root)


def checkout_merged(root: Path, stages: Sequence[str]) -> None:
    """``dvc pull`` the outputs of merged stages from the remote into the workspace at
    ``root``; a RuntimeError unless DVC then finds every one of them up to date."""
    env = stage_env(root)
    _dvc(root, env, "pull", "--force", *stages)
    status = _dvc(root, env, "status", *stages)
    if "up to date" not in status:
        raise RuntimeError(f"merged stages are not up to date in {root}:\n{status}")


def open_lab_run(root: Path, slugs: Sequence[str], commit: str, flow_run: str) -> str | None:
    """The lab flow's MLflow run (experiment ``lab``), parent of the workers' chain runs.

    None when the tracking store cannot be reached: MLflow never stops the lab.
    """
    from subspacelab.tracking import tracking_uri

    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri(root))
        exp = client.get_experiment_by_name("lab")
        exp_id = exp.experiment_id if exp is not None else client.create_experiment("lab")
        tags = {
            "mlflow.runName": f"lab {flow_run}",
            "subspacelab.role": "lab",
            "subspacelab.studies": ",".join(slugs),
            "git_commit": commit,
            "prefect.flow_run_name": flow_run,
        }
        return client.create_run(exp_id, tags=tags).info.run_id
    except Exception as exc:
        get_run_logger().warning("no MLflow lab run (%s); workers' runs will have no parent", exc)
        return None


def close_lab_run(root: Path, run_id: str | None, ok: bool) -> None:
    """Mark the lab's MLflow run finished or failed."""
    if run_id is None:
        return
    from mlflow.tracking import MlflowClient

    from subspacelab.tracking import tracking_uri

    try:
        MlflowClient(tracking_uri=tracking_uri(root)).set_terminated(
            run_id, "FINISHED" if ok else "FAILED"
        )
    except Exception as exc:
        get_run_logger().warning("could not close the MLflow lab run %s: %s", run_id, exc)
