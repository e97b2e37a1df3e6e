"""Dependencies point one way: framework -> toolkits -> studies (issue 10).

* the framework (the modules at the package's top level and ``nets/``) imports no toolkit and
  no study: studies are found at run time through the registry;
* a toolkit (``adapters``, ``clustering``, ``data``, ...) imports the framework and other
  toolkits, never a study;
* a study imports the framework only through :mod:`subspacelab.api`, toolkits directly, and of
  another study at most its method or config modules, never its ``study.py`` (shared data code
  lives in ``data/`` or a toolkit);
* importing a study's ``study.py`` does not import Lightning (a stage that does not train never
  pays its import).

Every ``import`` in every module is checked, function-level ones included.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from subspacelab import registry

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "subspacelab"
TOOLKITS = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()} - {
    "nets",
    "studies",
}


def _module(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) of every import in ``path``; ``from a import b`` yields both
    ``a`` and ``a.b`` (b may be a module)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return [(line, m) for line, m in found if m.startswith("subspacelab")]


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] == "studies":
        return "study"
    if len(parts) > 1 and parts[1] in TOOLKITS:
        return "toolkit"
    return "framework"


def _violation(src: str, dst: str) -> str | None:
    """Why ``src`` may not import ``dst`` (None: allowed)."""
    src_layer, dst_layer = _layer(src), _layer(dst)
    if src == "subspacelab.registry" and dst == "subspacelab.studies":
        return None  # the registry finds the studies' packages at run time
    if src_layer == "framework" and dst_layer != "framework":
        return "the framework imports no toolkit or study"
    if src_layer == "toolkit" and dst_layer == "study":
        return "a toolkit imports no study"
    if src_layer != "study":
        return None
    if dst_layer == "framework" and not (
        dst in ("subspacelab", "subspacelab.api") or dst.startswith("subspacelab.api.")
    ):
        return "a study imports the framework through subspacelab.api only"
    if dst_layer == "study":
        own = src.split(".")[:3]
        other = dst.split(".")
        if other[:3] != own and len(other) > 3 and other[3] == "study":
            return "a study never imports another study's study.py"
    return None


def _all_violations() -> list[str]:
    out = []
    for path in sorted(PKG.rglob("*.py")):
        src = _module(path)
        for line, dst in _imports(path):
            why = _violation(src, dst)
            if why:
                out.append(f"{path.relative_to(SRC)}:{line} imports {dst}: {why}")
    return out


def test_dependencies_point_one_way() -> None:
    bad = _all_violations()
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    ("src", "dst", "allowed"),
    [
        ("subspacelab.runner", "subspacelab.clustering.metrics", False),
        ("subspacelab.nets.joint", "subspacelab.studies.gcr.core", False),
        ("subspacelab.merging.bench", "subspacelab.studies.task_zoo.full", False),
        ("subspacelab.merging.bench", "subspacelab.nets.training", True),
        ("subspacelab.studies.gcr.study", "subspacelab.runner", False),
        ("subspacelab.studies.gcr.study", "subspacelab.api", True),
        ("subspacelab.studies.gcr.study", "subspacelab.clustering", True),
        ("subspacelab.studies.convergent.study", "subspacelab.studies.gcr.study", False),
        ("subspacelab.studies.convergent.study", "subspacelab.studies.gcr.core", True),
        ("subspacelab.studies.gcr.study", "subspacelab.studies.gcr.full", True),
    ],
)
def test_the_direction_rule_itself(src: str, dst: str, allowed: bool) -> None:
    assert (_violation(src, dst) is None) == allowed


_NO_LIGHTNING = """
import importlib, sys

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("lightning", "pytorch_lightning"):
            raise ImportError("lightning refused")

sys.meta_path.insert(0, Refuse())
for module in sys.argv[1:]:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        if "lightning refused" not in str(exc):
            raise
        print(module)
"""


def test_importing_a_study_does_not_import_lightning() -> None:
    """One interpreter imports every study with Lightning refused: a study whose import needs
    it is named (refused, Lightning never loads, so each study is judged on its own)."""
    modules = [f"subspacelab.studies.{slug}.study" for slug in sorted(registry.studies())]
    out = subprocess.run(
        [sys.executable, "-c", _NO_LIGHTNING, *modules], capture_output=True, text=True, check=True
    )
    heavy = out.stdout.split()
    assert not heavy, f"import Lightning only inside the code that trains: {heavy}"
