"""Streaming readers of real CTR logs for the full profiles (Criteo Display Advertising format).

A Criteo line is ``label \\t I1..I13 \\t C1..C26``: 13 integer counts (may be empty or negative)
and 26 categorical values as 8-digit hex strings (may be empty). The reader yields fixed-size
chunks and never holds more than one chunk of parsed rows, so a 45M-row file streams in constant
memory. Used by unified_embedding (arXiv:2305.12102) and optfs (arXiv:2301.10909).
"""

from __future__ import annotations

import gzip
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

N_INT, N_CAT = 13, 26
MISSING_INT = np.iinfo(np.int64).min


@dataclass(frozen=True)
class CriteoChunk:
    """Labels (n,), integer features (n, 13; ``MISSING_INT`` where empty) and categorical ids
    (n, 26; the hex value + 1, 0 where empty)."""

    labels: np.ndarray
    ints: np.ndarray
    cats: np.ndarray


def _open(path: Path) -> TextIO:
    return gzip.open(path, "rt") if path.suffix == ".gz" else path.open()


def _parse(lines: list[str], path: Path, first_line: int) -> CriteoChunk:
    n = len(lines)
    labels = np.empty(n, np.float32)
    ints = np.full((n, N_INT), MISSING_INT, np.int64)
    cats = np.zeros((n, N_CAT), np.int64)
    for r, line in enumerate(lines):
        fields = line.rstrip("\n").split("\t")
        if len(fields) != 1 + N_INT + N_CAT:
            raise ValueError(
                f"{path}:{first_line + r}: expected {1 + N_INT + N_CAT} tab-separated fields, "
                f"got {len(fields)}"
            )
        try:
            labels[r] = int(fields[0])
            for j, v in enumerate(fields[1 : 1 + N_INT]):
                if v:
                    ints[r, j] = int(v)
            for j, v in enumerate(fields[1 + N_INT :]):
                if v:
                    cats[r, j] = int(v, 16) + 1
        except ValueError as exc:
            raise ValueError(f"{path}:{first_line + r}: {exc}") from None
        if labels[r] not in (0.0, 1.0):
            raise ValueError(f"{path}:{first_line + r}: label must be 0 or 1, got {fields[0]}")
    return CriteoChunk(labels, ints, cats)


def stream_criteo(path: Path, chunk_rows: int) -> Iterator[CriteoChunk]:
    """Chunks of at most ``chunk_rows`` parsed rows of a Criteo-format file (.txt or .gz)."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    with _open(Path(path)) as fh:
        line_no = 1
        while lines := list(itertools.islice(fh, chunk_rows)):
            yield _parse(lines, Path(path), line_no)
            line_no += len(lines)


def bucketise_counts(ints: np.ndarray) -> np.ndarray:
    """Integer features as categorical ids: ⌊ln(v)²⌋ for v > 2, v itself for 0..2, one id for
    negatives and one for missing (the common Criteo discretisation); all ids >= 0."""
    out = np.empty_like(ints)
    missing, neg = ints == MISSING_INT, (ints < 0) & (ints != MISSING_INT)
    small = (ints >= 0) & (ints <= 2)
    big = ints > 2
    out[small] = ints[small] + 2
    out[big] = np.floor(np.log(ints[big].astype(np.float64)) ** 2).astype(np.int64) + 5
    out[missing], out[neg] = 0, 1
    return out
