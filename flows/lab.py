"""Prefect flows: the lab and each study, generated from the same registry as dvc.yaml.

Each task reproduces one DVC stage (``dvc --wait-for-lock repro --single-item <stage>``), so a
flow leaves exactly the outputs ``dvc repro`` would, DVC stays the one cache, and a stage whose
inputs did not change is skipped by DVC. Run locally they need no server: Prefect starts a
temporary one in process. ``python -m flows [study ...]`` runs them from the command line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.logging import get_run_logger

from subspacelab.io import read_json
from subspacelab.registry import get_study, report_paths, studies


def _env() -> dict[str, str]:
    """The stage commands' `python` must be this interpreter (the project's venv)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@task(name="dvc-stage", task_run_name="{stage}")
def dvc_stage(stage: str, root: str) -> str:
    """Reproduce one DVC stage (skipped by DVC when nothing it depends on changed)."""
    logger = get_run_logger()
    cmd = [sys.executable, "-m", "dvc", "--wait-for-lock", "repro", "--single-item", stage]
    proc = subprocess.run(cmd, cwd=root, env=_env(), capture_output=True, text=True, check=False)
    for line in (proc.stdout + proc.stderr).splitlines():
        if line.strip():
            logger.info("%s", line)
    if proc.returncode != 0:
        raise RuntimeError(
            f"dvc stage {stage} failed (exit {proc.returncode}): {proc.stderr[-2000:]}"
        )
    return stage


@flow(name="study", flow_run_name="study-{slug}")
def study_flow(slug: str, root: str = ".") -> dict[str, Any]:
    """One study's chain, step by step in registry order; returns its claims."""
    study = get_study(slug)
    root_path = Path(root).resolve()
    for step in study.steps:
        dvc_stage(study.stage_name(step.name), str(root_path))
    claims = read_json(report_paths(root_path, slug)["claims"])
    return {"study": slug, "holding": sum(c["holds"] for c in claims), "claims": len(claims)}


@flow(name="lab")
def lab_flow(slugs: list[str] | None = None, root: str = ".") -> list[dict[str, Any]]:
    """Every study, then the summary; or only the studies named (the summary needs them all)."""
    chosen = slugs or sorted(studies())
    results = [study_flow(slug, root) for slug in chosen]
    if set(chosen) >= set(studies()):
        dvc_stage("summary", str(Path(root).resolve()))
    return results
