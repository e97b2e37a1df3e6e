"""Execute one step of one study: validate, check inputs, compute into a staging area, commit.

The order guarantees the quality bar: params and inputs are checked before any compute; outputs
are written under ``.stage-tmp/`` and moved into place only when the step has finished, so a
killed stage leaves nothing half-written where DVC looks. A non-finite loss or metric, or a full
disk, stops the step before that commit. The MLflow run is spooled just before the commit and
sent after it; sending may fail without losing anything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from threadpoolctl import threadpool_limits

from subspacelab import tracking
from subspacelab.config import (
    LabConfig,
    ParamsError,
    lab_config,
    read_params,
    study_config,
    to_flat_dict,
    unpinned,
)
from subspacelab.console import StageConsole
from subspacelab.io import (
    NonFiniteError,
    disk_full_is_clear,
    file_hashes,
    recover_dir,
    replace_dir,
    write_json,
)
from subspacelab.registry import (
    Report,
    Step,
    StepContext,
    StepOutput,
    Study,
    get_study,
    report_paths,
    resolve_use,
    seed_all,
    step_dir,
)
from subspacelab.report import META, write_report

STAGING = ".stage-tmp"


class MissingInputError(FileNotFoundError):
    """An upstream step's output is missing or incomplete."""


class _Undeclared:
    """Stands in for a config section a step did not declare in ``reads``."""

    def __init__(self, slug: str, step: str, section: str) -> None:
        self._where = (slug, step, section)

    def __getattr__(self, name: str) -> Any:
        slug, step, section = self._where
        raise AttributeError(
            f"step {slug}.{step} reads config section {section!r} without declaring it; "
            f"add {section!r} to the step's reads= so DVC tracks it"
        )


def restricted_config(cfg: object, study: Study, step: Step) -> object:
    """A copy of ``cfg`` in which only ``seeds`` and the step's declared sections are readable."""
    hidden = {
        f.name: _Undeclared(study.slug, step.name, f.name)
        for f in dataclasses.fields(cfg)  # type: ignore[arg-type]
        if f.name != "seeds" and f.name not in step.reads
    }
    return dataclasses.replace(cfg, **hidden)  # type: ignore[type-var]


def resolve_device(lab: LabConfig) -> torch.device:
    """lab.device: auto takes the GPU when there is one."""
    if lab.device == "cuda" and not torch.cuda.is_available():
        raise ParamsError(
            "lab.device: got 'cuda' but no CUDA device is visible; allowed: auto, cpu"
        )
    if lab.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(lab.device)


def load_configs(root: Path, study: Study) -> tuple[LabConfig, Any, dict[str, Any]]:
    """Validated lab config, the study's active config and the raw params."""
    params = read_params(root / "params.yaml")
    lab = lab_config(params)
    cfg = study_config(study.config, params, study.slug, lab.profile)
    missing = unpinned(cfg, f"{study.slug}.{lab.profile}")
    if missing:
        raise ParamsError(
            f"{missing[0]}; unpinned inputs are never fetched or loaded: pin them in params.yaml "
            "(`python -m subspacelab check` lists them all)"
        )
    return lab, cfg, params


