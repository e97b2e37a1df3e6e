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


def _ours_vs_fusion_bench(workdir: Path) -> dict[str, Any]:
    """Our TA and TIES against fusion-bench's on the zoo-shaped task vectors.

    Both run in the one fusion-bench process, interleaved (best of 5 each), so the time ratio
    is not skewed by load that changes between processes; the outputs come back as safetensors.
    """
    from safetensors.torch import load_file, save_file

    tvs = _task_vectors(ZOO_SHAPES)
    flat = {f"{t}.{k}": v for t, tv in enumerate(tvs) for k, v in tv.items()}
    save_file(flat, str(workdir / "tvs.safetensors"))
    script = workdir / "fb.py"
    script.write_text(_FB_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.run(
        [FB_PYTHON, str(script), str(workdir)], capture_output=True, text=True, check=True, env=env
    )
    fb = json.loads(proc.stdout.strip().splitlines()[-1])
    out = load_file(str(workdir / "fb_out.safetensors"))
    keys = list(tvs[0])

    def diff(a: str, b: str) -> float:
        return max(float((out[f"{a}.{k}"] - out[f"{b}.{k}"]).abs().max()) for k in keys)

    return {
        "fb_version": fb["version"],
        "ta_max_abs_diff": diff("ours_ta", "ta"),
        "ties_max_abs_diff": diff("ours_ties", "ties"),
        "ties_entries_differing": sum(
            int((out[f"ours_ties.{k}"] != out[f"ties.{k}"]).sum()) for k in keys
        ),
        "ta_time_ratio": fb["ta_s"] / fb["ours_ta_s"],
        "ties_time_ratio": fb["ties_s"] / fb["ours_ties_s"],
        **{k: fb[k] for k in ("ours_ta_s", "ours_ties_s", "ta_s", "ties_s")},
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
from subspacelab.merging import task_arithmetic, ties_merge
torch.set_num_threads(1)
d = sys.argv[1]
flat = load_file(d + "/tvs.safetensors")
T = 1 + max(int(k.split(".")[0]) for k in flat)
tvs = [{k.split(".", 1)[1]: v for k, v in flat.items() if k.startswith(f"{t}.")} for t in range(T)]
base = {k: torch.zeros_like(v) for k, v in tvs[0].items()}
fts = [state_dict_add(base, tv) for tv in tvs]
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
fns = {
    "ta": fb_ta,
    "ours_ta": lambda: task_arithmetic(tvs),
    "ties": fb_ties,
    "ours_ties": lambda: ties_merge(tvs, 0.2),
}
times = {k: [] for k in fns}
outs = {}
for _ in range(5):  # interleaved, so both see the same load
    for k, fn in fns.items():
        t0 = time.perf_counter()
        outs[k] = fn()
        times[k].append(time.perf_counter() - t0)
save_file(
    {f"{m}.{k}": v.detach().contiguous() for m, sd in outs.items() for k, v in sd.items()},
    d + "/fb_out.safetensors",
)
res = {k + "_s": min(v) for k, v in times.items()}
print(json.dumps({"version": version("fusion-bench"), **res}))
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
        "| method | max abs diff | entries differing | ours (ms) | fusion-bench (ms) | "
        "fusion-bench time / ours |",
        "|---|---|---|---|---|---|",
        f"| task arithmetic | {r['ta_max_abs_diff']:.2e} | — | {1e3 * r['ours_ta_s']:.3g} | "
        f"{1e3 * r['ta_s']:.3g} | {r['ta_time_ratio']:.3g} |",
        f"| TIES | {r['ties_max_abs_diff']:.2e} | {r['ties_entries_differing']} | "
        f"{1e3 * r['ours_ties_s']:.3g} | {1e3 * r['ties_s']:.3g} | {r['ties_time_ratio']:.3g} |",
        "",
        "Both equal to 1e-6 (the issue's bar): "
        + ("yes." if max(r["ta_max_abs_diff"], r["ties_max_abs_diff"]) <= 1e-6 else "NO."),
    ]
    return lines
