"""Golden tiny-profile metrics: every study's metric values on tests/tiny_params.yaml.

The smoke test (tests/studies/test_smoke.py) compares each study's run against
``tiny_metrics/<slug>.json``, through ``renames/<slug>.json`` ({old name: new name}, the
documented mapping where a port renamed metrics). A change that moves a number fails it; when the
change is meant to (a new method, a fixed bug), rewrite the study's file with
``python -m tests.golden <slug> ...`` and say why in the commit.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
TINY_METRICS = HERE / "tiny_metrics"
RENAMES = HERE / "renames"
REL, ABS = 1e-9, 1e-12  # round-off only: summation order may differ between equal programs


def computed(metrics: dict[str, Any]) -> dict[str, list[float]]:
    """Values of every metric but wall-clock measurements (``*_time``, ``*_seconds``)."""
    return {
        k: list(v["values"]) for k, v in metrics.items() if not k.endswith(("_time", "_seconds"))
    }


def expected(slug: str) -> dict[str, list[float]]:
    """The golden values of ``slug`` under today's names."""
    path = TINY_METRICS / f"{slug}.json"
    if not path.is_file():
        raise AssertionError(f"{path} missing: write it with `python -m tests.golden {slug}`")
    mapping = RENAMES / f"{slug}.json"
    renames = json.loads(mapping.read_text()) if mapping.is_file() else {}
    return {renames.get(k, k): v for k, v in json.loads(path.read_text()).items()}


def mismatches(slug: str, metrics: dict[str, Any]) -> list[str]:
    """What differs between a run's metrics and the golden ones (empty: identical)."""
    want, got = expected(slug), computed(metrics)
    out = [f"missing {k}" for k in sorted(set(want) - set(got))]
    out += [f"new {k}" for k in sorted(set(got) - set(want))]
    for k in sorted(set(want) & set(got)):
        a, b = want[k], got[k]
        if len(a) != len(b) or not all(
            math.isclose(x, y, rel_tol=REL, abs_tol=ABS) for x, y in zip(a, b, strict=True)
        ):
            out.append(f"{k}: golden {a}, now {b}")
    return out
