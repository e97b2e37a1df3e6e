"""Test helpers: tiny workspaces and whole-chain runs."""

from __future__ import annotations

import copy
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from subspacelab import dvcgen, registry
from subspacelab.config import profile_section
from subspacelab.io import read_json
from subspacelab.registry import get_study, report_paths
from subspacelab.runner import run_step
from tests.fake_study import FAKE, FAKE2, FAKE_PARAMS, TRAIN, TRAIN_PARAMS

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "tiny_params.yaml"
LAB = yaml.safe_load((REPO / "params.yaml").read_text())["lab"]


def deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged into a copy of ``base``, recursively."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def tiny_params(slugs: list[str] | None = None) -> dict[str, Any]:
    """params.yaml with each study's mini profile shrunk by tests/tiny_params.yaml."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    tiny = yaml.safe_load(TINY.read_text()) or {}
    for slug, over in tiny.items():
        if slug in params and (slugs is None or slug in slugs):
            # full inherits mini's values: written out first, so shrinking mini leaves it alone
            schema = registry.get_study(slug).config
            params[slug]["full"] = profile_section(params[slug], slug, "full", schema)
            params[slug]["mini"] = deep_merge(params[slug]["mini"], over)
    if slugs is not None:
        params = {k: v for k, v in params.items() if k == "lab" or k in slugs}
    return params


def make_workspace(root: Path, params: Mapping[str, Any], *, with_code: bool = False) -> Path:
    """A directory that looks like the repository: params.yaml (and optionally the code)."""
    root.mkdir(parents=True, exist_ok=True)
    if with_code:
        for name in ("src", "stages", "flows", "pyproject.toml"):
            src = REPO / name
            if src.is_dir():
                shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, root / name)
    (root / "params.yaml").write_text(yaml.safe_dump(dict(params), sort_keys=False))
    return root


FAKE_PLUGINS = "tests.fake_study:FAKE,tests.fake_study:FAKE2"
PLUGINS_FILE = ".test-plugins"  # a workspace's registered test studies (dvc_workspace writes it)


def default_sigint() -> None:
    """``preexec_fn`` of a child the test will Ctrl-C: SIGINT back to its default. A shell
    starts background jobs (``pytest ... &``, ``nohup``) with SIGINT ignored, children inherit
    that, and Python then installs no KeyboardInterrupt handler: the interruption tests would
    time out however the code behaves."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def dvc(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    plugins = root / PLUGINS_FILE
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        registry.PLUGINS_ENV: plugins.read_text() if plugins.is_file() else FAKE_PLUGINS,
        "PYTHONPATH": f"{root / 'src'}:{root}",
    }
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )


def dvc_workspace(tmp_path: Path, train: bool = False) -> Path:
    """A git + DVC repository holding a copy of the code with only the fake studies (``train``:
    only the fake study that trains, tests.fake_study.TRAIN)."""
    params: dict[str, Any] = (
        {"lab": LAB, "train": copy.deepcopy(TRAIN_PARAMS)}
        if train
        else {"lab": LAB, "fake": FAKE_PARAMS, "fake2": copy.deepcopy(FAKE_PARAMS)}
    )
    ws = make_workspace(tmp_path / "ws", params, with_code=True)
    (ws / PLUGINS_FILE).write_text("tests.fake_study:TRAIN" if train else FAKE_PLUGINS)
    shutil.copytree(REPO / "tests", ws / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    # the workspace runs its own copy of the code, with only the fake studies registered
    for pkg in (ws / "src/subspacelab/studies").iterdir():
        if pkg.is_dir():
            shutil.rmtree(pkg)
    for cmd in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "t@t"],
        ["git", "config", "user.name", "t"],
    ):
        subprocess.run(cmd, cwd=ws, check=True)
    dvc(ws, "init", "-q")
    dvcgen.write(ws, {"train": TRAIN} if train else {"fake": FAKE, "fake2": FAKE2})
    return ws


def run_chain(root: Path, slug: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run every step of a study in order; returns (metrics.json, claims.json)."""
    for step in get_study(slug).steps:
        run_step(root, slug, step.name)
    paths = report_paths(root, slug)
    return read_json(paths["metrics"]), read_json(paths["claims"])


def upstream_studies(slug: str) -> list[str]:
    """The studies ``slug`` uses (through ``Step.uses``), transitively, dependencies first."""
    order: list[str] = []

    def visit(name: str) -> None:
        for step in get_study(name).steps:
            for ref in step.uses:
                other = ref.partition(".")[0]
                if other not in order:
                    visit(other)
                    order.append(other)

    visit(slug)
    return order


def interrupt_when_computing(
    ws: Path,
    proc: subprocess.Popen[str],
    need_all: bool,
    timeout_s: float = 300,
    sig: int = signal.SIGINT,
) -> str:
    """Wait until the fake chains' downloads (run with FAKE_HANG) are computing (both, or any),
    send ``proc`` ``sig`` (SIGINT: Ctrl-C), and check the interruption left nothing behind: no
    recorded or staged download output and no process still running in ``ws``. Returns
    ``proc``'s stderr."""
    partials = [ws / f".stage-tmp/{s}_download/out/partial.txt" for s in ("fake", "fake2")]
    ready = all if need_all else any
    deadline = time.time() + timeout_s
    while not ready(p.exists() for p in partials) and time.time() < deadline:
        time.sleep(0.2)
    assert ready(p.exists() for p in partials), "the chains should be computing"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode != 0, err
    for slug in ("fake", "fake2"):
        assert not (ws / f"data/{slug}/download").exists(), err  # nothing recorded half-done
        assert not (ws / f".stage-tmp/{slug}_download").exists(), err
    left = []  # no stage or DVC process is left running in the workspace
    for proc_dir in Path("/proc").iterdir():
        try:
            if proc_dir.name.isdigit() and Path(os.readlink(proc_dir / "cwd")) == ws:
                left.append(proc_dir.name)
        except OSError:
            continue
    assert not left, err
    return err
