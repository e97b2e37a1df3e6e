"""Merges (subspacelab.merging) timed on the merge-bench zoo and on a 10M-parameter model
(:func:`section`), and cross-checked against fusion-bench's own TaskArithmeticAlgorithm and
TiesMergingAlgorithm run on a model pool, where that package installs
(:func:`fusion_bench_section`).

Each timing runs in a fresh process so its peak memory is its own. fusion-bench (PyPI 0.2.33) is
looked for in a throw-away virtual environment (FUSION_BENCH_PYTHON, default
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
    """fusion-bench's own TaskArithmeticAlgorithm and TiesMergingAlgorithm, run on a model pool
    (a non-zero pretrained model and T fine-tuned ones, zoo-shaped), against ours on the same
    state dicts: θ_0 + λ·task_arithmetic(τ) and θ_0 + λ·ties_merge(τ, 0.2), λ = SCALING.

    Both run in the one fusion-bench process, interleaved (best of 5 each, every call on a fresh
    pool built outside the timer: fusion-bench's TIES writes into the pool's pretrained model),
    so the time ratio is not skewed by load that changes between processes; the merged models
    come back as safetensors.
    """
    from safetensors.torch import load_file, save_file

    # a non-zero pretrained model, ten times the task vectors' scale
    base = {k: 10 * v for k, v in _task_vectors(ZOO_SHAPES, seed=1)[0].items()}
    fts = [{k: base[k] + v for k, v in tv.items()} for tv in _task_vectors(ZOO_SHAPES)]
    flat = {f"base.{k}": v for k, v in base.items()}
    flat |= {f"{t}.{k}": v for t, ft in enumerate(fts) for k, v in ft.items()}
    save_file(flat, str(workdir / "models.safetensors"))
    script = workdir / "fb.py"
    script.write_text(_FB_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.run(
        [FB_PYTHON, str(script), str(workdir), str(SCALING)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    fb = json.loads(proc.stdout.strip().splitlines()[-1])
    out = load_file(str(workdir / "fb_out.safetensors"))
    keys = list(base)

    def diff(a: str, b: str) -> float:
        return max(float((out[f"{a}.{k}"] - out[f"{b}.{k}"]).abs().max()) for k in keys)

    return {
        "fb_version": fb["version"],
        "ta_max_abs_diff": diff("ours_ta", "ta"),
        "ties_max_abs_diff": diff("ours_ties", "ties"),
        "ties_entries_differing": sum(
            int((out[f"ours_ties.{k}"] - out[f"ties.{k}"]).abs().gt(1e-6).sum()) for k in keys
        ),
        "base_abs_mean": float(torch.cat([v.abs().reshape(-1) for v in base.values()]).mean()),
        "ta_time_ratio": fb["ta_s"] / fb["ours_ta_s"],
        "ties_time_ratio": fb["ties_s"] / fb["ours_ties_s"],
        **{k: fb[k] for k in ("ours_ta_s", "ours_ties_s", "ta_s", "ties_s")},
    }


SCALING = 0.3  # λ of both merges (fusion-bench's scaling_factor)
_FB_SCRIPT = """
import json, logging, sys, time
from importlib.metadata import version
import torch
from torch import nn
from safetensors.torch import load_file, save_file
from fusion_bench.method import TaskArithmeticAlgorithm, TiesMergingAlgorithm
from fusion_bench.modelpool import BaseModelPool
from subspacelab.merging import task_arithmetic, task_vectors, ties_merge
logging.disable(logging.WARNING)
torch.set_num_threads(1)
d, lam = sys.argv[1], float(sys.argv[2])
flat = load_file(d + "/models.safetensors")
names = sorted({k.split(".", 1)[0] for k in flat} - {"base"}, key=int)
sds = {n: {k.split(".", 1)[1]: v for k, v in flat.items() if k.startswith(n + ".")}
       for n in ["base", *names]}

class Weights(nn.Module):
    def __init__(self, sd):
        super().__init__()
        for k, v in sd.items():
            self.register_parameter(k, nn.Parameter(v.clone(), requires_grad=False))

def pool():
    models = {"_pretrained_": Weights(sds["base"])}
    models |= {f"task{n}": Weights(sds[n]) for n in names}
    return BaseModelPool(models)

def ours(merge):
    base = sds["base"]
    tv = merge(task_vectors(base, [sds[n] for n in names]))
    return {k: base[k] + lam * tv[k] for k in base}

algos = {
    "ta": TaskArithmeticAlgorithm(scaling_factor=lam),
    "ties": TiesMergingAlgorithm(
        scaling_factor=lam, threshold=20, remove_keys=[], merge_func="mean"
    ),
}
fns = {
    "ta": lambda p: algos["ta"].run(p).state_dict(),
    "ours_ta": lambda p: ours(task_arithmetic),
    "ties": lambda p: algos["ties"].run(p).state_dict(),
    "ours_ties": lambda p: ours(lambda tvs: ties_merge(tvs, 0.2)),
}
times = {k: [] for k in fns}
outs = {}
for _ in range(5):  # interleaved, so both see the same load
    for k, fn in fns.items():
        p = pool()
        t0 = time.perf_counter()
        outs[k] = fn(p)
        times[k].append(time.perf_counter() - t0)
save_file(
    {f"{m}.{k}": v.detach().contiguous() for m, sd in outs.items() for k, v in sd.items()},
    d + "/fb_out.safetensors",
)
res = {k + "_s": min(v) for k, v in times.items()}
print(json.dumps({"version": version("fusion-bench"), **res}))
"""


def fusion_bench_section() -> list[str]:
    """Markdown lines for benchmarks/RESULTS.md: the fusion-bench cross-check."""
    lines = [
        "## Merges: fusion-bench's own Task Arithmetic and TIES vs ours",
        "",
        f"Machine: {machine()}. fusion-bench runs in its own virtual environment "
        f"(FUSION_BENCH_PYTHON, default {FB_PYTHON}).",
        "",
    ]
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
        f"fusion-bench {r['fb_version']}: `TaskArithmeticAlgorithm(scaling_factor={SCALING})` "
        f"and `TiesMergingAlgorithm(scaling_factor={SCALING}, threshold=20, merge_func='mean')` "
        f"run on a `BaseModelPool` of a non-zero pretrained model (mean |θ_0| = "
        f"{r['base_abs_mean']:.3g}) and {T} fine-tuned models with the zoo MLP's shapes "
        "(148k parameters); ours: θ_0 + λ · merge(τ) from the same state dicts. Best of 5 "
        "interleaved calls, 1 thread, pools built outside the timer.",
        "",
        "| method | max abs diff | entries differing by > 1e-6 | ours (ms) | fusion-bench (ms) | "
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
    return lines
