"""ShapeSplat: A Large-scale Dataset of Gaussian Splats and Their Self-Supervised Pretraining (arXiv 2408.10906): the chain data -> fit -> report.

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
from subspacelab.studies.shapesplat import core
from subspacelab.studies.shapesplat.config import ShapesplatConfig

Ctx = StepContext[ShapesplatConfig]


def _data(ctx: Ctx) -> StepOutput:
    """One planted world per seed."""
    d = ctx.cfg.data
    for seed in ctx.seeded():
        x, basis = core.planted(d.n, d.dim, d.rank, d.noise, np.random.default_rng(seed))
        ctx.save(f"seed{seed}", {"x": x, "basis": basis})
    return StepOutput()


def _fit(ctx: Ctx) -> StepOutput:
    """The method's subspace per seed."""
    for seed in ctx.seeded():
        x = ctx.load(f"seed{seed}")["x"].numpy()
        ctx.save(f"seed{seed}", {"basis": core.pca_basis(x, ctx.cfg.data.rank)}, kind="models")
    return StepOutput()


def _report(ctx: Ctx) -> Report:
    """Distances to the planted subspace: the method's and a random subspace's."""
    import matplotlib.pyplot as plt

    d = ctx.cfg.data
    per_seed = SeedMetrics()
    for seed in ctx.seeded():
        truth = ctx.load(f"seed{seed}", step="data")["basis"].numpy()
        fitted = ctx.load(f"seed{seed}", step="fit", kind="models")["basis"].numpy()
        rng = np.random.default_rng(seed + 1)
        random_basis, _ = np.linalg.qr(rng.standard_normal((d.dim, d.rank)))
        per_seed.record(
            {
                "planted/pca/sine": core.sine_distance(truth, fitted),
                "planted/random/sine": core.sine_distance(truth, random_basis),
            }
        )
    metrics = per_seed.as_dict()
    arms = ("pca", "random")
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar(arms, [float(np.mean(metrics[f"planted/{a}/sine"])) for a in arms])
    ax.set_ylabel("sine of the largest principal angle")
    return Report(metrics=metrics, figures={"distances": fig})


def _closer_than_random(m: Metrics) -> ClaimResult:
    """The method's subspace is closer to the planted one than a random subspace, by 0.1."""
    return decide(
        on_mean("random - pca", gap(m["planted/random/sine"], m["planted/pca/sine"]), ">", 0.1)
    )


STUDY = Study(
    slug="shapesplat",
    title="ShapeSplat: A Large-scale Dataset of Gaussian Splats and Their Self-Supervised Pretraining",
    arxiv="2408.10906",
    group="3D and foundation-scale",
    config=ShapesplatConfig,
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