def params_digest(params: Mapping[str, Any], study: Study) -> str:
    """Short hash of the lab section and the study's section."""
    blob = json.dumps(
        {"lab": params.get("lab"), study.slug: params.get(study.slug)}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def check_inputs(root: Path, study: Study, step: Step) -> dict[str, Path]:
    """Directories of the steps this one needs; MissingInputError if one is absent or partial."""
    inputs = {}
    for name in step.needs:
        up = study.step(name)
        path = step_dir(root, study, up)
        if not (path / META).is_file():
            raise MissingInputError(
                f"{path}: missing or incomplete output of step {name}; "
                f"run `dvc repro {study.stage_name(name)}` first"
            )
        inputs[name] = path
    for ref in step.uses:
        other, up = resolve_use(ref)
        path = step_dir(root, other, up)
        if not (path / META).is_file():
            raise MissingInputError(
                f"{path}: missing or incomplete output of {ref}, which {study.slug}.{step.name} "
                f"uses; run `dvc repro {other.stage_name(up.name)}` first"
            )
        inputs[ref] = path
    return inputs


def _final_paths(root: Path, study: Study, step: Step) -> list[Path]:
    """Where a step's outputs are committed (the step directory, or the report's files)."""
    if step.kind != "report":
        return [step_dir(root, study, step)]
    paths = report_paths(root, study.slug)
    names = ("metrics", "headline", "claims", "tables", "plots")
    return [paths[n] for n in names] + ([paths["curves"]] if study.curves else [])


def _commit(root: Path, study: Study, step: Step, staged: Path) -> list[Path]:
    if step.kind != "report":
        final = step_dir(root, study, step)
        replace_dir(staged / "out", final)
        return [final]
    paths = report_paths(root, study.slug)
    paths["metrics"].parent.mkdir(parents=True, exist_ok=True)
    replace_dir(staged / "plots", paths["plots"])
    if (staged / "curves").is_dir():
        replace_dir(staged / "curves", paths["curves"])
    elif paths["curves"].exists():
        shutil.rmtree(paths["curves"])  # the study no longer declares curves
    # metrics last: it marks the report complete
    for name in ("tables", "claims", "headline", "metrics"):
        os.replace(staged / paths[name].name, paths[name])
    return _final_paths(root, study, step)


def run_step(root: Path, slug: str, step_name: str) -> Path:
    """Run one step of one study under ``root`` (the repository); returns its output location."""
    study = get_study(slug)
    step = study.step(step_name)
    stage = study.stage_name(step_name)
    lab, cfg, params = load_configs(root, study)  # all validation before any compute
    device = resolve_device(lab)
    inputs = check_inputs(root, study, step)
    rank = process_rank(lab)

    if rank == 0:
        for final in _final_paths(root, study, step):
            recover_dir(final)  # what a commit killed between two renames left behind
    # under multi-process training every rank runs this step; each has its own scratch area
    staging = root / STAGING / (stage if rank == 0 else f"{stage}.rank{rank}")
    if staging.exists():
        shutil.rmtree(staging)  # leftovers of a killed run
    out = staging / ("out" if step.kind != "report" else "plots")
    out.mkdir(parents=True)
    torch.set_num_threads(lab.threads)  # determinism in training: Lightning's deterministic flag
    seed_all(cfg.seeds[0])
    # from here on the process's output goes to logs/<stage>.log; the console gets our lines
    con = StageConsole(root, stage if rank == 0 else f"{stage}.rank{rank}", quiet=rank != 0)
    say = con.say if rank == 0 else _silent
    ctx = StepContext(
        study=study,
        step=step,
        cfg=restricted_config(cfg, study, step),
        lab=lab,
        root=root,
        out=out,
        inputs=inputs,
        device=device,
        progress=say,
    )
    start_ms = tracking.now_ms()
    t0 = time.perf_counter()
    tracking.take_models()  # models of an earlier step in this process are not this step's
    spooled: Path | None = None
    try:
        # a full disk anywhere before the commit is one clear error, and nothing is committed
        with disk_full_is_clear(stage), threadpool_limits(lab.threads):
            # BLAS in numpy/scipy/sklearn is limited too, not only torch
            result = step.implementation(lab.profile)(ctx)
            wall_s = time.perf_counter() - t0
            if _finish_ranks(rank) != 0:
                return step_dir(root, study, step)  # rank 0 commits and logs; this scratch goes
            logged: dict[str, float] = {}
            claims: list[dict[str, Any]] = []
            if step.kind == "report":
                if not isinstance(result, Report):
                    raise TypeError(f"the last step of {slug} must return a Report")
                doc, claims = write_report(root, study, staging, result, lab, wall_s)
                logged = {f"{k}.mean": v["mean"] for k, v in doc["metrics"].items()}
                for c in claims:
                    logged[f"claim.{c['id']}.holds"] = float(c["holds"])
                    logged[f"claim.{c['id']}.inconclusive"] = float(c["verdict"] == "inconclusive")
            else:
                if isinstance(result, StepOutput):
                    logged = _finite(stage, result.metrics)
                write_json(
                    out / META,
                    {
                        "study": slug,
                        "step": step_name,
                        "wall_s": wall_s,
                        "profile": lab.profile,
                        "files": _manifest(out),
                    },
                )
            record = _record(root, study, step, lab, cfg, params, device, inputs, out, claims)
            record.metrics = {**logged, "wall_s": wall_s}
            record.artifacts.append(str(con.path))
            record.start_ms, record.end_ms = start_ms, tracking.now_ms()
            spooled = tracking.spool(record, root)  # the last write before the commit
        committed = _commit(root, study, step, staging)
    except BaseException:
        if spooled is not None:
            spooled.unlink(missing_ok=True)  # nothing committed: no run to log
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        con.close(sys.exc_info()[1])
    con.done(wall_s, [str(p.relative_to(root)) for p in committed])
    tracking.dispatch(spooled, root)
    return committed[0]


def _finite(stage: str, metrics: Mapping[str, float]) -> dict[str, float]:
    """A step's logged scalars; a NonFiniteError naming the stage and metric if one is NaN/Inf."""
    for name, value in metrics.items():
        if not math.isfinite(float(value)):
            raise NonFiniteError(
                f"{stage}: metric {name!r} is {value}; nothing was committed (a diverged run or "
                "an undefined score)"
            )
    return dict(metrics)


def _record(
    root: Path,
    study: Study,
    step: Step,
    lab: LabConfig,
    cfg: Any,
    params: Mapping[str, Any],
    device: torch.device,
    inputs: Mapping[str, Path],
    staged_out: Path,
    claims: list[dict[str, Any]],
) -> tracking.RunRecord:
    """The MLflow run of one step execution, built before the commit (its metrics and times are
    filled in by the caller): inputs as DVC-hashed datasets, the staged output's DVC hash under
    its final path, model files as logged models, the report's claims for the chain run."""
    flat = {f"cfg.{k}": v for k, v in to_flat_dict(cfg).items()}
    flat.update({f"lab.{k}": v for k, v in to_flat_dict(lab).items()})
    commit = tracking.git_commit(root)
    stage = study.stage_name(step.name)
    tags = {
        "git_commit": commit,
        "subspacelab.study": study.slug,
        "subspacelab.step": step.name,
        "subspacelab.role": "stage",
        "dvc_stage": stage,
        "profile": lab.profile,
        "device": str(device),
        "inputs": ",".join(str(p.relative_to(root)) for p in inputs.values()),
    }
    model_files: list[dict[str, Any]] = []
    if step.kind != "report":
        final = step_dir(root, study, step).relative_to(root).as_posix()
        digest = tracking.dataset_ref(root, staged_out, step.name)["digest"]
        tags.update({"dvc.out": final, "dvc.out_md5": digest})
        if step.kind == "models":
            staged = staged_out.relative_to(root).as_posix()
            for ref in tracking.model_file_refs(root, staged_out):
                ref["path"] = final + ref["path"].removeprefix(staged)
                ref["dvc_out"] = final
                model_files.append(ref)
    return tracking.RunRecord(
        study=study.slug,
        step=step.name,
        stage=stage,
        chain_key=f"{commit}:{params_digest(params, study)}",
        tags=tags,
        params=tracking.stringify(flat),
        metrics={},
        artifacts=_artifacts(step, _final_paths(root, study, step)),
        final=step.kind == "report",
        models=tracking.take_models(),
        datasets=[tracking.dataset_ref(root, path, name) for name, path in inputs.items()],
        model_files=model_files,
        claims=[
            {
                "id": c["id"],
                "statement": c["statement"],
                "verdict": c["verdict"],
                "tests": c["tests"],
                "measured": c["measured"],
            }
            for c in claims
        ],
        paper=tracking.paper_note(study.title, study.arxiv, study.group, study.slug),
    )


def process_rank(lab: LabConfig) -> int:
    """Global rank of this process in a multi-process training run; 0 when there is none.

    Lightning's ``ddp`` strategy reruns the stage's command line (``python -m stages <step>
    <study>``) once per extra device with LOCAL_RANK and NODE_RANK set; torchrun sets RANK, and
    Slurm's ``srun`` with several tasks SLURM_PROCID.
    """
    env = os.environ
    if "RANK" in env:
        return int(env["RANK"])
    if "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        return int(env["SLURM_PROCID"])
    node, local = int(env.get("NODE_RANK", "0")), int(env.get("LOCAL_RANK", "0"))
    return node * lab.accelerator_devices + local


def _finish_ranks(rank: int) -> int:
    """After a step that trained with several processes: wait until every rank has finished it
    (rank 0 commits only then) and return this process's rank in the process group."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return rank
    dist.barrier()
    if dist.get_rank() != rank:
        raise RuntimeError(
            f"process rank {dist.get_rank()} in the process group, {rank} from the environment"
        )
    return rank


def _silent(msg: str) -> None:
    """Progress of ranks other than 0: rank 0 speaks for the step."""


def _manifest(out: Path) -> dict[str, dict[str, Any]]:
    """Size, SHA-256 and MD5 (DVC's hash) of every file a step wrote: the model/data reference
    MLflow records, and what DVC's directory hash is computed from without re-reading them."""
    return {
        p.relative_to(out).as_posix(): {"bytes": p.stat().st_size, **file_hashes(p)}
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }


def _artifacts(step: Step, finals: list[Path]) -> list[str]:
    """Report files are logged whole; for data/models only their _meta.json (DVC holds files)."""
    return [str(p) for p in finals] if step.kind == "report" else [str(finals[0] / META)]
