"""OptFS's gated DeepFM and its measurements (Lyu et al., WWW 2023, arXiv:2301.10909).

Every feature value i (a (field, value) pair; values seen fewer than ``min_count`` times in
training share their field's OOV id) has an embedding e_i, a first-order weight w_i and a gate
parameter m_i. The relaxed gate g_i = σ(τ m_i) / σ(m₀) is 1 at the start (m_i = m₀, τ = 1);
the model uses g_i e_i and g_i w_i everywhere, so a closed gate removes the value and all of its
interactions. After the search the gate is hard: 1[m_i > 0] / σ(m₀) (the official code keeps
the 1/σ(m₀) factor). ``gate="field"`` is the field-level baseline: one gate per field, the same
continuation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Vocabulary:
    """Global feature ids: field f's value v -> offsets[f] + v, rare values -> offsets[f] +
    vocab[f] (the field's OOV id)."""

    vocab: tuple[int, ...]
    offsets: tuple[int, ...]
    frequent: tuple[np.ndarray, ...]

    @property
    def n_features(self) -> int:
        """All ids, OOV included."""
        return self.offsets[-1] + self.vocab[-1] + 1

    def encode(self, x: np.ndarray) -> np.ndarray:
        """(rows, fields) raw values -> global ids."""
        cols = []
        for f, (v, off) in enumerate(zip(self.vocab, self.offsets, strict=True)):
            local = np.where(self.frequent[f][x[:, f]], x[:, f], v)
            cols.append(local + off)
        return np.stack(cols, axis=1).astype(np.int64)

    def field_of(self) -> np.ndarray:
        """The field of every global id."""
        return np.repeat(np.arange(len(self.vocab)), np.asarray(self.vocab) + 1)


def build_vocabulary(x_train: np.ndarray, vocab: list[int], min_count: int) -> Vocabulary:
    """Ids from the training rows: values seen at least ``min_count`` times keep their own id."""
    frequent = tuple(
        np.bincount(x_train[:, f], minlength=v) >= min_count for f, v in enumerate(vocab)
    )
    offsets = np.concatenate([[0], np.cumsum(np.asarray(vocab) + 1)[:-1]]).astype(int)
    return Vocabulary(tuple(vocab), tuple(int(o) for o in offsets), frequent)


class GatedDeepFM(nn.Module):
    """DeepFM (first order + FM + MLP over the gated embeddings) with value or field gates."""

    def __init__(
        self,
        n_features: int,
        n_fields: int,
        dim: int,
        hidden: list[int],
        gate: str,
        gate_init: float,
        field_of: np.ndarray,
    ) -> None:
        super().__init__()
        if gate not in ("none", "value", "field"):
            raise ValueError(f"gate must be none, value or field, got {gate!r}")
        self.gate, self.gate_init = gate, gate_init
        self.emb = nn.Embedding(n_features, dim)
        self.lin = nn.Embedding(n_features, 1)
        nn.init.xavier_uniform_(self.emb.weight)
        nn.init.zeros_(self.lin.weight)
        self.bias = nn.Parameter(torch.zeros(1))
        layers: list[nn.Module] = []
        width = dim * n_fields
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)
        n_gates = {"none": 0, "value": n_features, "field": n_fields}[gate]
        self.m = nn.Parameter(torch.full((n_gates,), float(gate_init)))
        self.register_buffer("field_of", torch.from_numpy(np.asarray(field_of, dtype=np.int64)))
        self.register_buffer("hard", torch.zeros(0))  # the fixed mask of the retrain stage
        self.tau = 1.0

    def gates(self) -> Tensor:
        """Per-feature-id gate values (relaxed at the current τ, or the hard mask)."""
        scale = 1.0 / _sigmoid(self.gate_init)
        if self.hard.numel():
            return self.hard * scale
        if self.gate == "none":
            return torch.ones(self.emb.num_embeddings, device=self.emb.weight.device)
        g = torch.sigmoid(self.tau * self.m) * scale
        return g[self.field_of] if self.gate == "field" else g

    def kept(self) -> Tensor:
        """Which feature ids survive: m > 0 (per id; a field gate applies to all its ids)."""
        if self.gate == "none":
            return torch.ones(self.emb.num_embeddings, dtype=torch.bool)
        keep = self.m.detach() > 0
        return keep[self.field_of] if self.gate == "field" else keep

    def harden(self) -> None:
        """Fix the gates to 1[m > 0] for retraining."""
        self.hard = self.kept().to(self.emb.weight.dtype)

    def l0_surrogate(self) -> Tensor:
        """Σ σ(τ m): the smooth count of open gates at the current τ."""
        return torch.sigmoid(self.tau * self.m).sum()

    def forward(self, ids: Tensor) -> Tensor:
        """Click logits (n,) of global ids (n, fields)."""
        g = self.gates()[ids]  # (n, F)
        e = self.emb(ids) * g.unsqueeze(-1)
        first = (self.lin(ids).squeeze(-1) * g).sum(dim=1)
        fm = 0.5 * (e.sum(dim=1).pow(2) - e.pow(2).sum(dim=1)).sum(dim=1)
        return self.bias + first + fm + self.mlp(e.flatten(1)).squeeze(1)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def tau_at(epoch: int, epochs: int, tau_final: float) -> float:
    """The continuation schedule τ_e = τ_final^(e / (E - 1)), from 1 to τ_final."""
    return float(tau_final ** (epoch / (epochs - 1)))


def selectivity(
    kept: np.ndarray, ids: np.ndarray, raw: np.ndarray, signal_values: tuple[np.ndarray, ...]
) -> tuple[float, float]:
    """(kept share of signal occurrences, kept share of noise occurrences) over rows ``ids``.

    An occurrence is one (row, field) cell; it is signal when the generator gave its value a
    non-zero weight, noise otherwise (noise fields, and zero-weight values of signal fields).
    """
    is_signal = np.stack([signal_values[f][raw[:, f]] for f in range(raw.shape[1])], axis=1)
    k = kept[ids]
    return float(k[is_signal].mean()), float(k[~is_signal].mean())
