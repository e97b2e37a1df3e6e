"""Gaussian-mixture splat fits (shapesplat's data step, arXiv 2408.10906): objects per second.

Ours: :func:`subspacelab.shapes.splats.fit_gmm`, every object's full-covariance EM batched as
float64 matmuls (a few clouds at a time). Peer: scikit-learn's ``GaussianMixture`` fitted object
by object from the same start (weights, means, precisions) for the same number of iterations
(``tol=0``), the spec's reference tool. Each is timed in its own subprocess, 1 thread, on the
same clouds; the fastest of ``REPEATS`` passes counts. The largest difference between the two
fits' means is reported too.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import torch

from benchmarks.common import in_subprocess, machine

POINTS, ITERS, REPEATS = 2000, 10, 3
CASES = ((16, 32), (16, 128), (64, 128))  # (objects, components)


def _clouds(objects: int) -> np.ndarray:
    from subspacelab.shapes import splats

    rng = np.random.default_rng(0)
    names = list(splats.PARTS)
    return np.stack([splats.labelled(names[i % 8], POINTS, rng)[0] for i in range(objects)])


def measure(objects: int, components: int, impl: str) -> dict[str, Any]:
    """Objects/s of one implementation, and its fitted means (for the cross-check)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    from subspacelab.shapes import splats

    torch.set_num_threads(1)
    pts = _clouds(objects)
    start = splats.fit_gmm(pts, components, 0, seed=0)
    best, means = float("inf"), np.zeros(0)
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        if impl == "ours":
            means = splats.fit_gmm(pts, components, ITERS, seed=0).means.numpy()
        else:
            out = []
            for b in range(objects):
                gm = GaussianMixture(
                    components,
                    covariance_type="full",
                    max_iter=ITERS,
                    tol=0.0,
                    reg_covar=1e-6,
                    weights_init=start.weights[b].numpy(),
                    means_init=start.means[b].numpy(),
                    precisions_init=np.linalg.inv(start.covs[b].numpy()),
                )
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    out.append(gm.fit(pts[b]).means_)
            means = np.stack(out)
        best = min(best, time.perf_counter() - t0)
    return {"objects_per_s": objects / best, "means": means.tolist()}


def section() -> list[str]:
    """The Markdown section for RESULTS.md."""
    lines = [
        f"## Gaussian-mixture splat fits: {POINTS} points per object, {ITERS} EM iterations, "
        "1 thread",
        "",
        f"Measured on {machine()}. Ours: shapes.splats.fit_gmm (batched float64 EM, float32 "
        "normalisation); peer: sklearn GaussianMixture per object from the same start. Fastest "
        f"of {REPEATS} passes.",
        "",
        "| objects | components | objects/s ours | peer | ratio | max |Δ mean| |",
        "|---|---|---|---|---|---|",
    ]
    for objects, k in CASES:
        ours = in_subprocess("benchmarks.splats", "measure", objects=objects, components=k,
                             impl="ours")  # fmt: skip
        peer = in_subprocess("benchmarks.splats", "measure", objects=objects, components=k,
                             impl="sklearn")  # fmt: skip
        diff = float(np.abs(np.asarray(ours["means"]) - np.asarray(peer["means"])).max())
        lines.append(
            f"| {objects} | {k} | {ours['objects_per_s']:.1f} | {peer['objects_per_s']:.1f} | "
            f"{ours['objects_per_s'] / peer['objects_per_s']:.2f} | {diff:.1e} |"
        )
    return lines
