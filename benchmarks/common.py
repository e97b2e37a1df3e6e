"""Helpers: run a measurement in a fresh subprocess to get its time and peak memory."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from typing import Any

import torch


def in_subprocess(module: str, func: str, **kwargs: Any) -> dict[str, Any]:
    """Run ``module.func(**kwargs)`` in a new interpreter; its dict result plus peak RSS (MiB).

    The function must return a JSON-serialisable dict; peak RSS is the child's ru_maxrss.
    """
    code = (
        "import json, resource, sys, importlib;"
        f"m = importlib.import_module({module!r});"
        f"out = getattr(m, {func!r})(**json.loads(sys.argv[1]));"
        "out['peak_rss_mib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024;"
        "print(json.dumps(out))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(kwargs)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> str:
    """One line describing where the numbers were measured."""
    return (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads "
        f"available, torch {torch.__version__}, Python {platform.python_version()}"
    )
