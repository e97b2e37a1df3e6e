"""Synthetic worlds: seeded generators with their analytic ground truth, and exact metrics.

The synthetic-worlds group (issue 15) tests methods where the answer is known: mixtures of
low-rank Gaussians (molrg_diffusion), functions of an active subspace (grbf_active), dynamical
systems with known Koopman eigenvalues (koopman_ib), manifolds with known operator eigenspaces
(eigenstructures) and factor images (xfactors). One module per world; every generator returns its
truth beside its samples, and every metric is tested on a known answer.
"""

from collections.abc import Mapping, Sequence

from subspacelab.verdicts import Stat

GROUP_TABLE = "group"  # the report table SUMMARY.md gathers per group (summary.GROUP_TABLE)
GROUP_KEYS = ("world/truth", "world/recovered", "world/error", "world/baseline_error")


def group_table(row: Mapping[str, str], metrics: Mapping[str, Sequence[float]]) -> str:
    """The study's row of the group's table in SUMMARY.md (its ``group`` report table): the
    ground-truth quantity, what the method recovered, its error and the baseline's error, each as
    mean ± std over seeds, from the per-seed lists under :data:`GROUP_KEYS`; ``row`` names the
    quantity, the error metric and the baseline (a study's ``WORLD_ROW``)."""
    missing = [k for k in GROUP_KEYS if k not in metrics]
    if missing:
        raise KeyError(f"the group row needs the metrics {missing}")
    truth, recovered, error, base = (Stat(tuple(metrics[k])).fmt(3) for k in GROUP_KEYS)
    q, e, b = (row[k].replace("|", "\\|") for k in ("quantity", "error", "baseline"))
    return "\n".join(
        [
            "| ground truth | true value | recovered | error metric | method's error | baseline "
            "| baseline's error |",
            "|---|---|---|---|---|---|---|",
            f"| {q} | {truth} | {recovered} | {e} | {error} | {b} | {base} |",
        ]
    )
