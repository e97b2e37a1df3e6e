"""Training-free merges of T task vectors into one, as pure functions over state dicts.

Each merge returns a merged *task vector*; the merged model is ``θ_0 + α · τ_merged``
(:func:`subspacelab.merging.algebra.apply_task_vector`) with α chosen on validation data.

* simple average of models; Task Arithmetic (Ilharco et al., arXiv:2212.04089): ``Σ_t τ_t``.
* TIES (Yadav et al., arXiv:2306.01708): trim each τ_t to its top-k% magnitudes, elect a sign per
  entry from the sum, average the entries that agree with it (disjoint mean).
* TSV-M (Gargiulo et al., arXiv:2412.00081): per 2-D weight, the top-r singular triplets of each
  τ_t, stacked and decorrelated by the orthogonal polar factor of the stacked U and V.
* DC-Merge (Zhang et al., arXiv:2603.06242): TSV-M's shared basis, with each task's truncated
  spectrum energy-smoothed, projected into the shared space, filtered to its top entries,
  sign-elected (disjoint mean) and restricted to the task-own diagonal blocks.

Non-matrix parameters (biases, norms) are averaged in TSV-M and DC-Merge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from subspacelab.geometry import principal_angles
from subspacelab.merging.algebra import StateDict, _check_same, flatten, lincomb, unflatten

Smoothing = Literal["none", "avg", "linear"]


def _check_tvs(tvs: Sequence[StateDict]) -> None:
    if not tvs:
        raise ValueError("need at least one task vector")
    for tv in tvs[1:]:
        _check_same(tvs[0], tv)


def simple_average(models: Sequence[StateDict]) -> StateDict:
    """The mean of the models' parameters."""
    _check_tvs(models)
    return lincomb(models, [1.0 / len(models)] * len(models))


def task_arithmetic(tvs: Sequence[StateDict]) -> StateDict:
    """Task Arithmetic's merged task vector ``Σ_t τ_t`` (scaled by λ when applied)."""
    _check_tvs(tvs)
    return lincomb(tvs, [1.0] * len(tvs))


def _disjoint_mean(stack: Tensor) -> Tensor:
    """Sign election over dim 0 and the mean of the entries that agree with the elected sign.

    The elected sign is ``sign(Σ_t x_t)``; entries whose sum is 0 become 0; the mean divides by
    the number of agreeing (non-zero) entries, clamped at 1.
    """
    sign = torch.sign(stack.sum(dim=0))
    agree = (torch.sign(stack) == sign) & (stack != 0)
    kept = torch.where(agree, stack, torch.zeros_like(stack))
    return kept.sum(dim=0) / agree.sum(dim=0).clamp(min=1)


def ties_merge(tvs: Sequence[StateDict], density: float = 0.2) -> StateDict:
    """TIES: keep each task vector's top ``density`` fraction of entries (over all its
    parameters), elect signs, disjoint mean."""
    _check_tvs(tvs)
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density}")
    flats = []
    for tv in tvs:
        vec, spec = flatten(tv)
        k = max(1, math.ceil(density * vec.numel()))
        thresh = vec.abs().kthvalue(vec.numel() - k + 1).values
        flats.append(torch.where(vec.abs() >= thresh, vec, torch.zeros_like(vec)))
    return unflatten(_disjoint_mean(torch.stack(flats)), spec)


def polar_factor(a: Tensor) -> Tensor:
    """The orthogonal polar factor ``P Qᵀ`` of ``a = P S Qᵀ`` (nearest matrix with orthonormal
    columns), computed in float64 and returned in ``a``'s dtype."""
    p, _, qt = torch.linalg.svd(a.double(), full_matrices=False)
    return (p @ qt).to(a.dtype)


def _rank(shape: torch.Size, n_tasks: int, r: int | None) -> int:
    cap = min(shape) // n_tasks
    if cap < 1:
        raise ValueError(f"a {tuple(shape)} matrix cannot hold {n_tasks} tasks' subspaces")
    return cap if r is None else min(r, cap)


def _top_svd(delta: Tensor, r: int) -> tuple[Tensor, Tensor, Tensor]:
    u, s, vt = torch.linalg.svd(delta.double(), full_matrices=False)
    return u[:, :r], s[:r], vt[:r].T


def tsv_merge(tvs: Sequence[StateDict], r: int | None = None) -> StateDict:
    """TSV-M: per 2-D tensor keep each task's top ``r`` (default ⌊min(m,n)/T⌋) singular
    triplets, replace the stacked U and V by their polar factors; average the rest."""
    _check_tvs(tvs)
    out = {}
    for key, first in tvs[0].items():
        if first.ndim != 2:
            out[key] = sum(tv[key] for tv in tvs) / len(tvs)
            continue
        rk = _rank(first.shape, len(tvs), r)
        us, ss, vs = zip(*(_top_svd(tv[key], rk) for tv in tvs), strict=True)
        u_hat, v_hat = polar_factor(torch.cat(us, 1)), polar_factor(torch.cat(vs, 1))
        out[key] = (u_hat @ torch.diag(torch.cat(ss)) @ v_hat.T).to(first.dtype)
    return out


