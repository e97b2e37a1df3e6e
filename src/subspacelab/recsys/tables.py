"""Embedding tables of the recommendation group: per-field hashing, feature multiplexing and
Unified Embedding (Coleman et al., NeurIPS 2023, arXiv:2305.12102), on ``nn.EmbeddingBag``.

A scheme maps raw ids (rows, fields) to table rows with the stable salted hash of
:mod:`~subspacelab.recsys.hashing` (numpy, done once per split), and builds the torch module that
looks them up. Salts: field f, chunk j -> ``f * 1024 + j``, so multiplexed fields collide with
each other but are hashed independently. Every scheme counts its parameters the same way:
table rows x width.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from subspacelab.recsys.hashing import bucket

MAX_CHUNKS = 1024


def salt(field: int, chunk: int = 0) -> int:
    """The hash salt of a field's chunk."""
    if not 0 <= chunk < MAX_CHUNKS:
        raise ValueError(f"chunk must be in [0, {MAX_CHUNKS}), got {chunk}")
    return field * MAX_CHUNKS + chunk


@dataclass(frozen=True)
class Scheme:
    """How fields map to rows of one (conceptual) table of ``rows`` x ``chunk_dim`` parameters.

    Field f has ``chunks[f]`` chunks; chunk j of field f lives in the row block starting at
    ``offsets[f][j]`` of size ``sizes[f][j]``. The field's embedding is the concatenation of its
    chunks' rows (width chunks[f] x chunk_dim).
    """

    name: str
    chunk_dim: int
    chunks: tuple[int, ...]
    offsets: tuple[tuple[int, ...], ...]
    sizes: tuple[tuple[int, ...], ...]
    rows: int

    @property
    def n_params(self) -> int:
        """Embedding parameters: rows x chunk width."""
        return self.rows * self.chunk_dim

    @property
    def widths(self) -> tuple[int, ...]:
        """Embedding width of each field."""
        return tuple(c * self.chunk_dim for c in self.chunks)

    def lookup_rows(self, x: np.ndarray) -> np.ndarray:
        """Row ids (n, total chunks) of raw ids ``x`` (n, fields), fields' chunks in order."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != len(self.chunks):
            raise ValueError(f"{self.name}: expected ids of shape (n, {len(self.chunks)})")
        cols = [
            bucket(x[:, f], salt(f, j), self.sizes[f][j]) + self.offsets[f][j]
            for f in range(len(self.chunks))
            for j in range(self.chunks[f])
        ]
        return np.stack(cols, axis=1)

    def module(self, init_std: float = 0.01) -> EmbeddingTable:
        """A fresh torch table for this scheme."""
        return EmbeddingTable(self, init_std)


class EmbeddingTable(nn.Module):
    """Looks up row ids (n, total chunks) and returns (n, Σ widths), fields in order."""

    def __init__(self, scheme: Scheme, init_std: float) -> None:
        super().__init__()
        self.scheme = scheme
        self.bag = nn.EmbeddingBag(scheme.rows, scheme.chunk_dim, mode="sum")
        nn.init.normal_(self.bag.weight, std=init_std)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """Embeddings of the rows' chunks, concatenated per row."""
        n, c = rows.shape
        return self.bag(rows.reshape(n * c, 1)).reshape(n, c * self.scheme.chunk_dim)


def per_field(buckets: list[int], dim: int, name: str = "per-field") -> Scheme:
    """One hashed table per field, ``buckets[f]`` rows each (the baseline)."""
    if min(buckets) < 1:
        raise ValueError(f"every field needs >= 1 bucket, got {buckets}")
    offsets = np.concatenate([[0], np.cumsum(buckets)[:-1]]).tolist()
    return Scheme(
        name,
        dim,
        (1,) * len(buckets),
        tuple((int(o),) for o in offsets),
        tuple((int(b),) for b in buckets),
        int(sum(buckets)),
    )


def split_budget(rows: int, vocab: list[int], rule: str) -> list[int]:
    """A per-field allocation of ``rows``: ``equal`` shares, or ``vocab`` (∝ vocabulary size).

    Each field gets at least one row; the shares are floored, so the total is at most ``rows``.
    """
    if rule == "equal":
        share = np.full(len(vocab), rows / len(vocab))
    elif rule == "vocab":
        share = rows * np.asarray(vocab, dtype=np.float64) / float(sum(vocab))
    else:
        raise ValueError(f"allocation rule must be 'equal' or 'vocab', got {rule!r}")
    return [max(1, int(s)) for s in share]


def multiplexed(n_fields: int, rows: int, dim: int) -> Scheme:
    """One table of ``rows`` rows shared by every field, each field with its own salt."""
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    return Scheme(
        "multiplexed",
        dim,
        (1,) * n_fields,
        ((0,),) * n_fields,
        ((rows,),) * n_fields,
        rows,
    )


def unified(chunks: list[int], tables: int, rows_per_table: int, chunk_dim: int) -> Scheme:
    """Unified Embedding: field f gets ``chunks[f]`` chunks, assigned round-robin over ``tables``
    backend tables of ``rows_per_table`` rows (salt = (field, chunk))."""
    if tables < 1 or rows_per_table < 1 or min(chunks) < 1:
        raise ValueError("unified: need tables >= 1, rows_per_table >= 1 and chunks >= 1")
    offsets, sizes, k = [], [], 0
    for c in chunks:
        offsets.append(tuple(((k + j) % tables) * rows_per_table for j in range(c)))
        sizes.append((rows_per_table,) * c)
        k += c
    return Scheme(
        "unified", chunk_dim, tuple(chunks), tuple(offsets), tuple(sizes), tables * rows_per_table
    )
