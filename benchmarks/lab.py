"""The lab's machinery: per-stage fixed cost, no-op ``dvc repro``, parallel vs sequential chains.

Run from a checkout (``--root``, default the current directory), so the same commands measure
an older commit exported with ``git archive``:

- ``python -m benchmarks.lab imports [slug ...]``: wall time of a process that imports the stage
  runner and one study, resolves the study and validates its params: everything
  ``python -m stages <step> <slug>`` does before the step's own code runs (median of 3); and the
  same work handed to the lab's fork server (:mod:`subspacelab.forkserver`), as ``make lab``
  runs a stage;
- ``python -m benchmarks.lab noop --copy DIR``: copy the checkout to ``DIR``, give every stage a
  placeholder output and let ``dvc commit -f`` record it, then time ``dvc status`` and
  ``dvc repro`` there (nothing is left to run, so both measure DVC's own checks);
- ``python -m benchmarks.lab heavy``: per stage, the heavy packages (Lightning, scikit-learn,
  matplotlib, SciPy) its process imports and those its step function can reach (static);
- ``python -m benchmarks.lab chains --copy DIR slug ...``: run the named studies' chains in a
  copy, once one stage at a time (``dvc repro``) and once with ``python -m subspacelab lab``
  (``--jobs 2``), each from empty outputs; wall times and whether the two dvc.lock files agree.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    extra = os.environ.get("BENCH_PYTHONPATH", "")  # e.g. a shim that hides libyaml
    env["PYTHONPATH"] = ":".join(filter(None, [extra, str(root / "src"), str(root)]))
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env.setdefault("MPLBACKEND", "Agg")
    env["SUBSPACELAB_TRACKING"] = "off"
    return env


def _run(cmd: list[str], root: Path) -> str:
    proc = subprocess.run(cmd, cwd=root, env=_env(root), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout


def _timed(cmd: list[str], root: Path) -> tuple[float, float]:
    """Wall and CPU (user + sys of the command and its children) seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    _run(cmd, root)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _median(cmd: list[str], root: Path, n: int = 3) -> dict[str, float]:
    runs = [_timed(cmd, root) for _ in range(n)]
    return {
        "wall_s": round(statistics.median(w for w, _ in runs), 2),
        "cpu_s": round(statistics.median(c for _, c in runs), 2),
    }


def imports(root: Path, slugs: list[str]) -> dict[str, dict[str, float]]:
    """Median wall and CPU time (s) of the pre-step work of a stage, per study."""
    code = (
        "import sys; from pathlib import Path;"
        "from subspacelab.runner import load_configs;"
        "from subspacelab.registry import get_study;"
        "load_configs(Path.cwd(), get_study(sys.argv[1]))"
    )
    out = {
        "python -c pass": _median([sys.executable, "-c", "pass"], root),
        "import torch": _median([sys.executable, "-c", "import torch"], root),
    }
    for slug in slugs:
        out[slug] = _median([sys.executable, "-c", code, slug], root)
    out |= _forked(root, code, slugs)
    return out


def _forked(root: Path, code: str, slugs: list[str], n: int = 3) -> dict[str, dict[str, float]]:
    """The same pre-step work run as the lab runs a stage: handed to a fork server (started
    here with the root's code, its imports done before the first timed run). Wall only: the
    work happens in the server's child, not in a child of this process."""
    import tempfile

    sys.path[:0] = [str(root / "src")]
    from subspacelab import forkserver

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "prestep.py").write_text("\n".join(p.strip() for p in code.split(";")))
        env = _env(root)
        env["PYTHONPATH"] = f"{tmp}:{env['PYTHONPATH']}"
        out = {}
        with forkserver.started(env, Path(tmp) / "server.log") as served:
            path = served[forkserver.ENV]
            forkserver.run(path, "prestep", [slugs[0]], str(root), served)  # waits for imports
            for slug in slugs:
                walls = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    code_ = forkserver.run(path, "prestep", [slug], str(root), served)
                    walls.append(time.perf_counter() - t0)
                    if code_ != 0:
                        raise RuntimeError(f"prestep {slug} through the fork server: {code_}")
                out[f"{slug}, forked (as the lab runs it)"] = {
                    "wall_s": round(statistics.median(walls), 2)
                }
    return out


