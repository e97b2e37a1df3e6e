"""What a study's report step writes: metrics, claims, headline, tables, plots and curves.

The runner calls :func:`write_report` on the :class:`~subspacelab.registry.Report` a study's last
step returns; reports/SUMMARY.md is then built from these files by :mod:`subspacelab.summary`.
"""

from __future__ import annotations

import csv
import fnmatch
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from subspacelab.config import LabConfig
from subspacelab.io import NonFiniteError, read_json, write_json
from subspacelab.registry import HEADLINE_MAX, Metrics, Report, Study, step_dir
from subspacelab.verdicts import VERDICTS, ClaimResult

META = "_meta.json"


def claim_records(study: Study, metrics: Metrics) -> list[dict[str, Any]]:
    """Each claim of ``study`` decided on ``metrics``, as claims.json records it."""
    out = []
    for claim in study.claims:
        try:
            result = claim.check(metrics)
        except KeyError as exc:
            raise RuntimeError(f"claim {study.slug}.{claim.id}: {exc.args[0]}") from None
        if not isinstance(result, ClaimResult):
            raise TypeError(f"claim {study.slug}.{claim.id} must return a ClaimResult")
        out.append(
            {
                "id": claim.id,
                "statement": claim.statement,
                "paper": claim.paper,
                "verdict": result.verdict,
                "holds": result.holds,
                "resolution": result.resolution if math.isfinite(result.resolution) else None,
                "tests": [t.to_json() for t in result.tests],
                "measured": result.measured_json(),
            }
        )
    return out


def _timings(root: Path, study: Study) -> dict[str, float]:
    """Wall seconds of each earlier step, from its ``_meta.json``."""
    times = {}
    for st in study.steps[:-1]:
        meta = step_dir(root, study, st) / META
        if meta.is_file():
            times[st.name] = float(read_json(meta)["wall_s"])
    return times


def write_report(
    root: Path, study: Study, staged: Path, result: Report, lab: LabConfig, wall_s: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Write the report step's files into ``staged``: metrics.json (the full record),
    headline.json, claims.json, tables.md, plots/ and curves/; returns metrics.json's document
    and the claims."""
    try:
        metrics = Metrics(result.metrics)
    except NonFiniteError as exc:
        raise NonFiniteError(
            f"{study.stage_name(study.report_step.name)}: {exc}; nothing was committed"
        ) from None
    claims = claim_records(study, metrics)
    plots = staged / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    import matplotlib.pyplot as plt

    for name, fig in result.figures.items():
        fig.savefig(plots / f"{name}.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
    tables = "".join(f"### {name}\n\n{table.strip()}\n\n" for name, table in result.tables.items())
    (staged / "tables.md").write_text(tables)
    _write_curves(study, result, staged / "curves")
    timing = {**_timings(root, study), study.report_step.name: wall_s}
    timing["total"] = sum(timing.values())
    doc = {
        "study": study.slug,
        "title": study.title,
        "arxiv": study.arxiv,
        "group": study.group,
        "kind": study.kind,
        "profile": lab.profile,
        "metrics": metrics.to_json(),
        "timing_s": timing,
        "claims_holding": sum(c["holds"] for c in claims),
        "claims_inconclusive": sum(c["verdict"] == "inconclusive" for c in claims),
        "claims_total": len(claims),
    }
    write_json(staged / "metrics.json", doc)
    write_json(staged / "headline.json", headline(study, doc, claims))
    write_json(staged / "claims.json", claims)
    return doc, claims


def headline(study: Study, doc: Mapping[str, Any], claims: list[dict[str, Any]]) -> dict[str, Any]:
    """The numbers DVC compares across experiments (reports/<slug>/headline.json, the stage's
    DVC metrics file): the count of each verdict, each claim's verdict and the means of the
    quantities it was decided on, and the means of the study's headline metrics
    (:attr:`Study.headline`; all of them when none are named and there are at most
    :data:`HEADLINE_MAX`). The full record (per-seed values, spread, timings, paper) stays in
    metrics.json."""
    stats = doc["metrics"]
    if study.headline:
        names = [n for n in stats if any(fnmatch.fnmatchcase(n, p) for p in study.headline)]
    else:
        names = list(stats) if len(stats) <= HEADLINE_MAX else []
    verdicts = [c["verdict"] for c in claims]
    return {
        "verdicts": {v.replace(" ", "_"): verdicts.count(v) for v in VERDICTS},
        "claims": {
            c["id"]: {"verdict": c["verdict"]}
            | {t["name"]: _or_null(t["mean"]) for t in c["tests"]}
            for c in claims
        },
        "metrics": {n: _or_null(stats[n]["mean"]) for n in names},
    }


def _or_null(x: float) -> float | None:
    """A number for strict JSON: non-finite (an infinite bound, an empty mean) as null."""
    return x if math.isfinite(x) else None


def _write_curves(study: Study, result: Report, out: Path) -> None:
    """Each declared curve's rows as ``<name>.csv`` (x column first); an error naming the curve
    if one is missing, undeclared, or lacks its x/y columns or numbers."""
    declared = {c.name: c for c in study.curves}
    undeclared = sorted(set(result.curves) - set(declared))
    missing = sorted(set(declared) - set(result.curves))
    if undeclared or missing:
        raise ValueError(
            f"study {study.slug}: the report returns curves {sorted(result.curves)}, the study "
            f"declares {sorted(declared)} (missing: {missing}; undeclared: {undeclared})"
        )
    if not declared:
        return
    out.mkdir(parents=True, exist_ok=True)
    for name, curve in declared.items():
        rows = list(result.curves[name])
        if not rows:
            raise ValueError(f"study {study.slug}: curve {name!r} has no rows")
        required = [curve.x, *curve.ys]
        columns = list(required)
        for i, row in enumerate(rows):
            absent = [c for c in required if c not in row]
            bad = [
                k for k, v in row.items() if isinstance(v, bool) or not isinstance(v, int | float)
            ]
            if absent or bad:
                raise ValueError(
                    f"study {study.slug}: curve {name!r} row {i} lacks columns {absent} or holds "
                    f"non-numbers in {bad}"
                )
            columns += [k for k in row if k not in columns]
        with (out / f"{name}.csv").open("w", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows([_csv_number(row.get(c)) for c in columns] for row in rows)


def _csv_number(value: float | None) -> str:
    """A CSV cell: the number's repr, empty when absent or not finite."""
    if value is None or not math.isfinite(float(value)):
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)
