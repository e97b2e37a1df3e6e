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
take a file lock, so concurrent stages never send a run twice, and sending is idempotent: each
spooled run carries a spool id, stored as the tag ``subspacelab.spool_id`` and looked up before a
run is created, so a send that failed midway is completed on the next try, never duplicated. A
spool file that cannot be read is moved to ``.mlflow-spool/corrupt/`` and reported; the others
are still sent. A cluster worker hands its unsent runs to the lab flow, which spools them on the
head (flows/cluster.py).
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
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlparse

from subspacelab.io import CorruptFileError, read_json, write_json

log = logging.getLogger(__name__)
SPOOL_DIR = ".mlflow-spool"
CORRUPT_DIR = "corrupt"
SPOOL_TAG = "subspacelab.spool_id"
PARENT_ENV = "SUBSPACELAB_PARENT_RUN_ID"


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
    spool_id: str = ""
    parent_run_id: str = ""  # SUBSPACELAB_PARENT_RUN_ID when spooled (a worker's runs keep it)


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
    parent = record.parent_run_id or os.environ.get(PARENT_ENV)
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
    tags = {
        **record.tags,
        "mlflow.parentRunId": chain_id,
        "mlflow.runName": record.stage,
        SPOOL_TAG: record.spool_id,
    }
    # a run an earlier, interrupted send created is completed, not created again
    earlier = client.search_runs(
        [exp_id], filter_string=f"tags.`{SPOOL_TAG}` = '{record.spool_id}'"
    )
    if earlier and earlier[0].info.status == "FINISHED":  # sent; its spool file outlived it
        if record.final:
            client.set_terminated(chain_id, "FINISHED", end_time=record.end_ms)
        return earlier[0].info.run_id
    if earlier:
        run_id = earlier[0].info.run_id
        have_params, have_metrics = earlier[0].data.params, earlier[0].data.metrics
    else:
        run_id = client.create_run(exp_id, start_time=record.start_ms, tags=tags).info.run_id
        have_params, have_metrics = {}, {}
    client.log_batch(
        run_id,
        metrics=[
            Metric(k, float(v), record.end_ms, 0)
            for k, v in sorted(record.metrics.items())
            if k not in have_metrics
        ],
        params=[
            Param(k, v[:6000]) for k, v in sorted(record.params.items()) if k not in have_params
        ],
        tags=[RunTag("subspacelab.chain_run_id", chain_id)],
    )
    for art in record.artifacts:
        path = root / art  # relative to the workspace (a worker's runs); absolute otherwise
        if path.is_dir():
            client.log_artifacts(run_id, str(path), artifact_path=path.name)
        elif path.is_file():
            client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, "FINISHED", end_time=record.end_ms)
    if record.final:
        client.set_terminated(chain_id, "FINISHED", end_time=record.end_ms)
    return run_id


MODES = ("async", "sync", "off")


def dispatch(path: Path, root: Path) -> None:
    """Send a spooled run per SUBSPACELAB_TRACKING; never raises (MLflow never costs a result)."""
    mode = os.environ.get("SUBSPACELAB_TRACKING", "async")
    if mode not in MODES:
        warnings.warn(
            f"SUBSPACELAB_TRACKING={mode!r} is not one of {MODES}; using sync", stacklevel=2
        )
        mode = "sync"
    uri = tracking_uri(root)
    try:
        if mode != "off" and not _reachable(uri):
            warnings.warn(
                f"MLflow tracking store {uri} is not reachable; results are written and the run "
                f"waits in {path} (send it later: python -m subspacelab replay-tracking)",
                stacklevel=2,
            )
        elif mode == "sync":
            done = replay(root)
            if done.kept or done.corrupt:
                warnings.warn(
                    f"MLflow logging failed for {done.kept + done.corrupt} run(s); results are "
                    f"written and the runs wait in {root / SPOOL_DIR} "
                    "(python -m subspacelab replay-tracking)",
                    stacklevel=2,
                )
        elif mode == "async":
            with (root / SPOOL_DIR / "flush.log").open("a") as log_file:
                subprocess.Popen(
                    [sys.executable, "-m", "subspacelab", "replay-tracking"],
                    cwd=root,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=log_file,
                    start_new_session=True,  # outlives the stage; DVC does not wait for it
                )
    except Exception as exc:  # a full disk, a broken store: the results are committed
        warnings.warn(f"MLflow logging not started ({exc}); the run waits in {path}", stacklevel=2)


def spool(record: RunRecord, root: Path) -> Path:
    """Write a record to the spool directory (giving it its spool id)."""
    record.spool_id = record.spool_id or uuid.uuid4().hex
    record.parent_run_id = record.parent_run_id or os.environ.get(PARENT_ENV, "")
    path = root / SPOOL_DIR / f"{record.end_ms}-{record.stage}-{record.spool_id}.json"
    write_json(path, asdict(record))
    return path


class Replayed(NamedTuple):
    """What a replay did: runs sent, runs still spooled, unreadable spool files set aside."""

    sent: int
    kept: int
    corrupt: int


def spooled_runs(root: Path) -> list[RunRecord]:
    """The runs waiting in the spool at ``root`` (unreadable files skipped), with artifact paths
    relative to ``root``: what a cluster worker hands back before its clone disappears."""
    runs = []
    for path in sorted((root / SPOOL_DIR).glob("*.json")):
        try:
            record = load_record(path)
        except CorruptFileError as exc:
            log.warning("not handing back %s: %s", path.name, exc)
            continue
        record.artifacts = [_relative(Path(a), root.resolve()) for a in record.artifacts]
        runs.append(record)
    return runs


def _relative(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` when it lies inside it, else unchanged."""
    resolved = path.resolve() if path.is_absolute() else path
    return str(resolved.relative_to(base)) if resolved.is_relative_to(base) else str(path)


def load_record(path: Path) -> RunRecord:
    """A spooled run; CorruptFileError if the file is not a valid record."""
    data = read_json(path)
    try:
        record = RunRecord(**data)
    except TypeError as exc:
        raise CorruptFileError(f"{path}: not a spooled run ({exc})") from None
    record.spool_id = record.spool_id or path.stem  # spooled before runs had ids
    return record


def replay(root: Path) -> Replayed:
    """Send spooled runs, oldest first, under a lock; unreadable files are moved to
    ``corrupt/`` with a warning naming them, and the rest are still sent."""
    spool_dir = root / SPOOL_DIR
    spool_dir.mkdir(parents=True, exist_ok=True)
    sent = kept = corrupt = 0
    uri = tracking_uri(root)
    with (spool_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one sender at a time
        for path in sorted(spool_dir.glob("*.json")):
            try:
                record = load_record(path)
            except CorruptFileError as exc:
                aside = spool_dir / CORRUPT_DIR / path.name
                aside.parent.mkdir(exist_ok=True)
                os.replace(path, aside)
                log.warning("skipped a corrupt spool file, moved to %s: %s", aside, exc)
                corrupt += 1
                continue
            try:
                _send(record, uri, root)
            except Exception as exc:  # keep the record for the next try
                log.warning("could not send %s: %s", path.name, exc)
                kept += 1
                continue
            path.unlink()
            sent += 1
    return Replayed(sent, kept, corrupt)


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
