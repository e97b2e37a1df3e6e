"""Generate dvc.yaml from the study registry.

Each stage's deps are the code it runs, its upstream step directories and its params. The code of
a data or models step is its step function's module, the modules that function reaches (through
the module-level functions, classes and constants it calls, and the imports it names), their
import closure within ``subspacelab``, the study's config schema and the runner; a report step
depends on the whole study package (its claims and plots included). The params are the ``lab``
settings (all but ``lab.jobs``) and the dotted keys of the config sections the step declares in
``reads``, of the active profile only: ``<slug>.${lab.profile}.<section>``, which DVC resolves
from params.yaml, so switching ``lab.profile`` reruns everything and editing the other profile
reruns nothing.
``python -m subspacelab dvc-yaml`` rewrites the file; a test fails when it drifts.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from subspacelab.config import LabConfig
from subspacelab.registry import Step, Study, report_paths, resolve_use, step_dir, studies

SRC = Path("src")
# Framework modules every stage runs through: they shape outputs, so they are deps.
FRAMEWORK = ("subspacelab.runner", "subspacelab.config", "subspacelab.registry", "subspacelab.io")
# Modules that never change a number a stage writes: not deps (editing them reruns nothing).
NOT_DEPS = frozenset({"subspacelab.tracking", "subspacelab.summary", "subspacelab.dvcgen"})
SUMMARY_OUT = Path("reports/SUMMARY.md")
# DVC interpolates this from params.yaml: a stage tracks the active profile's values only.
PROFILE_VAR = "${lab.profile}"
# The lab settings a stage's numbers may depend on (lab.jobs only schedules chains).
LAB_PARAMS = tuple(f"lab.{f.name}" for f in dataclasses.fields(LabConfig) if f.name != "jobs")
SUMMARY_PLOTS = Path("reports/summary")


def _module_file(root: Path, module: str) -> Path | None:
    for top in (root / SRC, root):  # the package, or a plugin study kept in the repository
        base = top / Path(*module.split("."))
        if (base / "__init__.py").is_file():
            return base / "__init__.py"
        if base.with_suffix(".py").is_file():
            return base.with_suffix(".py")
    return None


def _ours(modules: Iterable[str]) -> set[str]:
    return {m for m in modules if m == "subspacelab" or m.startswith("subspacelab.")}


def _import_targets(node: ast.Import | ast.ImportFrom, package: str) -> dict[str, set[str]]:
    """Name bound by an import statement -> the modules it may stand for."""
    bound: dict[str, set[str]] = {}
    if isinstance(node, ast.Import):
        for a in node.names:
            bound[a.asname or a.name.partition(".")[0]] = {a.name}
        return bound
    base = node.module or ""
    if node.level:
        parts = package.split(".")
        parts = parts[: len(parts) - node.level + 1]
        base = ".".join([*parts, base] if base else parts)
    for a in node.names:
        bound[a.asname or a.name] = {base, f"{base}.{a.name}"}
    return bound


def _package_of(path: Path, module: str) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            for targets in _import_targets(node, _package_of(path, module)).values():
                found.update(targets)
    return _ours(found)


_ANNOTATIONS = ("annotation", "returns")  # type hints never change a number


def _names_and_imports(node: ast.AST, package: str) -> tuple[set[str], set[str]]:
    """Names a definition reads and the modules its own (local) imports name."""
    names: set[str] = set()
    modules: set[str] = set()
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, ast.Name):
            names.add(cur.id)
        elif isinstance(cur, ast.Import | ast.ImportFrom):
            for targets in _import_targets(cur, package).values():
                modules.update(targets)
        for field, value in ast.iter_fields(cur):
            if field in _ANNOTATIONS:
                continue
            children = value if isinstance(value, list) else [value]
            stack.extend(c for c in children if isinstance(c, ast.AST))
    return names, modules


def reached_modules(root: Path, module: str, name: str) -> set[str]:
    """The ``subspacelab`` modules that function ``name`` of ``module`` can run: those its body
    (and the module-level functions, classes and constants it uses, transitively) imports or
    names through the module's imports. The module itself is not included."""
    path = _module_file(root, module)
    if path is None:
        raise FileNotFoundError(f"module {module}: source not found under {root}")
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _package_of(path, module)
    defs: dict[str, ast.AST] = {}
    bound: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defs[node.name] = node
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name):
                        defs[leaf.id] = node
        elif isinstance(node, ast.Import | ast.ImportFrom):
            bound.update(_import_targets(node, package))
    if name not in defs:
        raise KeyError(f"{module}: no top-level definition {name!r}")
    modules: set[str] = set()
    seen: set[str] = set()
    stack = [name]
    while stack:
        cur = stack.pop()
        if cur in seen:
            continue
        seen.add(cur)
        if cur in defs:
            names, local = _names_and_imports(defs[cur], package)
            modules.update(local)
            stack.extend(names)
        elif cur in bound:
            modules.update(bound[cur])
    return _ours(modules)


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
    """Code a study's report step depends on: every module of its package and what they
    import."""
    pkg = f"subspacelab.studies.{study.slug}"
    pkg_dir = root / SRC / Path(*pkg.split("."))
    if pkg_dir.is_dir():
        modules = [pkg, *(f"{pkg}.{p.stem}" for p in pkg_dir.glob("*.py"))]
    else:  # a plugin study: the module that defines it
        modules = [study.run_module]
    files = import_closure(root, [*modules, *FRAMEWORK])
    return ["stages/__main__.py", *_compress(root, files)]


def step_code_deps(root: Path, study: Study, step: Step) -> list[str]:
    """Code a data or models step depends on: its function's module, what that function
    reaches (:func:`reached_modules`) and their import closure, the config schema, the runner."""
    module = step.run.__module__
    own = _module_file(root, module)
    if own is None:  # defined somewhere dvcgen cannot read: the whole study, to be safe
        return code_deps(root, study)
    parents = [".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)]
    reached: set[str] = set()
    owns = {own}
    for fn in filter(None, (step.run, step.full)):  # both profiles' implementations
        fn_own = _module_file(root, fn.__module__)
        if fn_own is None:
            return code_deps(root, study)
        owns.add(fn_own)
        reached |= reached_modules(root, fn.__module__, fn.__name__)
    files = import_closure(root, [*parents, *reached, study.config.__module__, *FRAMEWORK])
    return ["stages/__main__.py", *_compress(root, files | owns)]


def stages_for(root: Path, study: Study) -> dict[str, Any]:
    """The dvc.yaml stages of one study."""
    out: dict[str, Any] = {}
    for st in study.steps:
        reads = ["seeds", *st.reads]
        code = code_deps(root, study) if st.kind == "report" else step_code_deps(root, study, st)
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
            # full inherits from mini: a stage tracks mini's values and the active profile's
            # (under mini the two are one key; a full override left out is simply absent)
            "params": [
                *LAB_PARAMS,
                *(f"{study.slug}.{p}.{r}" for r in reads for p in ("mini", PROFILE_VAR)),
            ],
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
            "src/subspacelab/summary.py",
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
