"""Golden tiny-profile metrics: every study's metric values on tests/tiny_params.yaml.

The smoke test (tests/studies/test_smoke.py) compares each study's run against
``tiny_metrics/<slug>.json``, through ``renames/<slug>.json`` ({old name: new name}, the
documented mapping where a port renamed metrics). A change that moves a number fails it; when the
change is meant to (a new method, a fixed bug), rewrite the study's file with
``python -m tests.golden <slug> ...`` and say why in the commit. Each file records the CPU kind
that wrote it (:func:`machine`): values are compared on that kind only, names everywhere.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

MACHINE_KEY = "_machine"  # the CPU kind the numbers were written on (:func:`machine`)
_SIMD = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile")
HERE = Path(__file__).parent
TINY_METRICS = HERE / "tiny_metrics"
RENAMES = HERE / "renames"
REL, ABS = 1e-9, 1e-12  # round-off only: summation order may differ between equal programs


def machine() -> str:
    """The CPU kind, as far as it moves float rounding: torch's kernel level and the SIMD
    extensions MKL and oneDNN pick their kernels by. Golden numbers written on one kind differ in
    the last bits on another (and a tiny chaotic run then lands elsewhere), so values are only
    compared on the kind that wrote them; the metric names are compared everywhere."""
    import torch

    flags: set[str] = set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    return ":".join([torch.backends.cpu.get_cpu_capability(), *[f for f in _SIMD if f in flags]])


def written_on(slug: str) -> str | None:
    """The CPU kind that wrote ``slug``'s golden numbers (None: not recorded)."""
    path = TINY_METRICS / f"{slug}.json"
    return json.loads(path.read_text()).get(MACHINE_KEY) if path.is_file() else None


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
    values = json.loads(path.read_text())
    return {renames.get(k, k): v for k, v in values.items() if k != MACHINE_KEY}


def mismatches(slug: str, metrics: dict[str, Any], values: bool = True) -> list[str]:
    """What differs between a run's metrics and the golden ones (empty: identical): the metric
    names, and with ``values`` every value (to round-off)."""
    want, got = expected(slug), computed(metrics)
    out = [f"missing {k}" for k in sorted(set(want) - set(got))]
    out += [f"new {k}" for k in sorted(set(got) - set(want))]
    for k in sorted(set(want) & set(got)) if values else ():
        a, b = want[k], got[k]
        if len(a) != len(b) or not all(
            math.isclose(x, y, rel_tol=REL, abs_tol=ABS) for x, y in zip(a, b, strict=True)
        ):
            out.append(f"{k}: golden {a}, now {b}")
    return out
