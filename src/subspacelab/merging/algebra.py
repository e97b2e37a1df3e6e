"""State-dict algebra: element-wise arithmetic over dicts of tensors with identical keys.

Every function is pure (inputs are never modified) and checks that keys and shapes agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

StateDict = dict[str, Tensor]


def _check_same(a: StateDict, b: StateDict) -> None:
    if a.keys() != b.keys():
        raise KeyError(f"state dicts differ in keys: {sorted(set(a) ^ set(b))}")
    for k in a:
        if a[k].shape != b[k].shape:
            raise ValueError(f"{k}: shapes differ, {tuple(a[k].shape)} vs {tuple(b[k].shape)}")


def add(a: StateDict, b: StateDict) -> StateDict:
    """``a + b`` key by key."""
    _check_same(a, b)
    return {k: a[k] + b[k] for k in a}


def sub(a: StateDict, b: StateDict) -> StateDict:
    """``a − b`` key by key."""
    _check_same(a, b)
    return {k: a[k] - b[k] for k in a}


def scale(a: StateDict, c: float) -> StateDict:
    """``c · a`` key by key."""
    return {k: v * c for k, v in a.items()}


def lincomb(sds: Sequence[StateDict], coeffs: Sequence[float]) -> StateDict:
    """``Σ_i c_i · sd_i``; needs at least one state dict and one coefficient per dict."""
    if not sds or len(sds) != len(coeffs):
        raise ValueError(f"need matching non-empty lists, got {len(sds)} and {len(coeffs)}")
    for sd in sds[1:]:
        _check_same(sds[0], sd)
    return {k: sum(c * sd[k] for sd, c in zip(sds, coeffs, strict=True)) for k in sds[0]}


def task_vectors(base: StateDict, finetuned: Sequence[StateDict]) -> list[StateDict]:
    """Task vectors ``τ_t = θ_t − θ_0``."""
    return [sub(ft, base) for ft in finetuned]


def apply_task_vector(base: StateDict, tv: StateDict, alpha: float) -> StateDict:
    """``θ_0 + α · τ``."""
    _check_same(base, tv)
    return {k: base[k] + alpha * tv[k] for k in base}


def flatten(sd: StateDict) -> tuple[Tensor, list[tuple[str, torch.Size]]]:
    """One vector of all entries (keys in sorted order) and the spec to undo it."""
    keys = sorted(sd)
    spec = [(k, sd[k].shape) for k in keys]
    if not keys:
        return torch.zeros(0), spec
    return torch.cat([sd[k].reshape(-1) for k in keys]), spec


def unflatten(vec: Tensor, spec: Sequence[tuple[str, torch.Size]]) -> StateDict:
    """Inverse of :func:`flatten`."""
    total = sum(int(torch.Size(s).numel()) for _, s in spec)
    if vec.numel() != total:
        raise ValueError(f"vector has {vec.numel()} entries, spec needs {total}")
    out, i = {}, 0
    for k, shape in spec:
        n = int(torch.Size(shape).numel())
        out[k] = vec[i : i + n].reshape(shape).clone()
        i += n
    return out
