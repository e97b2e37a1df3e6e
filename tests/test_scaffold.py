"""`python -m subspacelab new`: the scaffolded study runs its chain, decides its claim, passes its
own tests and ruff before any science is written; bad input writes nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _workspace(tmp_path: Path) -> Path:
    """A copy of the code with no study, the real lab settings, empty tiny params."""
    ws = tmp_path / "ws"
    for name in ("src", "stages"):
        shutil.copytree(REPO / name, ws / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "pyproject.toml", ws)
    for pkg in (ws / "src/subspacelab/studies").iterdir():
        if pkg.is_dir():
            shutil.rmtree(pkg)
    lab = yaml.safe_load((REPO / "params.yaml").read_text())["lab"]
    (ws / "params.yaml").write_text(yaml.safe_dump({"lab": lab}))
    (ws / "tests/studies").mkdir(parents=True)
    (ws / "tests/tiny_params.yaml").write_text("# tiny profiles\n")
    return ws


def _run(ws: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ws / "src"), "MPLBACKEND": "Agg"}
    return subprocess.run(args, cwd=ws, env=env, capture_output=True, text=True)


NEW = ("new", "demo_study", "--group", "geometry", "--arxiv", "2401.01234", "--title", "Demo")


@pytest.mark.slow
def test_a_scaffolded_study_runs_and_passes_its_tests(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    py = sys.executable
    made = _run(ws, py, "-m", "subspacelab", *NEW)
    assert made.returncode == 0, made.stderr
    stages = yaml.safe_load((ws / "dvc.yaml").read_text())["stages"]
    assert {"demo_study_data", "demo_study_fit", "demo_study_report"} <= set(stages)
    for step in ("data", "fit", "report"):
        ran = _run(ws, py, "-m", "subspacelab", "stage", step, "demo_study")
        assert ran.returncode == 0, ran.stderr
    claims = json.loads((ws / "reports/demo_study/claims.json").read_text())
    assert [c["verdict"] for c in claims] == ["holds"]  # PCA beats a random subspace here
    tests = _run(ws, py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/studies")
    assert tests.returncode == 0, tests.stdout
    lint = _run(ws, py, "-m", "ruff", "check", "--no-cache", "src/subspacelab/studies", "tests")
    assert lint.returncode == 0, lint.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("new", "Bad-Slug", "--group", "g", "--arxiv", "2401.01234"), "slug 'Bad-Slug'"),
        (("new", "ok_slug", "--group", "g", "--arxiv", "24.1"), "--arxiv '24.1'"),
        (("new", "ok_slug", "--group", " ", "--arxiv", "2401.01234"), "--group"),
    ],
)
def test_bad_input_is_one_error_line_and_writes_nothing(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    from subspacelab.cli import main

    ws = tmp_path / "ws"
    (ws / "tests").mkdir(parents=True)
    (ws / "params.yaml").write_text("lab: {}\n")
    (ws / "tests/tiny_params.yaml").write_text("")
    before = sorted(p.relative_to(ws) for p in ws.rglob("*"))
    assert main(list(args), root=ws) == 2
    assert sorted(p.relative_to(ws) for p in ws.rglob("*")) == before


def test_an_existing_study_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from subspacelab.cli import main

    ws = tmp_path / "ws"
    (ws / "src/subspacelab/studies/gcr").mkdir(parents=True)
    (ws / "tests").mkdir()
    (ws / "params.yaml").write_text("lab: {}\n")
    (ws / "tests/tiny_params.yaml").write_text("")
    assert main(["new", "gcr", "--group", "g", "--arxiv", "2308.01547"], root=ws) == 2
    assert "exists already" in capsys.readouterr().err
