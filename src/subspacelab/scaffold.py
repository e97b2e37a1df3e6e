"""``python -m subspacelab new <slug> --group <group>``: a new study that runs before any science.

It writes the study's package (config, core maths, study with its steps and one claim), its
``params.yaml`` section (``mini``; ``full`` inherits it), its tiny profile for the smoke test and
a test file, then regenerates dvc.yaml. The placeholder method (PCA recovers a planted subspace
better than a random subspace does) is real and its claim can fail; replace both with the
paper's. docs/ADDING_A_STUDY.md walks through the rest.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from subspacelab.config import ParamsError

SLUG = re.compile(r"[a-z][a-z0-9_]{1,39}")
ARXIV = re.compile(r"\d{4}\.\d{4,5}")

INIT = '''"""{title} (arXiv {arxiv}).

Scaffolded by ``python -m subspacelab new``: the method below is a placeholder to replace with
the paper's (config.py: its hyperparameters; core.py: its maths; study.py: steps and claims).
"""
'''

CONFIG = '''"""Typed params of {slug} (arXiv {arxiv}); values live in params.yaml only."""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param


@dataclass
class DataConfig:
    """The synthetic world: ``n`` points in ``dim`` dimensions near a planted ``rank``-subspace."""

    n: int = param(ge=2)
    dim: int = param(ge=2)
    rank: int = param(ge=1)
    noise: float = param(ge=0.0)


@dataclass
class {name}Config:
    """One profile of {slug}'s section in params.yaml."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
'''

CORE = '''"""The method of {slug} (arXiv {arxiv}): placeholder maths, tested in
tests/studies/test_{slug}.py."""

from __future__ import annotations

import numpy as np


