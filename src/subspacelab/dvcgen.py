"""Generate dvc.yaml from the study registry.

Each stage's deps are the code it runs (the import closure of the study's package within
``subspacelab``, plus the runner), its upstream step directories, and its params are the dotted
keys of the config sections it declares in ``reads`` (both profiles) plus the ``lab`` section.
``python -m subspacelab dvc-yaml`` rewrites the file; a test fails when it drifts.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from subspacelab.config import PROFILES
from subspacelab.registry import Study, report_paths, resolve_use, step_dir, studies

SRC = Path("src")
# Framework modules every stage runs through: they shape outputs, so they are deps.
FRAMEWORK = ("subspacelab.runner", "subspacelab.config", "subspacelab.registry", "subspacelab.io")
# Modules that never change a number a stage writes: not deps (editing them reruns nothing).
NOT_DEPS = frozenset({"subspacelab.tracking", "subspacelab.report", "subspacelab.dvcgen"})
SUMMARY_OUT = Path("reports/SUMMARY.md")
SUMMARY_PLOTS = Path("reports/summary")


def _module_file(root: Path, module: str) -> Path | None:
    for top in (root / SRC, root):  # the package, or a plugin study kept in the repository
        base = top / Path(*module.split("."))
        if (base / "__init__.py").is_file():
            return base / "__init__.py"
        if base.with_suffix(".py").is_file():
            return base.with_suffix(".py")
    return None


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m == "subspacelab" or m.startswith("subspacelab.")}


def import_closure(root: Path, modules: Iterable[str]) -> set[Path]:
    """Source files reachable through ``subspacelab`` imports from ``modules``."""
    seen: set[str] = set()
    files: set[Path] = set()
    stack = list(modules)
    while stack:
        mod = stack.pop()
        if mod in seen or mod in NOT_DEPS:
            continue
        seen.add(mod)
        path = _module_file(root, mod)
        if path is None:
            continue
        files.add(path)
        # importing a.b.c runs a/__init__ and a/b/__init__ too
        parts = mod.split(".")
        stack.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        stack.extend(_imports(path, mod))
    return files


def _compress(root: Path, files: set[Path]) -> list[str]:
    """List a whole package directory instead of its files when every .py file is included."""
    rel = {f.relative_to(root) for f in files}
    out: set[Path] = set()
    dirs = sorted({f.parent for f in rel}, key=lambda p: len(p.parts))
    covered: set[Path] = set()
    for d in dirs:
        if any(c in d.parents or c == d for c in covered):
            continue
        pys = {p.relative_to(root) for p in (root / d).rglob("*.py")}
        if d != SRC / "subspacelab" and pys and pys <= rel:
            covered.add(d)
            out.add(d)
    for f in rel:
        if not any(c in f.parents for c in covered):
            out.add(f)
    return sorted(p.as_posix() for p in out)


def code_deps(root: Path, study: Study) -> list[str]:
    """Code a study's stages depend on: every module of its package and what they import."""
    pkg = f"subspacelab.studies.{study.slug}"
    pkg_dir = root / SRC / Path(*pkg.split("."))
    if pkg_dir.is_dir():
        modules = [pkg, *(f"{pkg}.{p.stem}" for p in pkg_dir.glob("*.py"))]
    else:  # a plugin study: the module that defines it
        modules = [study.run_module]
    files = import_closure(root, [*modules, *FRAMEWORK])
    return ["stages/__main__.py", *_compress(root, files)]


def stages_for(root: Path, study: Study) -> dict[str, Any]:
    """The dvc.yaml stages of one study."""
    code = code_deps(root, study)
    out: dict[str, Any] = {}
    for st in study.steps:
        reads = ["seeds", *st.reads]
        stage: dict[str, Any] = {
            "cmd": f"python -m stages {st.name} {study.slug}",
            "deps": [
                *code,
                *(
                    step_dir(Path("."), study, study.step(n)).as_posix()
                    for n in _needs_of(study, st.name)
                ),
                *(step_dir(Path("."), *resolve_use(ref)).as_posix() for ref in st.uses),
            ],
            "params": ["lab", *(f"{study.slug}.{p}.{r}" for p in PROFILES for r in reads)],
        }
        if st.description:
            stage["desc"] = st.description
        if st.kind == "report":
            paths = {k: v.as_posix() for k, v in report_paths(Path("."), study.slug).items()}
            outs = ["metrics", "claims", "tables", *(["curves"] if study.curves else [])]
            stage["outs"] = [{paths[k]: {"cache": False}} for k in outs]
            stage["metrics"] = [{paths["headline"]: {"cache": False}}]
            stage["plots"] = [{paths["plots"]: {"cache": False}}]
        else:
            stage["outs"] = [step_dir(Path("."), study, st).as_posix()]
        out[study.stage_name(st.name)] = stage
    return out


def curve_plots(study: Study) -> list[dict[str, Any]]:
    """Top-level dvc.yaml plots of a study's declared curves: file, x and y columns, template."""
    base = report_paths(Path("."), study.slug)["curves"]
    out = []
    for c in study.curves:
        spec: dict[str, Any] = {
            "x": c.x,
            "y": c.y if isinstance(c.y, str) else list(c.y),
            "template": "linear",
            "title": f"{study.slug}: {c.title or c.name}",
        }
        if len(c.ys) > 1:
            spec["y_label"] = "value"
        out.append({(base / f"{c.name}.csv").as_posix(): spec})
    return out


def _needs_of(study: Study, step: str) -> list[str]:
    st = study.step(step)
    if st.kind == "report":  # the report reads every earlier step's timing
        return [s.name for s in study.steps[:-1]]
    return list(st.needs)


def dvc_yaml(root: Path, chosen: Mapping[str, Study] | None = None) -> dict[str, Any]:
    """The whole DAG: every study's chain (or the ``chosen`` ones) and the summary."""
    all_stages: dict[str, Any] = {}
    report_deps: list[str] = []
    plots: list[dict[str, Any]] = []
    for study in (studies() if chosen is None else chosen).values():
        all_stages.update(stages_for(root, study))
        plots += curve_plots(study)
        paths = report_paths(Path("."), study.slug)
        report_deps += [paths["metrics"].as_posix(), paths["claims"].as_posix()]
    all_stages["summary"] = {
        "cmd": "python -m stages summary",
        "deps": [
            "stages/__main__.py",
            "src/subspacelab/report.py",
            *report_deps,
        ],
        "outs": [{SUMMARY_OUT.as_posix(): {"cache": False}}],
        "plots": [{SUMMARY_PLOTS.as_posix(): {"cache": False}}],
    }
    return {"stages": all_stages, **({"plots": plots} if plots else {})}


HEADER = "# Generated from the study registry by `python -m subspacelab dvc-yaml`; do not edit.\n"


def render(root: Path, chosen: Mapping[str, Study] | None = None) -> str:
    """dvc.yaml's text."""
    return HEADER + yaml.safe_dump(dvc_yaml(root, chosen), sort_keys=False, width=100)


def write(root: Path, chosen: Mapping[str, Study] | None = None) -> Path:
    """Regenerate dvc.yaml."""
    path = root / "dvc.yaml"
    path.write_text(render(root, chosen))
    return path
