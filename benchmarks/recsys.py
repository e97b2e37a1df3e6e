"""Embedding tables of the recommendation group: lookup and training throughput (rows/s) and
peak memory as the table grows to 10M rows.

Ours: one ``nn.EmbeddingBag`` holding every field's hashed rows (the per-field scheme of
``subspacelab.recsys.tables``; multiplexed and Unified Embedding are the same lookup with other
row ids). Peer: the textbook layout, one ``nn.EmbeddingBag`` per field. torchrec's
EmbeddingBagCollection does not install cleanly beside the lab: torchrec 1.9.2 pins
torchmetrics==1.0.3 (Lightning's is 1.9) and pulls the CUDA fbgemm-gpu next to fbgemm-gpu-cpu.
Each layout is timed in its own subprocess on the same batches, 1 thread; the ratio is what to
read.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from benchmarks.common import in_subprocess, machine

if TYPE_CHECKING:
    from subspacelab.recsys.tables import Scheme

FIELDS, DIM, BATCH, STEPS = 26, 16, 4096, 20
REPEATS = 3  # each pass is timed this many times; the fastest counts (a shared, noisy machine)
SIZES = (10_000, 100_000, 1_000_000, 10_000_000)


def _ids(rows: int, seed: int) -> tuple[torch.Tensor, Scheme]:
    from subspacelab.recsys import per_field

    scheme = per_field([rows // FIELDS] * FIELDS, DIM)
    rng = np.random.default_rng(seed)
    raw = rng.zipf(1.1, size=(BATCH * STEPS, FIELDS)) % 1_000_000_007
    return torch.from_numpy(scheme.lookup_rows(raw)), scheme


def measure(rows: int, layout: str) -> dict[str, Any]:
    """Forward-only and forward+backward+SGD rows/s for one layout at ``rows`` total rows."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    ids, scheme = _ids(rows, 0)
    per = rows // FIELDS
    if layout == "ours":
        tables = [scheme.module()]

        def lookup(batch: torch.Tensor) -> torch.Tensor:
            return tables[0](batch)
    else:
        tables = [torch.nn.EmbeddingBag(per, DIM, mode="sum") for _ in range(FIELDS)]
        local = ids - torch.tensor([o[0] for o in scheme.offsets])

        def lookup(batch: torch.Tensor) -> torch.Tensor:
            return torch.cat([t(batch[:, f : f + 1]) for f, t in enumerate(tables)], dim=1)

        ids = local
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
    }


def baseline(rows: int) -> dict[str, Any]:
    """A process holding only the ids: the memory floor."""
    _ids(rows, 0)
    return {}


def section() -> list[str]:
    """The Markdown section for RESULTS.md."""
    lines = [
        f"## Embedding tables: {FIELDS} fields, d = {DIM}, batch {BATCH}, {STEPS} batches, "
        "1 thread",
        "",
        f"Measured on {machine()}. Ours: one EmbeddingBag over all fields' rows; peer: one "
        "EmbeddingBag per field. Dense SGD steps (the gradient of the whole table); each pass "
        f"timed {REPEATS} times, the fastest kept. Peak MiB: the process's maximum RSS minus that "
        "of a process holding only the ids; the ids' generation has a transient peak of its own "
        "(~100 MiB), so tables smaller than that show ~0.",
        "",
        "| table rows | table MiB | lookup rows/s ours | peer | ratio | train rows/s ours "
        "| peer | ratio | peak MiB ours | peer |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for rows in SIZES:
        base = in_subprocess("benchmarks.recsys", "baseline", rows=rows)["peak_rss_mib"]
        ours = in_subprocess("benchmarks.recsys", "measure", rows=rows, layout="ours")
        peer = in_subprocess("benchmarks.recsys", "measure", rows=rows, layout="peer")
        lines.append(
            f"| {rows:,} | {ours['table_mib']:.0f} | {ours['lookup_rows_per_s']:,.0f} | "
            f"{peer['lookup_rows_per_s']:,.0f} | "
            f"{ours['lookup_rows_per_s'] / peer['lookup_rows_per_s']:.2f} | "
            f"{ours['train_rows_per_s']:,.0f} | {peer['train_rows_per_s']:,.0f} | "
            f"{ours['train_rows_per_s'] / peer['train_rows_per_s']:.2f} | "
            f"{ours['peak_rss_mib'] - base:.0f} | {peer['peak_rss_mib'] - base:.0f} |"
        )
    return lines