def planted(
    n: int, dim: int, rank: int, noise: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points near a random ``rank``-dimensional subspace of R^dim, and its basis."""
    basis, _ = np.linalg.qr(rng.standard_normal((dim, rank)))
    x = rng.standard_normal((n, rank)) @ basis.T + noise * rng.standard_normal((n, dim))
    return x, basis


def pca_basis(x: np.ndarray, rank: int) -> np.ndarray:
    """Orthonormal basis (dim, rank) of the top-``rank`` principal directions of ``x``."""
    _, _, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    return vt[:rank].T


def sine_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Sine of the largest principal angle between the spans of orthonormal ``a`` and ``b``."""
    cosines = np.linalg.svd(a.T @ b, compute_uv=False)
    return float(np.sqrt(max(0.0, 1.0 - float(cosines.min()) ** 2)))
'''

STUDY = '''"""{title} (arXiv {arxiv}): the chain data -> fit -> report.

Scaffolded by ``python -m subspacelab new``; replace the placeholder method and claim.
"""

from __future__ import annotations

import numpy as np

from subspacelab.api import (
    Claim,
    ClaimResult,
    Metrics,
    Report,
    SeedMetrics,
    Step,
    StepContext,
    StepOutput,
    Study,
    decide,
    gap,
    on_mean,
)
from subspacelab.studies.{slug} import core
from subspacelab.studies.{slug}.config import {name}Config

Ctx = StepContext[{name}Config]


def _data(ctx: Ctx) -> StepOutput:
    """One planted world per seed."""
    d = ctx.cfg.data
    for seed in ctx.seeded():
        x, basis = core.planted(d.n, d.dim, d.rank, d.noise, np.random.default_rng(seed))
        ctx.save(f"seed{{seed}}", {{"x": x, "basis": basis}})
    return StepOutput()


def _fit(ctx: Ctx) -> StepOutput:
    """The method's subspace per seed."""
    for seed in ctx.seeded():
        x = ctx.load(f"seed{{seed}}")["x"].numpy()
        ctx.save(f"seed{{seed}}", {{"basis": core.pca_basis(x, ctx.cfg.data.rank)}}, kind="models")
    return StepOutput()


def _report(ctx: Ctx) -> Report:
    """Distances to the planted subspace: the method's and a random subspace's."""
    import matplotlib.pyplot as plt

    d = ctx.cfg.data
    per_seed = SeedMetrics()
    for seed in ctx.seeded():
        truth = ctx.load(f"seed{{seed}}", step="data")["basis"].numpy()
        fitted = ctx.load(f"seed{{seed}}", step="fit", kind="models")["basis"].numpy()
        rng = np.random.default_rng(seed + 1)
        random_basis, _ = np.linalg.qr(rng.standard_normal((d.dim, d.rank)))
        per_seed.record(
            {{
                "planted/pca/sine": core.sine_distance(truth, fitted),
                "planted/random/sine": core.sine_distance(truth, random_basis),
            }}
        )
    metrics = per_seed.as_dict()
    arms = ("pca", "random")
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar(arms, [float(np.mean(metrics[f"planted/{{a}}/sine"])) for a in arms])
    ax.set_ylabel("sine of the largest principal angle")
    return Report(metrics=metrics, figures={{"distances": fig}})


def _closer_than_random(m: Metrics) -> ClaimResult:
    """The method's subspace is closer to the planted one than a random subspace, by 0.1."""
    return decide(
        on_mean("random - pca", gap(m["planted/random/sine"], m["planted/pca/sine"]), ">", 0.1)
    )


STUDY = Study(
    slug="{slug}",
    title="{title}",
    arxiv="{arxiv}",
    group="{group}",
    config={name}Config,
    steps=(
        Step("data", _data, reads=("data",), description="planted subspace worlds"),
        Step("fit", _fit, needs=("data",), reads=("data",), kind="models"),
        Step("report", _report, needs=("data", "fit"), reads=("data",), kind="report"),
    ),
    claims=(
        Claim(
            id="closer",
            statement="the fitted subspace is closer to the planted one than a random one",
            paper="placeholder: replace with the paper's claim",
            check=_closer_than_random,
        ),
    ),
)
'''

TEST = '''"""{slug} (arXiv {arxiv}): the method's maths against known answers."""

from __future__ import annotations

import numpy as np

from subspacelab.studies.{slug} import core


def test_pca_recovers_a_noiseless_planted_subspace() -> None:
    x, basis = core.planted(200, 6, 2, 0.0, np.random.default_rng(0))
    assert core.sine_distance(basis, core.pca_basis(x, 2)) < 1e-6


def test_sine_distance_of_orthogonal_subspaces_is_one() -> None:
    e = np.eye(4)
    assert core.sine_distance(e[:, :2], e[:, 2:]) == 1.0
'''

PARAMS = """{slug}:
  # {title} (arXiv {arxiv}); scaffolded: replace the placeholder world and method.
  mini:
    seeds: [0, 1, 2, 3, 4]
    data: {{n: 500, dim: 20, rank: 3, noise: 0.1}}
  full: {{}}  # the paper's data and backbone: only what differs from mini
"""

TINY = """{slug}:
  seeds: [0]
  data: {{n: 60}}
"""


def _title_case(slug: str) -> str:
    return "".join(part.capitalize() for part in slug.split("_"))


def scaffold(root: Path, slug: str, group: str, arxiv: str, title: str) -> list[Path]:
    """Write a new study ``slug`` under ``root`` (the repository); returns the files written.

    Everything is checked before anything is written: a bad or taken slug, an arXiv id that is
    not ``NNNN.NNNNN`` or an empty group is a ParamsError and leaves the tree untouched."""
    if not SLUG.fullmatch(slug) or keyword.iskeyword(slug):
        raise ParamsError(f"slug {slug!r}: want 2-40 of a-z, 0-9 and _, starting with a letter")
    if not ARXIV.fullmatch(arxiv):
        raise ParamsError(f"--arxiv {arxiv!r}: want an arXiv id such as 2401.01234")
    if not group.strip() or not title.strip() or '"' in title + group:
        raise ParamsError("--group and --title: want non-empty text without double quotes")
    pkg = root / "src" / "subspacelab" / "studies" / slug
    params, tiny = root / "params.yaml", root / "tests" / "tiny_params.yaml"
    test = root / "tests" / "studies" / f"test_{slug}.py"
    if pkg.exists() or test.exists():
        raise ParamsError(f"study {slug!r} exists already ({pkg.relative_to(root)})")
    for path in (params, tiny):
        if re.search(rf"^{slug}:", path.read_text(), flags=re.MULTILINE):
            raise ParamsError(f"{path.relative_to(root)} has a {slug!r} section already")
    fields = {"slug": slug, "arxiv": arxiv, "group": group, "title": title}
    fields["name"] = _title_case(slug)
    pkg.mkdir(parents=True)
    files = {
        pkg / "__init__.py": INIT,
        pkg / "config.py": CONFIG,
        pkg / "core.py": CORE,
        pkg / "study.py": STUDY,
        test: TEST,
    }
    for path, template in files.items():
        path.write_text(template.format(**fields))
    for path, template in ((params, PARAMS), (tiny, TINY)):
        text = path.read_text()
        path.write_text(text.rstrip("\n") + "\n" + template.format(**fields))
    return [*files, params, tiny]