def smooth_spectrum(s: Tensor, mode: Smoothing, rho: float = 5.0) -> Tensor:
    """DC-Merge's energy smoothing of a descending spectrum, keeping its total ``E = Σ σ_j``.

    ``avg``: every σ_j ← E/r. ``linear``: σ ∝ linspace(ρ', 1) with ρ' = min(ρ, σ_1/σ_r).
    """
    if mode == "none":
        return s
    total = s.sum()
    if mode == "avg":
        return torch.full_like(s, float(total) / s.numel())
    ratio = float(s[0] / s[-1]) if s[-1] > 0 else math.inf
    w = torch.linspace(min(rho, ratio), 1.0, s.numel(), dtype=s.dtype)
    return w / w.sum() * total


def dc_keep_count(n_tasks: int, r: int, fraction: float | None) -> int:
    """Entries kept per projected task matrix: ``r`` when ``fraction`` is None (keep = r),
    else ``max(1, ⌊fraction · (T r)²⌋)`` (the paper's literal top-0.1%)."""
    if fraction is None:
        return r
    return max(1, math.floor(fraction * (n_tasks * r) ** 2))


@dataclass(frozen=True)
class DCStats:
    """Per 2-D tensor: rank r used, entries kept per task, and how many of those lay on task
    t's own diagonal (mean over tasks)."""

    rank: dict[str, int]
    kept: dict[str, int]
    own_diagonal_kept: dict[str, float]


def dc_merge(
    tvs: Sequence[StateDict],
    r: int | None = None,
    smoothing: Smoothing = "avg",
    keep_fraction: float | None = None,
    rho: float = 5.0,
) -> tuple[StateDict, DCStats]:
    """DC-Merge's merged task vector and per-layer statistics (steps 1-8 of the method)."""
    _check_tvs(tvs)
    n_tasks = len(tvs)
    out: StateDict = {}
    ranks, kept, own = {}, {}, {}
    for key, first in tvs[0].items():
        if first.ndim != 2:
            out[key] = sum(tv[key] for tv in tvs) / n_tasks
            continue
        rk = _rank(first.shape, n_tasks, r)
        tri = [_top_svd(tv[key], rk) for tv in tvs]
        smoothed = [u @ torch.diag(smooth_spectrum(s, smoothing, rho)) @ v.T for u, s, v in tri]
        u_hat = polar_factor(torch.cat([u for u, _, _ in tri], 1))
        v_hat = polar_factor(torch.cat([v for _, _, v in tri], 1))
        k = min(dc_keep_count(n_tasks, rk, keep_fraction), (n_tasks * rk) ** 2)
        filtered, own_hits = [], []
        for t, d in enumerate(smoothed):
            m = u_hat.T @ d @ v_hat
            idx = m.abs().reshape(-1).topk(k).indices
            mask = torch.zeros(m.numel(), dtype=torch.bool)
            mask[idx] = True
            mask = mask.reshape(m.shape)
            filtered.append(torch.where(mask, m, torch.zeros_like(m)))
            diag = torch.arange(t * rk, (t + 1) * rk)
            own_hits.append(float(mask[diag, diag].sum()))
        agg = _disjoint_mean(torch.stack(filtered))
        block = torch.block_diag(*[torch.ones(rk, rk, dtype=agg.dtype)] * n_tasks)
        out[key] = (u_hat @ (agg * block) @ v_hat.T).to(first.dtype)
        ranks[key], kept[key], own[key] = rk, k, sum(own_hits) / n_tasks
    return out, DCStats(ranks, kept, own)


def directional_consistency(
    merged: StateDict, tvs: Sequence[StateDict], r: int | None = None
) -> dict[str, tuple[float, float]]:
    """Our directional-consistency diagnostic (not the paper's), per 2-D tensor, mean over tasks:

    (i) retained energy ``‖U_tᵀ Δ_merged V_t‖_F / ‖Δ̃_t‖_F`` with ``Δ̃_t`` the top-r truncation
    of ``Δ_t``; (ii) mean cosine of the principal angles between the top-r left singular
    subspaces of ``Δ_merged`` and ``Δ_t``.
    """
    _check_tvs(tvs)
    out = {}
    for key, first in tvs[0].items():
        if first.ndim != 2:
            continue
        rk = _rank(first.shape, len(tvs), r)
        um, _, _ = _top_svd(merged[key], rk)
        energy, cosine = [], []
        for tv in tvs:
            u, s, v = _top_svd(tv[key], rk)
            denom = float(s.norm())
            energy.append(float((u.T @ merged[key].double() @ v).norm()) / max(denom, 1e-30))
            cosine.append(float(torch.cos(principal_angles(um, u)).mean()))
        out[key] = (sum(energy) / len(energy), sum(cosine) / len(cosine))
    return out