def _copy(root: Path, dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    ignore = shutil.ignore_patterns(".venv", "__pycache__", "mlflow.db", ".git", "*.egg-info")
    shutil.copytree(root, dest, ignore=ignore)
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.email=b@b", "-c", "user.name=b", "commit", "-qm", "bench"],
    ):
        subprocess.run(cmd, cwd=dest, check=True, capture_output=True)
    return dest


def _placeholder_outputs(root: Path) -> None:
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    for stage in stages.values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                rel = next(iter(entry)) if isinstance(entry, dict) else entry
                path = root / rel
                if path.suffix:  # a file
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text("{}\n" if path.suffix == ".json" else "placeholder\n")
                else:
                    path.mkdir(parents=True, exist_ok=True)
                    (path / "_meta.json").write_text("{}\n")


def _double(ws: Path) -> None:
    """Every study twice (``<slug>x2`` beside ``<slug>``: its own params section, outputs and
    stages, the same code), to see how the no-op scales towards 42 studies."""
    params = yaml.safe_load((ws / "params.yaml").read_text())
    for slug in [k for k in params if k != "lab"]:
        params[f"{slug}x2"] = params[slug]
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    doc = yaml.safe_load((ws / "dvc.yaml").read_text())

    def moved(path: str, slug: str) -> str:
        parts = path.split("/")
        if parts[0] in ("data", "models", "reports") and len(parts) > 1 and parts[1] == slug:
            parts[1] = f"{slug}x2"
        return "/".join(parts)

    extra = {}
    for name, stage in doc["stages"].items():
        if name == "summary":
            continue
        slug = stage["cmd"].split()[-1]
        dup = dict(stage, cmd=f"{stage['cmd']}x2")
        dup["params"] = [
            f"{slug}x2{p[len(slug) :]}" if p.startswith(f"{slug}.") else p for p in stage["params"]
        ]
        dup["deps"] = [moved(d, slug) for d in stage["deps"]]
        for kind in ("outs", "metrics", "plots"):
            if kind in stage:
                dup[kind] = [
                    {moved(next(iter(o)), slug): next(iter(o.values()))}
                    if isinstance(o, dict)
                    else moved(o, slug)
                    for o in stage[kind]
                ]
        extra[f"{name}_x2"] = dup
    doc["stages"] = {**extra, **doc["stages"]}
    (ws / "dvc.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, width=1000))


def noop(root: Path, copy: Path, double: bool = False) -> dict[str, Any]:
    """No-op ``dvc status`` / ``dvc repro`` times (s) on a copy whose lock matches placeholders."""
    ws = _copy(root, copy)
    if double:
        _double(ws)
    _placeholder_outputs(ws)
    dvc = [sys.executable, "-m", "dvc"]
    commit = _timed([*dvc, "commit", "-f", "-q"], ws)
    status = _run([*dvc, "status"], ws)
    if "up to date" not in status:
        raise RuntimeError(f"placeholders did not give a clean status:\n{status[:2000]}")
    n_stages = len(yaml.safe_load((ws / "dvc.yaml").read_text())["stages"])
    out: dict[str, Any] = {
        "stages": n_stages,
        "dvc commit -f (setup) wall_s": round(commit[0], 1),
        "dvc status": _median([*dvc, "status"], ws),
        "dvc repro": _median([*dvc, "repro"], ws),
    }
    if (ws / "src/subspacelab/lab.py").is_file():  # the lab driver (this branch on)
        # what `python -m subspacelab lab` does once its checks are remembered
        code = "from pathlib import Path; import subspacelab.lab as l; l.chains(Path.cwd()); "
        code += "print(l.inspect(Path.cwd())[0])"
        out["lab driver's status (in process)"] = _median([sys.executable, "-c", code], ws)
        if not double:  # a doubled dvc.yaml is not the registry's: the checks would refuse it
            lab = [sys.executable, "-m", "subspacelab", "lab"]
            out["lab checks (first run, setup)"] = _median(lab, ws, n=1)
            out["python -m subspacelab lab"] = _median(lab, ws)
    return out


def _lock_without_times(ws: Path) -> dict[str, Any]:
    """dvc.lock with the hashes of step outputs dropped (their _meta.json and metrics.json
    record wall times, so they differ between any two runs)."""
    stages = yaml.safe_load((ws / "dvc.lock").read_text())["stages"]
    for entry in stages.values():
        for key in ("deps", "outs"):
            entry[key] = [
                {"path": d["path"]} if d["path"].startswith(("data/", "models/", "reports/")) else d
                for d in entry.get(key, [])
            ]
    return stages


def _compute_s(ws: Path, slugs: list[str]) -> float:
    """The stages' own compute: the sum of their recorded wall times."""
    docs = [json.loads((ws / "reports" / s / "metrics.json").read_text()) for s in slugs]
    return round(sum(d["timing_s"]["total"] for d in docs), 1)


def chains(root: Path, copy: Path, slugs: list[str], jobs: int) -> dict[str, Any]:
    """Sequential ``dvc repro`` vs ``python -m subspacelab lab --jobs`` on the named chains,
    each from empty outputs in its own copy."""
    results: dict[str, Any] = {}
    locks = {}
    for mode in ("sequential", "parallel"):
        ws = _copy(root, copy / mode)
        (ws / "dvc.lock").unlink(missing_ok=True)
        if mode == "sequential":
            stages = yaml.safe_load((ws / "dvc.yaml").read_text())["stages"]
            targets = [  # each study's report stage (DVC runs its upstream first)
                name
                for name, st in stages.items()
                for s in slugs
                if {"reports/" + s + "/metrics.json"}
                & {next(iter(m)) for m in st.get("metrics", [])}
            ]
            cmd = [sys.executable, "-m", "dvc", "repro", *targets]
        else:
            cmd = [sys.executable, "-m", "subspacelab", "lab", "--jobs", str(jobs), *slugs]
        wall, cpu = _timed(cmd, ws)
        results[mode] = {
            "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1),
            "stages' compute_s": _compute_s(ws, slugs),
        }
        locks[mode] = _lock_without_times(ws)
    results["same dvc.lock entries, order and code/params hashes"] = (
        list(locks["sequential"]) == list(locks["parallel"])
        and locks["sequential"] == locks["parallel"]
    )
    return results


HEAVY = ("lightning", "sklearn", "matplotlib", "scipy")


def heavy(root: Path) -> dict[str, dict[str, list[str]]]:
    """Per stage: the heavy packages its process imports when it loads the study (the import
    closure of the step's module) and those its step function can actually reach; a package in
    the first list only is import time the stage pays for nothing (static analysis)."""
    sys.path[:0] = [str(root / "src"), str(root)]
    from subspacelab import dvcgen, registry

    def tags(files: set[Path]) -> list[str]:
        found = set()
        for f in files:
            text = f.read_text()
            found.update(h for h in HEAVY if f"\nimport {h}" in text or f"\nfrom {h}" in text)
        return sorted(found)

    out = {}
    for study in registry.studies().values():
        for step in study.steps:
            module = step.run.__module__
            loaded = dvcgen.import_closure(root, [module])
            if step.kind == "report":
                reached = loaded
            else:
                reached = dvcgen.import_closure(
                    root, list(dvcgen.reached_modules(root, module, step.run.__name__))
                )
            out[study.stage_name(step.name)] = {"loads": tags(loaded), "needs": tags(reached)}
    return out


def main() -> None:
    """Command line (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.lab", description=__doc__)
    p.add_argument("what", choices=("imports", "noop", "chains", "heavy"))
    p.add_argument("slugs", nargs="*")
    p.add_argument("--root", type=Path, default=Path.cwd())
    p.add_argument("--copy", type=Path)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--double", action="store_true", help="noop: every study twice")
    args = p.parse_intermixed_args()
    root = args.root.resolve()
    if args.what == "imports":
        out: dict[str, Any] = imports(root, args.slugs)
    elif args.what == "heavy":
        out = heavy(root)
    elif args.what == "noop":
        out = noop(root, args.copy.resolve(), args.double)
    else:
        out = chains(root, args.copy.resolve(), args.slugs, args.jobs)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
