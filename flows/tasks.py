"""The Prefect tasks of the lab: reproduce DVC stages in a checkout of the repository."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger


def stage_env(root: Path) -> dict[str, str]:
    """Environment of the commands run in the checkout at ``root``.

    ``python`` is this interpreter (the project's venv), and the checkout's own code comes first
    on the path: a worker's clone runs its commit, whatever its environment has installed.
    """
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    path = [str(root / "src"), str(root), *filter(None, [env.get("PYTHONPATH")])]
    env["PYTHONPATH"] = os.pathsep.join(path)
    return env


_LIVE: set[subprocess.Popen[str]] = set()  # the DVC processes this flow's tasks are running
_LIVE_LOCK = threading.Lock()


def _repro(stages: list[str], root: str, env: dict[str, str] | None) -> None:
    logger = get_run_logger()
    cmd = [sys.executable, "-m", "dvc", "--wait-for-lock", "repro", "--single-item", *stages]
    run_env = env if env is not None else stage_env(Path(root))
    proc = subprocess.Popen(
        cmd,
        cwd=root,
        env=run_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a Ctrl-C reaches it once, through stop_stages
    )
    with _LIVE_LOCK:
        _LIVE.add(proc)
    try:
        out, err = proc.communicate()
    finally:
        with _LIVE_LOCK:
            _LIVE.discard(proc)
    for line in (out + err).splitlines():
        if line.strip():
            logger.info("%s", line)
    if proc.returncode != 0:
        raise RuntimeError(
            f"dvc stage(s) {' '.join(stages)} failed (exit {proc.returncode}): {err[-2000:]}"
        )


def stop_stages(grace_s: float = 60.0) -> None:
    """Ctrl-C for the flow's running stages: SIGINT to each DVC process group (DVC and the stage
    it runs, which cleans up its staging folder and commits nothing), SIGKILL for any still alive
    after ``grace_s``; returns once they are gone: the next `dvc repro` finds no stage running."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for proc in live:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
    deadline = time.monotonic() + grace_s
    for proc in live:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@task(name="dvc-stage", task_run_name="{stage}")
def dvc_stage(stage: str, root: str, env: dict[str, str] | None = None) -> str:
    """Reproduce one DVC stage (skipped by DVC when nothing it depends on changed)."""
    _repro([stage], root, env)
    return stage


@task(name="dvc-chain", task_run_name="{slug}")
def dvc_chain(
    slug: str, stages: list[str], root: str, env: dict[str, str] | None = None
) -> list[str]:
    """Reproduce a study's stages, in order, in one DVC process (a worker's whole chain)."""
    _repro(stages, root, env)
    return stages
