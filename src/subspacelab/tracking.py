"""MLflow tracking that never costs a result.

One experiment per study. Each execution of a stage is a run, nested under the study's chain run
(one chain run per study, git commit and params), tagged with git commit, study, step and DVC
stage. The default store is a SQLite file at the repository root (an absolute path, so queued DVC
experiments in temporary copies log to the same place); MLFLOW_TRACKING_URI overrides it, and
SUBSPACELAB_PARENT_RUN_ID makes chain runs children of an outer run (the Prefect lab flow's).

Every run is first written as JSON to ``.mlflow-spool/``; then, by SUBSPACELAB_TRACKING:

- ``async`` (default): a detached ``python -m subspacelab replay-tracking`` sends it, so a stage
  does not wait seconds for MLflow's start-up (``make lab`` flushes the spool at the end);
- ``sync``: the stage sends it before it exits;
- ``off``: it stays in the spool.

When the store cannot be reached the stage still completes with a warning and the run waits in
the spool; ``python -m subspacelab replay-tracking`` sends it once the store is back. Flushes
take a file lock, so concurrent stages never send a run twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from subspacelab.io import read_json, write_json

log = logging.getLogger(__name__)
SPOOL_DIR = ".mlflow-spool"


@dataclass
class RunRecord:
    """Everything one stage execution logs; JSON-serialisable so it can wait in the spool."""

    study: str
    step: str
    stage: str
    chain_key: str
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]
    artifacts: list[str] = field(default_factory=list)
    final: bool = False
    start_ms: int = 0
    end_ms: int = 0


def tracking_uri(root: Path) -> str:
    """MLFLOW_TRACKING_URI if set, else the SQLite store at ``<root>/mlflow.db`` (absolute)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{(root / 'mlflow.db').resolve()}"


def git_commit(root: Path) -> str:
    """The commit checked out at ``root`` (with ``-dirty`` if the tree has changes)."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def _reachable(uri: str, timeout: float = 2.0) -> bool:
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            with socket.create_connection((parsed.hostname or "localhost", port), timeout):
                return True
        except OSError:
            return False
    if parsed.scheme == "sqlite":
        db = Path(parsed.path.removeprefix("/") if parsed.path.startswith("//") else parsed.path)
        return db.parent.is_dir() and os.access(db.parent, os.W_OK)
    return True


def _artifact_location(uri: str, root: Path, slug: str) -> str | None:
    if uri.startswith("sqlite:"):
        return (root / "mlartifacts" / slug).resolve().as_uri()
    return None


def _send(record: RunRecord, uri: str, root: Path) -> str:
    """Log one record to MLflow; returns the run id. Raises on any tracking failure."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(record.study)
    exp_id = (
        exp.experiment_id
        if exp is not None
        else client.create_experiment(
            record.study, artifact_location=_artifact_location(uri, root, record.study)
        )
    )
    parent = os.environ.get("SUBSPACELAB_PARENT_RUN_ID")
    chain_filter = f"tags.`subspacelab.chain_key` = '{record.chain_key}'"
    if parent:  # one chain run per outer run: a later lab run's chain gets its own
        chain_filter += f" and tags.`mlflow.parentRunId` = '{parent}'"
    found = client.search_runs([exp_id], filter_string=chain_filter)
    if found:
        chain_id = found[0].info.run_id
    else:
        chain_tags = {
            "mlflow.runName": f"{record.study} chain",
            "subspacelab.chain_key": record.chain_key,
            "subspacelab.study": record.study,
            "subspacelab.role": "chain",
            "git_commit": record.tags.get("git_commit", "unknown"),
        }
        if parent:
            chain_tags["mlflow.parentRunId"] = parent
        chain_id = client.create_run(
            exp_id, start_time=record.start_ms, tags=chain_tags
        ).info.run_id
    tags = {**record.tags, "mlflow.parentRunId": chain_id, "mlflow.runName": record.stage}
    run_id = client.create_run(exp_id, start_time=record.start_ms, tags=tags).info.run_id
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), record.end_ms, 0) for k, v in sorted(record.metrics.items())],
        params=[Param(k, v[:6000]) for k, v in sorted(record.params.items())],
        tags=[RunTag("subspacelab.chain_run_id", chain_id)],
    )
    for art in record.artifacts:
        path = Path(art)
        if path.is_dir():
            client.log_artifacts(run_id, str(path), artifact_path=path.name)
        elif path.is_file():
            client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, "FINISHED", end_time=record.end_ms)
    if record.final:
        client.set_terminated(chain_id, "FINISHED", end_time=record.end_ms)
    return run_id


MODES = ("async", "sync", "off")


def log_run(record: RunRecord, root: Path) -> Path:
    """Spool a stage run, then send it per SUBSPACELAB_TRACKING; never raises for MLflow."""
    path = spool(record, root)
    mode = os.environ.get("SUBSPACELAB_TRACKING", "async")
    if mode not in MODES:
        warnings.warn(
            f"SUBSPACELAB_TRACKING={mode!r} is not one of {MODES}; using sync", stacklevel=2
        )
        mode = "sync"
    uri = tracking_uri(root)
    if mode != "off" and not _reachable(uri):
        warnings.warn(
            f"MLflow tracking store {uri} is not reachable; results are written and the run "
            f"waits in {path} (send it later: python -m subspacelab replay-tracking)",
            stacklevel=2,
        )
    elif mode == "sync":
        _, kept = replay(root)
        if kept:
            warnings.warn(
                f"MLflow logging failed for {kept} run(s); results are written and the runs "
                f"wait in {root / SPOOL_DIR} (python -m subspacelab replay-tracking)",
                stacklevel=2,
            )
    elif mode == "async":
        log_file = (root / SPOOL_DIR / "flush.log").open("a")
        subprocess.Popen(
            [sys.executable, "-m", "subspacelab", "replay-tracking"],
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,  # outlives the stage; DVC does not wait for it
        )
    return path


def spool(record: RunRecord, root: Path) -> Path:
    """Write a record to the spool directory."""
    path = root / SPOOL_DIR / f"{record.end_ms}-{record.stage}-{os.getpid()}.json"
    write_json(path, asdict(record))
    return path


def replay(root: Path) -> tuple[int, int]:
    """Send spooled runs, oldest first, under a lock; returns (sent, still spooled)."""
    spool_dir = root / SPOOL_DIR
    spool_dir.mkdir(parents=True, exist_ok=True)
    sent = kept = 0
    uri = tracking_uri(root)
    with (spool_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one sender at a time: no run is sent twice
        for path in sorted(spool_dir.glob("*.json")):
            record = RunRecord(**read_json(path))
            try:
                _send(record, uri, root)
            except Exception as exc:  # keep the record for the next try
                log.warning("could not send %s: %s", path.name, exc)
                kept += 1
                continue
            path.unlink()
            sent += 1
    return sent, kept


def now_ms() -> int:
    """Wall-clock time in milliseconds, as MLflow wants it."""
    return int(time.time() * 1000)


def stringify(params: Mapping[str, Any]) -> dict[str, str]:
    """MLflow params are strings."""
    return {k: str(v) for k, v in params.items()}


def existing(paths: Sequence[Path]) -> list[str]:
    """The paths that exist, as strings (artifacts to log)."""
    return [str(p) for p in paths if p.exists()]


with contextlib.suppress(Exception):  # keep MLflow's startup chatter out of stage logs
    logging.getLogger("mlflow").setLevel(logging.WARNING)
