"""Merges (subspacelab.merging) timed on the merge-bench zoo and on a 10M-parameter model, and
cross-checked against fusion-bench's Task Arithmetic and TIES where that package installs.

Each measurement runs in a fresh process so its peak memory is its own. fusion-bench (PyPI
0.2.33) is looked for in a throw-away virtual environment (FUSION_BENCH_PYTHON, default
/tmp/fb/venv/bin/python), never in the project's .venv; the same state dicts go to both through
a safetensors file.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import in_subprocess, machine

T = 8
ZOO_SHAPES = [(256, 64), (256,), (256, 256), (256,), (256, 256), (256,)]
BIG_SHAPES = [(500, 500)] * 40  # 10,000,000 parameters
FB_PYTHON = os.environ.get("FUSION_BENCH_PYTHON", "/tmp/fb/venv/bin/python")
MODULE = "benchmarks.merging"


def _task_vectors(shapes: list[tuple[int, ...]], seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        {f"p{i}": 0.01 * torch.randn(s, generator=g) for i, s in enumerate(shapes)}
        for _ in range(T)
    ]


def time_merge(method: str, big: bool) -> dict[str, Any]:
    """Seconds for one merge of T task vectors (single thread)."""
    from subspacelab.merging import dc_merge, task_arithmetic, ties_merge, tsv_merge

    torch.set_num_threads(1)
    tvs = _task_vectors(BIG_SHAPES if big else ZOO_SHAPES)
    fns = {
        "task_arithmetic": lambda: task_arithmetic(tvs),
        "ties": lambda: ties_merge(tvs, 0.2),
        "tsv_m": lambda: tsv_merge(tvs),
        "dc_merge": lambda: dc_merge(tvs, None, "avg")[0],
    }
    t0 = time.perf_counter()
    fns[method]()
    return {"seconds": time.perf_counter() - t0}


def _best_of(fn: Callable[[], Any], repeats: int = 3) -> tuple[Any, float]:
    """The result of ``fn`` and its best wall time over ``repeats`` runs."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, min(times)


def _ours_vs_fusion_bench(workdir: Path) -> dict[str, Any]:
    """Our TA and TIES against fusion-bench's on the zoo-shaped task vectors."""
    from safetensors.torch import save_file

    from subspacelab.merging import task_arithmetic, ties_merge

    base = {k: torch.zeros_like(v) for k, v in _task_vectors(ZOO_SHAPES)[0].items()}
    tvs = _task_vectors(ZOO_SHAPES)
    flat = {f"{t}.{k}": v for t, tv in enumerate(tvs) for k, v in tv.items()}
    save_file(flat, str(workdir / "tvs.safetensors"))
    ta, t_ta = _best_of(lambda: task_arithmetic(tvs))
    ties, t_ties = _best_of(lambda: ties_merge(tvs, 0.2))
    script = workdir / "fb.py"
    script.write_text(_FB_SCRIPT)
    proc = subprocess.run(
        [FB_PYTHON, str(script), str(workdir)], capture_output=True, text=True, check=True
    )
    fb = json.loads(proc.stdout.strip().splitlines()[-1])
    from safetensors.torch import load_file

    theirs = load_file(str(workdir / "fb_out.safetensors"))
    ta_diff = max(float((ta[k] + base[k] - theirs[f"ta.{k}"]).abs().max()) for k in ta)
    ties_diff = max(float((ties[k] - theirs[f"ties.{k}"]).abs().max()) for k in ties)
    ties_ndiff = sum(int((ties[k] != theirs[f"ties.{k}"]).sum()) for k in ties)
    return {
        "fb_version": fb["version"],
        "ta_max_abs_diff": ta_diff,
        "ta_time_ratio": fb["ta_s"] / t_ta,
        "ties_max_abs_diff": ties_diff,
        "ties_entries_differing": ties_ndiff,
        "ties_time_ratio": fb["ties_s"] / t_ties,
        "ours_ta_s": t_ta,
        "ours_ties_s": t_ties,
        "fb_ta_s": fb["ta_s"],
        "fb_ties_s": fb["ties_s"],
    }


