"""Embedding tables of the recommendation group (unified_embedding, Coleman et al., NeurIPS 2023,
arXiv:2305.12102; optfs, arXiv:2301.10909): lookup and training throughput (rows/s) and peak
memory as the vocabulary grows from 10k to 10M rows.

Ours: the three schemes of ``subspacelab.recsys.tables``, each one ``nn.EmbeddingBag`` looked up
with the row ids its hashing gives: per-field (26 hashed blocks), multiplexed (one block shared
by every field) and Unified Embedding (two chunks for 4 of the fields, round-robin over 2
tables). Peer: the textbook layout, one ``nn.EmbeddingBag`` per field.

torchrec's EmbeddingBagCollection is not the peer: with torch 2.13.0 it does not import on CPU.
In a throwaway venv ``pip install torch==2.13.0 torchrec fbgemm-gpu-cpu`` resolves torchrec
1.9.2, which depends on the CUDA ``fbgemm-gpu`` 1.9.0 (and pins torchmetrics 1.0.3); that wheel
overwrites ``fbgemm-gpu-cpu``'s files in the shared ``fbgemm_gpu`` package and its libraries need
``libtorch_cuda.so``. With only ``fbgemm-gpu-cpu`` 1.9.0 reinstalled, its operator libraries fail
to load (undefined symbol ``torch::autograd::_wrap_outputs``: built against an older torch).

Each (size, layout) runs in its own subprocess on the same Zipf batches, 1 thread; peak memory
is its maximum RSS minus its RSS just before the tables were built (ids made, autograd and SGD
warmed up): tables, gradients and activations. The full run takes about 3 minutes.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from benchmarks.common import in_subprocess, machine

if TYPE_CHECKING:
    from subspacelab.recsys.tables import Scheme

FIELDS, DIM, BATCH, STEPS = 26, 16, 4096, 10
REPEATS = 3  # each pass is timed this many times; the fastest counts (a shared, noisy machine)
SIZES = (10_000, 100_000, 1_000_000, 10_000_000)
UE_WIDE, UE_TABLES = 4, 2  # Unified Embedding: 2 chunks for this many fields, over this many tables
LAYOUTS = ("per_field", "multiplexed", "unified", "peer")


def _raw(seed: int) -> np.ndarray:
    """Raw categorical ids (BATCH x STEPS, FIELDS): Zipf(1.1), as a CTR log's values."""
    rng = np.random.default_rng(seed)
    return rng.zipf(1.1, size=(BATCH * STEPS, FIELDS)) % 1_000_000_007


