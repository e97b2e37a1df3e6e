"""MLflow tracking that never costs a result.

One experiment per study, tagged as model training (``mlflow.experimentKind``) and described by
its paper. Each execution of a stage is a run, nested under the study's chain run (one chain run
per study, git commit and params), tagged with git commit, study, step and DVC stage. Inside a
stage run:

- every trained model (each Lightning ``fit``, see :class:`subspacelab.nets.training.LabLogger`)
  is a child run with its own params and per-epoch metric history;
- every input directory is a dataset input whose digest is DVC's hash of it (``<md5>.dir``, as
  in dvc.lock), its source the DVC path;
- every model file a models step writes is a logged model (weights stay with DVC) tagged with its
  DVC path and hashes, output of the child run that trained it when the names match.

The chain run carries the study's claims: one tag per claim with its verdict, and the claims
table as its description. The default store is a SQLite file at the repository root (an absolute
path, so queued DVC experiments in temporary copies log to the same place); MLFLOW_TRACKING_URI
overrides it, and SUBSPACELAB_PARENT_RUN_ID makes chain runs children of an outer run (the
Prefect lab flow's).

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
import hashlib
import json
import logging
import os
import re
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
EXPERIMENT_KIND = "custom_model_development"  # MLflow's kind for model training (not GenAI)
META = "_meta.json"  # a step directory's manifest (written by the runner)
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
    models: list[dict[str, Any]] = field(default_factory=list)  # trained models: child runs
    datasets: list[dict[str, Any]] = field(default_factory=list)  # inputs, by DVC path and hash
    model_files: list[dict[str, Any]] = field(default_factory=list)  # -> logged models
    claims: list[dict[str, Any]] = field(default_factory=list)  # the report's: on the chain run
    paper: str = ""  # the experiment's description
    spool_id: str = ""
    parent_run_id: str = ""  # SUBSPACELAB_PARENT_RUN_ID when spooled (a worker's runs keep it)


_MODELS: list[dict[str, Any]] = []


def add_model(record: dict[str, Any]) -> None:
    """Keep a trained model's record (name, params, metric history) for the running stage; a
    repeated name gets `` #2``, `` #3``... so each stays its own child run."""
    names = {m["name"] for m in _MODELS}
    name, i = record["name"], 2
    while name in names:
        name, i = f"{record['name']} #{i}", i + 1
    _MODELS.append({**record, "name": name})


def take_models() -> list[dict[str, Any]]:
    """The models trained since the last call (the runner calls it before and after a step)."""
    out = list(_MODELS)
    _MODELS.clear()
    return out


def file_md5(path: Path, chunk: int = 1 << 20) -> str:
    """Hex MD5 of a file, as DVC hashes it."""
    h = hashlib.md5()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def dvc_dir_md5(directory: Path) -> tuple[str, dict[str, str]]:
    """DVC's hash of a directory (``<md5>.dir``, the value dvc.lock records) and each file's MD5.

    DVC hashes the JSON list of ``{"md5", "relpath"}`` of its files, sorted by path. File MD5s
    come from the step's ``_meta.json`` manifest when it has them (no re-read of large outputs)
    and the file is unchanged since (same size, not modified after the manifest); the manifest
    itself and any other file are hashed here.
    """
    listed: dict[str, Any] = {}
    written = 0
    if (directory / META).is_file():
        listed = read_json(directory / META).get("files", {})
        written = (directory / META).stat().st_mtime_ns
    md5s = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = path.relative_to(directory).as_posix()
        entry, stat = listed.get(rel, {}), path.stat()
        unchanged = entry.get("bytes") == stat.st_size and stat.st_mtime_ns <= written
        md5s[rel] = (entry.get("md5") if unchanged else None) or file_md5(path)
    entries = [{"md5": md5, "relpath": rel} for rel, md5 in sorted(md5s.items())]
    digest = hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest()
    return f"{digest}.dir", md5s


