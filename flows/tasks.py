"""The Prefect tasks of the lab: reproduce DVC stages in a checkout of the repository."""

from __future__ import annotations

import os
import subprocess
import sys
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


def _repro(stages: list[str], root: str, env: dict[str, str] | None) -> None:
    logger = get_run_logger()
    cmd = [sys.executable, "-m", "dvc", "--wait-for-lock", "repro", "--single-item", *stages]
    run_env = env if env is not None else stage_env(Path(root))
    proc = subprocess.run(cmd, cwd=root, env=run_env, capture_output=True, text=True, check=False)
    for line in (proc.stdout + proc.stderr).splitlines():
        if line.strip():
            logger.info("%s", line)
    if proc.returncode != 0:
        raise RuntimeError(
            f"dvc stage(s) {' '.join(stages)} failed (exit {proc.returncode}): "
            f"{proc.stderr[-2000:]}"
        )


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