def scheme(layout: str, rows: int) -> Scheme:
    """The table scheme of ``layout`` with ``rows`` rows in all (the peer uses per-field's)."""
    from subspacelab.recsys import multiplexed, per_field, unified

    if layout in ("per_field", "peer"):
        return per_field([rows // FIELDS] * FIELDS, DIM)
    if layout == "multiplexed":
        return multiplexed(FIELDS, rows, DIM)
    if layout == "unified":
        chunks = [2] * UE_WIDE + [1] * (FIELDS - UE_WIDE)
        return unified(chunks, UE_TABLES, rows // UE_TABLES, DIM)
    raise ValueError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")


def _rss_mib() -> float:
    """This process's resident memory now (MiB)."""
    import os

    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(rows: int, layout: str) -> dict[str, Any]:
    """Forward-only and forward+backward+SGD rows/s of one layout with ``rows`` table rows, and
    the peak memory above the process's state before the tables (ids made, autograd and the
    optimiser warmed up on a 2-row table, so their lazy imports are not counted)."""
    import resource

    torch.set_num_threads(1)
    torch.manual_seed(0)
    s = scheme(layout, rows)
    ids = torch.from_numpy(s.lookup_rows(_raw(0)))
    warm = torch.nn.EmbeddingBag(2, DIM, mode="sum")
    torch.optim.SGD(warm.parameters(), lr=0.01).zero_grad()
    warm(torch.zeros(4, 1, dtype=torch.long)).sum().backward()
    torch.optim.SGD(warm.parameters(), lr=0.01).step()
    before = _rss_mib()
    if layout == "peer":
        per = rows // FIELDS
        tables = [torch.nn.EmbeddingBag(per, DIM, mode="sum") for _ in range(FIELDS)]
        ids = ids - torch.tensor([o[0] for o in s.offsets])

        def lookup(batch: torch.Tensor) -> torch.Tensor:
            return torch.cat([t(batch[:, f : f + 1]) for f, t in enumerate(tables)], dim=1)
    else:
        tables = [s.module()]

        def lookup(batch: torch.Tensor) -> torch.Tensor:
            return tables[0](batch)

    params = [p for t in tables for p in t.parameters()]
    opt = torch.optim.SGD(params, lr=0.01)
    batches = ids.split(BATCH)
    fwd, train = float("inf"), float("inf")
    with torch.no_grad():
        lookup(batches[0])
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            for b in batches:
                lookup(b)
            fwd = min(fwd, time.perf_counter() - t0)
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        for b in batches:
            opt.zero_grad()
            lookup(b).square().mean().backward()
            opt.step()
        train = min(train, time.perf_counter() - t0)
    n = BATCH * STEPS
    return {
        "lookup_rows_per_s": n / fwd,
        "train_rows_per_s": n / train,
        "table_mib": sum(p.numel() for p in params) * 4 / 2**20,
        "peak_above_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before,
    }


def rows_for(sizes: tuple[int, ...]) -> list[str]:
    """One table row per (size, layout): rows/s and peak memory against the table's bytes."""
    lines = []
    for rows in sizes:
        got = {
            layout: in_subprocess("benchmarks.recsys", "measure", rows=rows, layout=layout)
            for layout in LAYOUTS
        }
        peer = got["peer"]
        for layout, r in got.items():
            name = "peer (EmbeddingBag per field)" if layout == "peer" else f"ours, {layout}"
            lines.append(
                f"| {rows:,} | {name} | {r['table_mib']:.1f} | {r['lookup_rows_per_s']:,.0f} | "
                f"{r['lookup_rows_per_s'] / peer['lookup_rows_per_s']:.2f} | "
                f"{r['train_rows_per_s']:,.0f} | "
                f"{r['train_rows_per_s'] / peer['train_rows_per_s']:.2f} | "
                f"{r['peak_above_mib']:.0f} | {r['peak_above_mib'] / r['table_mib']:.1f} |"
            )
    return lines


def section(sizes: tuple[int, ...] = SIZES) -> list[str]:
    """The Markdown section for RESULTS.md."""
    return [
        f"## Embedding tables: {FIELDS} fields, d = {DIM}, batch {BATCH}, {STEPS} batches, "
        "1 thread",
        "",
        f"Measured on {machine()}. Ours: the per-field, multiplexed and Unified Embedding "
        f"({UE_WIDE} fields in 2 chunks, {UE_TABLES} tables) schemes of recsys/tables.py, one "
        "EmbeddingBag each; peer: one EmbeddingBag per field (torchrec's EmbeddingBagCollection "
        "does not import on CPU with torch 2.13: see benchmarks/recsys.py). Dense SGD steps (the "
        f"gradient of the whole table); each pass timed {REPEATS} times, the fastest kept; "
        "ratios are against the peer at the same size. Peak MiB: the process's maximum RSS "
        "minus its RSS just before the tables were built (ids made, autograd and SGD warmed "
        "up); × table: that over the table's MiB (a dense gradient doubles it; below ~1M rows "
        "a constant ~60-90 MiB of activations and allocator slack dominates).",
        "",
        "| table rows | layout | table MiB | lookup rows/s | × peer | train rows/s | × peer "
        "| peak MiB | × table |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows_for(sizes),
    ]
