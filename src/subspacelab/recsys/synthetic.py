"""Seeded CTR logs with a ground-truth factorisation machine.

The miniatures of unified_embedding (arXiv:2305.12102) and optfs (arXiv:2301.10909) need logs
whose effects are known: skewed (Zipf) values over heterogeneous (log-uniform) vocabularies,
pure-noise fields, and — for optfs — signal fields in which only a share of the values carry
weight. The label of a row is Bernoulli(sigmoid(logit)) with

    logit = b + Σ_f w_f[v_f] + Σ_{f<g} <u_f[v_f], u_g[v_g]>,

b set by bisection so that the mean click probability is ``target_ctr``. The true logits are kept:
their AUC is the Bayes limit any model of the log is measured against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CTRLog:
    """A generated log: ids ``x`` (rows, fields), labels ``y``, and the generator's truth."""

    x: np.ndarray
    y: np.ndarray
    logits: np.ndarray
    vocab: tuple[int, ...]
    signal_fields: tuple[bool, ...]
    signal_values: tuple[np.ndarray, ...]

    @property
    def n_fields(self) -> int:
        """Number of categorical fields."""
        return self.x.shape[1]

    def split(self, sizes: tuple[int, ...]) -> list[CTRLog]:
        """Consecutive row blocks of the given sizes (the log's order stands in for time)."""
        if sum(sizes) > self.x.shape[0]:
            raise ValueError(f"split sizes {sizes} exceed the {self.x.shape[0]} rows")
        out, start = [], 0
        for n in sizes:
            sl = slice(start, start + n)
            out.append(
                CTRLog(
                    self.x[sl],
                    self.y[sl],
                    self.logits[sl],
                    self.vocab,
                    self.signal_fields,
                    self.signal_values,
                )
            )
            start += n
        return out


def zipf_values(rng: np.random.Generator, vocab: int, s: float, n: int) -> np.ndarray:
    """``n`` draws of ids 0..vocab-1 with P(k) ∝ (k + 1)^-s (id 0 the most frequent)."""
    p = (np.arange(1, vocab + 1, dtype=np.float64)) ** -s
    return rng.choice(vocab, size=n, p=p / p.sum()).astype(np.int64)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def ctr_log(
    n_rows: int,
    n_fields: int,
    vocab_range: tuple[int, int],
    zipf_s: float,
    n_noise: int,
    latent_dim: int,
    target_ctr: float,
    seed: int,
    signal_value_frac: float = 1.0,
    weight_std: float = 1.0,
) -> CTRLog:
    """A log of ``n_rows`` rows and ``n_fields`` fields, the last ``n_noise`` pure noise.

    Vocabularies are log-uniform in ``vocab_range`` (inclusive); in each signal field a random
    ``signal_value_frac`` of the values carry first-order weights N(0, weight_std²) and latent
    vectors N(0, weight_std²/latent_dim) — the rest, and every value of a noise field, carry zero.
    """
    lo, hi = vocab_range
    if not 2 <= lo <= hi:
        raise ValueError(f"vocab_range must satisfy 2 <= low <= high, got {vocab_range}")
    if not 0 <= n_noise < n_fields:
        raise ValueError(f"n_noise must be in [0, n_fields), got {n_noise} of {n_fields}")
    if not 0 < target_ctr < 1 or not 0 < signal_value_frac <= 1 or zipf_s <= 0:
        raise ValueError("need 0 < target_ctr < 1, 0 < signal_value_frac <= 1 and zipf_s > 0")
    rng = np.random.default_rng(seed)
    vocab = np.exp(rng.uniform(np.log(lo), np.log(hi + 1), size=n_fields)).astype(np.int64)
    vocab = np.clip(vocab, lo, hi)
    signal_fields = tuple(f < n_fields - n_noise for f in range(n_fields))
    x = np.stack([zipf_values(rng, int(v), zipf_s, n_rows) for v in vocab], axis=1)
    first = np.zeros(n_rows)
    u_sum = np.zeros((n_rows, latent_dim))
    u_sq = np.zeros(n_rows)
    signal_values = []
    for f, v in enumerate(vocab):
        keep = np.zeros(int(v), dtype=bool)
        if signal_fields[f]:
            keep[rng.random(int(v)) < signal_value_frac] = True
        w = rng.normal(0.0, weight_std, int(v)) * keep
        u = rng.normal(0.0, weight_std / np.sqrt(latent_dim), (int(v), latent_dim)) * keep[:, None]
        first += w[x[:, f]]
        uf = u[x[:, f]]
        u_sum += uf
        u_sq += (uf**2).sum(axis=1)
        signal_values.append(keep)
    pair = 0.5 * ((u_sum**2).sum(axis=1) - u_sq)
    core = first + pair
    lo_b, hi_b = -50.0, 50.0
    for _ in range(100):  # bisection on the bias: mean click probability = target
        mid = 0.5 * (lo_b + hi_b)
        lo_b, hi_b = (mid, hi_b) if _sigmoid(core + mid).mean() < target_ctr else (lo_b, mid)
    logits = core + 0.5 * (lo_b + hi_b)
    y = (rng.random(n_rows) < _sigmoid(logits)).astype(np.float32)
    return CTRLog(x, y, logits, tuple(int(v) for v in vocab), signal_fields, tuple(signal_values))


def iter_batches(n_rows: int, batch: int, seed: int) -> list[np.ndarray]:
    """Index batches of one shuffled epoch, from a private generator (the global RNG untouched)."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    order = np.random.default_rng(seed).permutation(n_rows)
    return [order[i : i + batch] for i in range(0, n_rows, batch)]
