"""Prefect flows: the lab and each study, generated from the same registry as dvc.yaml.

Each task reproduces one DVC stage (``dvc --wait-for-lock repro --single-item <stage>``), so a
flow leaves exactly the outputs ``dvc repro`` would, DVC stays the one cache, and a stage whose
inputs did not change is skipped by DVC. Run locally they need no server: Prefect starts a
temporary one in process. ``python -m flows [study ...]`` runs them from the command line.

With a work pool (``deployment`` names the study-worker deployment, see prefect.yaml and
docs/CLUSTER.md) the lab flow fans one flow run out per study instead, retries a run that crashed
or failed, and merges each worker's dvc.lock entries and reports into its own workspace.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.context import get_run_context
from prefect.deployments import run_deployment
from prefect.logging import get_run_logger

from flows.cluster import (
    checkout_merged,
    close_lab_run,
    git_head,
    lock_entries,
    merge_result,
    open_lab_run,
    study_stages,
    upstream_stages,
)
from flows.tasks import dvc_chain, dvc_stage, stop_stages
from subspacelab.io import read_json
from subspacelab.lab import inspect as inspect_repo
from subspacelab.lab import lock_order
from subspacelab.registry import get_study, report_paths, studies
from subspacelab.tracking import SPOOL_DIR, replay, tracking_uri

__all__ = ["dvc_stage", "lab_flow", "study_flow"]


@flow(name="study", flow_run_name="study-{slug}")
def study_flow(slug: str, root: str = ".") -> dict[str, Any]:
    """One study's chain, step by step in registry order; returns its claims."""
    study = get_study(slug)
    root_path = Path(root).resolve()
    for step in study.steps:
        dvc_stage(study.stage_name(step.name), str(root_path))
    return _claims_row(root_path, slug)


@flow(name="lab")
def lab_flow(
    slugs: list[str] | None = None,
    root: str = ".",
    deployment: str | None = None,
    retries: int = 1,
    poll_s: float = 2.0,
) -> list[dict[str, Any]]:
    """Every study, then the summary; or only the studies named (the summary needs them all).
    Locally, independent chains run side by side (as many as the flow's task runner allows).

    ``deployment`` (``study-worker/<name>``): run each study on the work pool instead of here,
    with up to ``retries`` new flow runs for a study whose run crashed or failed.
    """
    chosen = slugs or sorted(studies())
    root_path = Path(root).resolve()
    if deployment:
        results = _fan_out(chosen, root_path, deployment, retries, poll_s)
    else:
        try:
            results = _side_by_side(chosen, root_path)
        except KeyboardInterrupt:  # Ctrl-C: stop every running chain before giving up
            stop_stages()
            raise
    if set(chosen) >= set(studies()):
        dvc_stage("summary", str(root_path))
    if not deployment:
        _, order = inspect_repo(root_path)
        lock_order(root_path, order)  # dvc.lock entries in a sequential `dvc repro`'s order
    return results


def _side_by_side(chosen: list[str], root: Path) -> list[dict[str, Any]]:
    """Each study's chain as one task (one DVC process, which holds the repository lock only
    between commands), started once the chains of the studies it uses are done; the flow's
    task runner decides how many run at once (``python -m flows``: ``lab.jobs``)."""
    futures: dict[str, Any] = {}
    pending = list(chosen)
    while pending:  # submit in dependency order, so a waiting chain never blocks its upstream
        for slug in list(pending):
            used = _used_studies(slug) & set(chosen)
            if used <= set(futures):
                stages = [get_study(slug).stage_name(st.name) for st in get_study(slug).steps]
                futures[slug] = dvc_chain.submit(
                    slug, stages, str(root), wait_for=[futures[u] for u in used]
                )
                pending.remove(slug)
    for future in futures.values():
        future.result()
    return [_claims_row(root, slug) for slug in chosen]


