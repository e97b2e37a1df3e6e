"""The lab on a pool of workers, with real components on loopback only.

A ``prefect server`` (SQLite, its own PREFECT_HOME), a process work pool and ``prefect worker``,
a local-directory DVC remote and an ``mlflow server`` (SQLite backend, local artifact root). The
repository's prefect.yaml deploys the lab flow and the study-worker flow; the lab is triggered for
the two fake studies. Both studies' first runs are killed mid-stage (the fake download hangs):
they are marked crashed, nothing was pushed or merged, the lab flow's retries complete, their
outputs are in the remote and in the lab's workspace, and MLflow holds their runs under the lab
run. Every process the test starts is stopped in ``finally``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import REPO, dvc, dvc_workspace

STUDIES = "tests.fake_study:FAKE,tests.fake_study:FAKE2"
POOL = "lab-test"
BIN = Path(sys.executable).parent
PREFECT = (str(BIN / "prefect"),)
SERVER = (*PREFECT, "server", "start", "--no-services")  # the API is all a process pool needs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, check: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except (OSError, ValueError, AttributeError):  # not up yet
            value = None
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"waited {timeout:.0f}s for {what}")


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return resp.status == 200


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.getsid(int(entry.name)) == sid:
                    pids.append(int(entry.name))
    return pids


def _kill_session(sid: int, sig: int) -> None:
    for pid in _session_pids(sid):
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


class Processes:
    """Long-running processes, each in its own session; all stopped by :meth:`stop_all`."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, cmd: list[str], env: dict[str, str], cwd: Path) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-4000:]

    def stop_all(self) -> None:
        for proc in self.procs.values():
            _kill_session(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for proc in self.procs.values():  # and whatever they started in their sessions
            _kill_session(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


def _test_prefect_yaml(ws: Path) -> None:
    """The repository's prefect.yaml, with one pool for both deployments (one worker on this
    box) and without the pip install step: the test's venv is shared with the rest of the suite,
    which an editable install of the clone would repoint (the flows run the clone's code anyway).
    """
    doc = yaml.safe_load((REPO / "prefect.yaml").read_text())
    doc["pull"] = [s for s in doc["pull"] if "pip install" not in str(s)]
    for dep in doc["deployments"]:
        dep["work_pool"]["name"] = POOL
    (ws / "prefect.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def _git(ws: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ws, check=True, capture_output=True, text=True
    ).stdout.strip()


def _remote_objects(remote: Path) -> set[str]:
    return {p.relative_to(remote).as_posix() for p in remote.rglob("*") if p.is_file()}


@contextlib.contextmanager
def _prefect_client(api: str) -> Iterator[Any]:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as c:
        yield c


def _create_pool(client: Any) -> None:
    """The process work pool, with room for the lab flow and one run per study at a time."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    client.create_work_pool(
        WorkPoolCreate(name=POOL, type="process", base_job_template=template, concurrency_limit=3)
    )


def _runs_of(client: Any, deployment_id: Any) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    return client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
    )


def _set_env(client: Any, deployment: Any, env: dict[str, str]) -> None:
    from prefect.client.schemas.actions import DeploymentUpdate

    job_variables = {**deployment.job_variables, "env": env}
    client.update_deployment(deployment.id, DeploymentUpdate(job_variables=job_variables))


@pytest.mark.slow
def test_lab_on_a_work_pool_survives_a_killed_worker(tmp_path: Path) -> None:
    ws = dvc_workspace(tmp_path)
    remote, clones, logs = tmp_path / "remote", tmp_path / "clones", tmp_path / "logs"
    for d in (remote, clones, logs):
        d.mkdir()
    dvc(ws, "remote", "add", "-d", "store", str(remote))
    _test_prefect_yaml(ws)
    _git(ws, "remote", "add", "origin", str(ws))  # workers clone the repository from here
    _git(ws, "add", "-A")
    _git(ws, "commit", "-q", "-m", "lab")

    api_port, mlflow_port = _free_port(), _free_port()
    api = f"http://127.0.0.1:{api_port}/api"
    mlflow_uri = f"http://127.0.0.1:{mlflow_port}"
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_LOGGING_TO_API_ENABLED": "false",
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "SUBSPACELAB_STUDIES": STUDIES,
        "TMPDIR": str(clones),  # the process worker's per-run directories (the clones)
    }
    env.pop("SUBSPACELAB_PARENT_RUN_ID", None)
    procs = Processes(logs)
    try:
        procs.start(
            "prefect-server",
            [*SERVER, "--host", "127.0.0.1", "--port", str(api_port)],
            env,
            tmp_path,
        )
        procs.start(
            "mlflow-server",
            [
                *("mlflow", "server", "--host", "127.0.0.1", "--port", str(mlflow_port)),
                *("--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"),
                *("--artifacts-destination", str(tmp_path / "mlartifacts"), "--workers", "1"),
            ],
            env,
            tmp_path,
        )
        _wait("prefect server", lambda: _http_ok(f"{api}/health"), 90)
        with _prefect_client(api) as client:
            _create_pool(client)
            procs.start("worker", [*PREFECT, "worker", "start", "--pool", POOL], env, tmp_path)
            deploy = subprocess.run(
                [*PREFECT, "--no-prompt", "deploy", "--all"],
                cwd=ws,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
            worker_dep = client.read_deployment_by_name("study-worker/gpu")
            lab_dep = client.read_deployment_by_name("lab/head")
            # the deployed commit is pinned in the workers' pull steps
            assert _git(ws, "rev-parse", "HEAD") in str(worker_dep.pull_steps)
            base_env = dict(worker_dep.job_variables.get("env", {}))
            _set_env(client, worker_dep, {**base_env, "FAKE_HANG": "1"})

            from prefect.deployments import run_deployment
            from prefect.settings import PREFECT_API_URL, temporary_settings

            with temporary_settings(updates={PREFECT_API_URL: api}):
                lab_run = run_deployment(
                    lab_dep.id, parameters={"slugs": ["fake", "fake2"], "poll_s": 1.0}, timeout=0
                )
            _wait("mlflow server", lambda: _http_ok(f"{mlflow_uri}/health"), 60)

            # both first runs hang in their download stage, each in its own clone
            def hanging() -> list[Path] | None:
                lab_state = client.read_flow_run(lab_run.id).state
                assert not lab_state.is_final(), f"{lab_state}\n{procs.log('worker')}"
                found = list(clones.glob("*/*/.stage-tmp/*_download/out/partial.txt"))
                return found if len(found) == 2 else None

            hung = _wait("both downloads to hang", hanging, 150)
            _set_env(client, worker_dep, base_env)  # the retries run normally
            for partial in hung:  # kill each run's whole process tree (flow, dvc, stage)
                clone = partial.parents[3]
                pid = next(
                    int(p.name)
                    for p in Path("/proc").iterdir()
                    if p.name.isdigit() and _cwd(p) == clone and "stages" in _cmdline(p)
                )
                _kill_session(os.getsid(pid), signal.SIGKILL)

            def first_attempts_final() -> list[Any] | None:
                runs = [r for r in _runs_of(client, worker_dep.id) if "attempt-1" in (r.tags or [])]
                return runs if len(runs) == 2 and all(r.state.is_final() for r in runs) else None

            killed = _wait("the killed runs to be marked", first_attempts_final, 60)
            assert all(r.state.is_crashed() or r.state.is_failed() for r in killed)
            # nothing half-pushed or half-merged: the remote is as it was, dvc.lock untouched
            assert _remote_objects(remote) == set()
            assert not (ws / "dvc.lock").exists()

            final = _wait(
                "the lab flow run",
                lambda: (r := client.read_flow_run(lab_run.id)).state.is_final() and r,
                240,
                every=1,
            )
            assert final.state.is_completed(), (
                f"{final.state}\n{procs.log('worker')}\n{procs.log('prefect-server')}"
            )
            retried = [r for r in _runs_of(client, worker_dep.id) if "attempt-2" in r.tags]
            assert sorted(r.state.type.value for r in retried) == ["COMPLETED", "COMPLETED"]
            assert {r.parameters["slug"] for r in retried} == {"fake", "fake2"}
            parent = retried[0].parameters["parent_run_id"]

        # the outputs reached the remote, and the lab's workspace is what `dvc repro` leaves
        lock = yaml.safe_load((ws / "dvc.lock").read_text())["stages"]
        for slug in ("fake", "fake2"):
            for stage in (f"{slug}_download", f"{slug}_fit"):
                md5 = lock[stage]["outs"][0]["md5"]
                assert (remote / "files/md5" / md5[:2] / md5[2:]).is_file()
            assert (ws / f"reports/{slug}/claims.json").is_file()
        assert (ws / "data/fake/download/x_0.safetensors").is_file()
        assert not (ws / "data/fake/download/partial.txt").exists()
        assert (ws / "reports/SUMMARY.md").is_file()
        assert "up to date" in dvc(ws, "status").stdout
        assert "in sync" in dvc(ws, "status", "--cloud").stdout

        # MLflow: the lab run is the parent of both studies' chain runs, each with its stages
        from mlflow.tracking import MlflowClient

        mlc = MlflowClient(tracking_uri=mlflow_uri)
        lab_exp = mlc.get_experiment_by_name("lab")
        (lab_mlrun,) = mlc.search_runs([lab_exp.experiment_id])
        assert lab_mlrun.info.run_id == parent
        assert lab_mlrun.info.status == "FINISHED"
        for slug in ("fake", "fake2"):
            exp = mlc.get_experiment_by_name(slug)
            (chain,) = mlc.search_runs([exp.experiment_id], "tags.`subspacelab.role` = 'chain'")
            assert chain.data.tags["mlflow.parentRunId"] == parent
            stages = mlc.search_runs([exp.experiment_id], "tags.`subspacelab.role` = 'stage'")
            assert sorted(r.data.tags["subspacelab.step"] for r in stages) == [
                "download",
                "fit",
                "report",
            ]
    finally:
        procs.stop_all()


def _cwd(proc: Path) -> Path | None:
    try:
        return Path(os.readlink(proc / "cwd"))
    except OSError:
        return None


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