_FB_SCRIPT = """
import json, sys, time
from importlib.metadata import version
import torch
from safetensors.torch import load_file, save_file
from fusion_bench.method.ties_merging.ties_merging_utils import (
    state_dict_to_vector, vector_to_state_dict, ties_merging,
)
from fusion_bench.utils.state_dict_arithmetic import state_dict_add, state_dict_sub
torch.set_num_threads(1)
d = sys.argv[1]
flat = load_file(d + "/tvs.safetensors")
T = 1 + max(int(k.split(".")[0]) for k in flat)
tvs = [{k.split(".", 1)[1]: v for k, v in flat.items() if k.startswith(f"{t}.")} for t in range(T)]
base = {k: torch.zeros_like(v) for k, v in tvs[0].items()}
fts = [state_dict_add(base, tv) for tv in tvs]
def best(fn):
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, min(times)
def fb_ta():
    total = None
    for ft in fts:
        tv = state_dict_sub(ft, base)
        total = tv if total is None else state_dict_add(total, tv)
    return state_dict_add(base, total)
def fb_ties():
    flat_tvs = torch.vstack([state_dict_to_vector(tv) for tv in tvs])
    merged = ties_merging(flat_tvs, reset_thresh=20, merge_func="mean")
    return vector_to_state_dict(merged, tvs[0])
ta, ta_s = best(fb_ta)
ties, ties_s = best(fb_ties)
out = {f"ta.{k}": v.contiguous() for k, v in ta.items()}
out.update({f"ties.{k}": v.detach().contiguous() for k, v in ties.items()})
save_file(out, d + "/fb_out.safetensors")
print(json.dumps({"version": version("fusion-bench"), "ta_s": ta_s, "ties_s": ties_s}))
"""


def section() -> list[str]:
    """Markdown lines for benchmarks/RESULTS.md."""
    lines = [
        f"## Merges: {T} task vectors, zoo MLP (148k params) and 10M params, 1 thread",
        "",
        f"Machine: {machine()}.",
        "",
        "| merge | zoo time (s) | zoo peak RSS (MiB) | 10M time (s) | 10M peak RSS (MiB) |",
        "|---|---|---|---|---|",
    ]
    for method in ("task_arithmetic", "ties", "tsv_m", "dc_merge"):
        small = in_subprocess(MODULE, "time_merge", method=method, big=False)
        big = in_subprocess(MODULE, "time_merge", method=method, big=True)
        lines.append(
            f"| {method} | {small['seconds']:.4f} | {small['peak_rss_mib']:.0f} | "
            f"{big['seconds']:.2f} | {big['peak_rss_mib']:.0f} |"
        )
    lines += ["", "### fusion-bench cross-check (zoo-shaped task vectors)", ""]
    if not Path(FB_PYTHON).is_file():
        lines.append(f"fusion-bench not available: no interpreter at {FB_PYTHON}.")
        return lines
    with tempfile.TemporaryDirectory() as tmp:
        try:
            r = _ours_vs_fusion_bench(Path(tmp))
        except subprocess.CalledProcessError as exc:
            tail = (exc.stderr or "").strip().splitlines()[-1:] or ["?"]
            lines.append(f"fusion-bench failed to run: {tail[0]}")
            return lines
    lines += [
        f"fusion-bench {r['fb_version']}; TIES at top-20 %, disjoint mean.",
        "",
        "| method | max abs diff | entries differing | fusion-bench time / ours |",
        "|---|---|---|---|",
        f"| task arithmetic | {r['ta_max_abs_diff']:.2e} | — | {r['ta_time_ratio']:.2f} |",
        f"| TIES | {r['ties_max_abs_diff']:.2e} | {r['ties_entries_differing']} | "
        f"{r['ties_time_ratio']:.2f} |",
    ]
    return lines
