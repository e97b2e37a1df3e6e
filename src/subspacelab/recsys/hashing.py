"""Stable salted 64-bit hashing of categorical values (vectorised splitmix64).

Python's ``hash()`` is salted per process, so a table indexed by it changes from run to run; the
recommendation studies (unified_embedding, arXiv:2305.12102; optfs, arXiv:2301.10909) hash every
(salt, value) pair with this fixed function instead. splitmix64 (Steele, Lea & Flood, OOPSLA 2014)
is a bijection of 64-bit words with good avalanche, cheap in numpy.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser of ``x + golden`` on uint64 words (elementwise, wraps mod 2^64)."""
    z = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = z + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def salted_hash(values: np.ndarray, salt: int) -> np.ndarray:
    """A 64-bit hash of each (salt, value): independent functions for different salts."""
    if salt < 0:
        raise ValueError(f"salt must be >= 0, got {salt}")
    v = np.asarray(values)
    if v.dtype.kind not in "iu":
        raise TypeError(f"values must be integer ids, got dtype {v.dtype}")
    if v.dtype.kind == "i" and v.size and int(v.min()) < 0:
        raise ValueError("values must be non-negative ids")
    return splitmix64(splitmix64(np.full(v.shape, salt, dtype=np.uint64)) ^ v.astype(np.uint64))


def bucket(values: np.ndarray, salt: int, buckets: int) -> np.ndarray:
    """Row index ``hash(salt, value) mod buckets`` as int64."""
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1, got {buckets}")
    return (salted_hash(values, salt) % np.uint64(buckets)).astype(np.int64)


def collision_rate(values: np.ndarray, salt: int, buckets: int) -> float:
    """Share of distinct values that share their bucket with another distinct value."""
    distinct = np.unique(np.asarray(values))
    if distinct.size == 0:
        return 0.0
    rows = bucket(distinct, salt, buckets)
    _, inverse, counts = np.unique(rows, return_inverse=True, return_counts=True)
    return float((counts[inverse] > 1).mean())


def expected_collision_rate(n_values: int, buckets: int) -> float:
    """For a uniform random hash: P(a value shares its bucket) = 1 - (1 - 1/M)^(n-1)."""
    return 1.0 - (1.0 - 1.0 / buckets) ** max(n_values - 1, 0)