def dataset_ref(root: Path, directory: Path, context: str) -> dict[str, Any]:
    """A step directory as an MLflow dataset input: its DVC path, hash, size and file count."""
    digest, md5s = dvc_dir_md5(directory)
    files = [directory / rel for rel in md5s]
    return {
        "name": directory.relative_to(root).as_posix(),
        "digest": digest,
        "context": context,
        "files": len(files),
        "bytes": sum(f.stat().st_size for f in files),
    }


def model_file_refs(root: Path, directory: Path) -> list[dict[str, Any]]:
    """The model files (``*.safetensors``) of a models step, with their DVC path and hashes."""
    digest, md5s = dvc_dir_md5(directory)
    listed = read_json(directory / META).get("files", {}) if (directory / META).is_file() else {}
    out = []
    for rel, md5 in md5s.items():
        if not rel.endswith(".safetensors"):
            continue
        path = directory / rel
        out.append(
            {
                "name": Path(rel).stem,
                "path": path.relative_to(root).as_posix(),
                "md5": md5,
                "sha256": listed.get(rel, {}).get("sha256", ""),
                "bytes": path.stat().st_size,
                "dvc_out": directory.relative_to(root).as_posix(),
                "dvc_out_md5": digest,
            }
        )
    return out


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
    exp_id = _experiment(client, record, uri, root)
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
    children = _log_models(client, exp_id, run_id, record)
    _log_datasets(client, run_id, record)
    _log_model_files(client, exp_id, run_id, children, record)
    client.set_terminated(run_id, "FINISHED", end_time=record.end_ms)
    if record.claims:
        _log_claims(client, chain_id, record.claims)
    if record.final:
        client.set_terminated(chain_id, "FINISHED", end_time=record.end_ms)
    return run_id


def _experiment(client: Any, record: RunRecord, uri: str, root: Path) -> str:
    """The study's experiment (created on first use), tagged as model training and described
    by its paper."""
    exp = client.get_experiment_by_name(record.study)
    if exp is None:
        exp_id = client.create_experiment(
            record.study, artifact_location=_artifact_location(uri, root, record.study)
        )
        tags: dict[str, str] = {}
    else:
        exp_id, tags = exp.experiment_id, exp.tags
    wanted = {"mlflow.experimentKind": EXPERIMENT_KIND}
    if record.paper:
        wanted["mlflow.note.content"] = record.paper
    for key, value in wanted.items():
        if tags.get(key) != value:
            client.set_experiment_tag(exp_id, key, value)
    return exp_id


def _log_models(client: Any, exp_id: str, run_id: str, record: RunRecord) -> dict[str, str]:
    """Each trained model as a child run of the stage run: params and metric history."""
    from mlflow.entities import Metric, Param

    children = {}
    for model in record.models:
        tags = {
            "mlflow.parentRunId": run_id,
            "mlflow.runName": model["name"],
            "subspacelab.role": "model",
            "subspacelab.study": record.study,
            "dvc_stage": record.stage,
            "git_commit": record.tags.get("git_commit", "unknown"),
            "subspacelab.stage_run_id": run_id,
        }
        child = client.create_run(exp_id, start_time=model["start_ms"], tags=tags).info.run_id
        metrics = [Metric(k, v, ts, step) for k, v, step, ts in model["metrics"]]
        params = [Param(k, str(v)[:6000]) for k, v in sorted(model["params"].items())]
        for i in range(0, len(params), 100):  # MLflow's limits per log_batch call
            client.log_batch(child, params=params[i : i + 100])
        for i in range(0, len(metrics), 1000):
            client.log_batch(child, metrics=metrics[i : i + 1000])
        client.set_terminated(child, model["status"], end_time=model["end_ms"])
        children[model["name"]] = child
    return children