def _claims_row(root: Path, slug: str) -> dict[str, Any]:
    claims = read_json(report_paths(root, slug)["claims"])
    return {
        "study": slug,
        "holding": sum(c["holds"] for c in claims),
        "inconclusive": sum(c["verdict"] == "inconclusive" for c in claims),
        "claims": len(claims),
    }


def _fan_out(
    chosen: list[str], root: Path, deployment: str, retries: int, poll_s: float
) -> list[dict[str, Any]]:
    """One flow run of ``deployment`` per study, started once the studies it uses (``uses=``)
    are merged; each result is merged as it completes, a crashed or failed run is retried."""
    logger = get_run_logger()
    flow_run = get_run_context().flow_run
    parent = open_lab_run(root, chosen, git_head(root), flow_run.name if flow_run else "lab")
    uri = tracking_uri(root)
    params = {"parent_run_id": parent, "tracking_uri": uri if uri.startswith("http") else None}
    after = {slug: _used_studies(slug) & set(chosen) for slug in chosen}

    def submit(slug: str, attempt: int) -> tuple[Any, int]:
        upstream = lock_entries(root, upstream_stages(slug))  # as merged so far
        run = run_deployment(
            deployment,
            parameters={"slug": slug, "upstream_lock": upstream, **params},
            timeout=0,
            tags=[f"attempt-{attempt}"],
        )
        logger.info("%s: flow run %s (attempt %d) on %s", slug, run.name, attempt, deployment)
        return run.id, attempt

    waiting = list(chosen)
    pending: dict[str, tuple[Any, int]] = {}
    done: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    ok = False
    try:
        with get_client(sync_client=True) as client:
            while waiting or pending:
                for slug in list(waiting):
                    if after[slug] & set(failed):
                        waiting.remove(slug)
                        failed[slug] = f"not run: {sorted(after[slug] & set(failed))} failed"
                    elif after[slug] <= set(done):
                        waiting.remove(slug)
                        pending[slug] = submit(slug, 1)
                if not pending:
                    continue
                time.sleep(poll_s)
                for slug, (run_id, attempt) in list(pending.items()):
                    state = client.read_flow_run(run_id).state
                    if state is None or not state.is_final():
                        continue
                    del pending[slug]
                    if state.is_completed():
                        result = state.result()
                        merge_result(root, result)
                        keys = ("study", "holding", "inconclusive", "claims")
                        done[slug] = {k: result[k] for k in keys}
                    elif attempt <= retries:
                        kind = state.type.value
                        logger.warning("%s: run %s ended %s; retrying", slug, run_id, kind)
                        pending[slug] = submit(slug, attempt + 1)
                    else:
                        failed[slug] = f"{state.type.value}: {state.message}"
        merged = [stage for slug in done for stage in study_stages(slug)]
        if merged:
            checkout_merged(root, merged)
            _send_spooled(root)
        ok = not failed
    finally:
        close_lab_run(root, parent, ok=ok)
    if failed:
        raise RuntimeError(f"studies failed on {deployment}: {failed}")
    return [done[slug] for slug in chosen]


def _send_spooled(root: Path) -> None:
    """Send the MLflow runs the workers could not (merged into this workspace's spool); those
    that still fail wait there for ``python -m subspacelab replay-tracking``."""
    try:
        done = replay(root)
    except Exception as exc:  # MLflow never costs a result: the merge is done
        get_run_logger().warning("MLflow runs not sent (%s); they wait in %s", exc, SPOOL_DIR)
        return
    if done.kept or done.corrupt:
        get_run_logger().warning(
            "%d MLflow run(s) wait in %s: python -m subspacelab replay-tracking",
            done.kept + done.corrupt,
            root / SPOOL_DIR,
        )


def _used_studies(slug: str) -> set[str]:
    """The other studies whose steps this study uses."""
    return {ref.partition(".")[0] for step in get_study(slug).steps for ref in step.uses}