def _log_datasets(client: Any, run_id: str, record: RunRecord) -> None:
    """The stage's inputs as dataset inputs: name and source the DVC path, digest DVC's hash."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    inputs = []
    commit = record.tags.get("git_commit", "unknown")
    for ref in record.datasets:
        source = {"path": ref["name"], "md5": ref["digest"], "git_commit": commit}
        dataset = Dataset(
            name=ref["name"],
            digest=ref["digest"],
            source_type="dvc",
            source=json.dumps(source),
            profile=json.dumps({"files": ref["files"], "bytes": ref["bytes"]}),
        )
        inputs.append(DatasetInput(dataset, tags=[InputTag("mlflow.data.context", ref["context"])]))
    if inputs:
        client.log_inputs(run_id, datasets=inputs)


_MODEL_NAME_FORBIDDEN = re.compile(r"[/:.%\"']")


def logged_model_name(file_stem: str) -> str:
    """A model file's stem as an MLflow logged-model name, which may not hold ``/ : . % " '``
    (``M1_lam0.0005_s0`` -> ``M1_lam0_0005_s0``); the stem itself stays in the ``file`` tag."""
    return _MODEL_NAME_FORBIDDEN.sub("_", file_stem)


def _log_model_files(
    client: Any, exp_id: str, run_id: str, children: dict[str, str], record: RunRecord
) -> None:
    """Each model file as a logged model (no weights copied: DVC holds them), tagged with its
    DVC path and hashes; output of the child run of the same name, else of the stage run."""
    from mlflow.entities import LoggedModelOutput

    outputs: dict[str, list[Any]] = {}
    for ref in record.model_files:
        source = children.get(ref["name"], run_id)
        model = client.create_logged_model(
            exp_id,
            name=logged_model_name(ref["name"]),
            source_run_id=source,
            tags={
                "file": ref["name"],
                "dvc.path": ref["path"],
                "dvc.md5": ref["md5"],
                "dvc.out": ref["dvc_out"],
                "dvc.out_md5": ref["dvc_out_md5"],
                "sha256": ref["sha256"],
                "bytes": str(ref["bytes"]),
                "dvc_stage": record.stage,
            },
            model_type="safetensors",
        )
        client.finalize_logged_model(model.model_id, "READY")
        outputs.setdefault(source, []).append(LoggedModelOutput(model.model_id, 0))
    for source, models in outputs.items():
        client.log_outputs(source, models)


def paper_note(title: str, arxiv: str, group: str, slug: str) -> str:
    """An experiment's description: the paper (arXiv links), its group and where the report is."""
    links = ", ".join(f"[arXiv:{a}](https://arxiv.org/abs/{a})" for a in arxiv.split(", ") if a)
    return f"**{title}** ({links}); group: {group}. Report: reports/{slug}/ (claims, plots)."


def claims_markdown(claims: Sequence[Mapping[str, Any]]) -> str:
    """The claims table (claim, relation, verdict, conditions with their intervals) as Markdown."""
    from subspacelab.summary import fmt_measured, fmt_tests

    lines = ["| claim | miniature relation | verdict | measured |", "|---|---|---|---|"]
    for c in claims:
        measured = "; ".join(filter(None, [fmt_tests(c["tests"]), fmt_measured(c["measured"])]))
        cells = [c["id"], c["statement"], c["verdict"], measured]
        lines.append("| " + " | ".join(str(x).replace("|", "\\|") for x in cells) + " |")
    return "\n".join(lines)


def _log_claims(client: Any, chain_id: str, claims: Sequence[Mapping[str, Any]]) -> None:
    """Verdicts as tags of the chain run (``claim.<id>``), the claims table as its description."""
    from mlflow.entities import RunTag

    held = sum(c["verdict"] == "holds" for c in claims)
    tags = [RunTag(f"claim.{c['id']}", c["verdict"]) for c in claims]
    tags += [
        RunTag("claims", f"{held}/{len(claims)} hold"),
        RunTag("mlflow.note.content", claims_markdown(claims)),
    ]
    client.log_batch(chain_id, tags=tags)


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
