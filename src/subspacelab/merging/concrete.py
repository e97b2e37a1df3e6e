"""Concrete subspace merging and AdaMerging (test-time entropy adaptation of merge weights).

* Concrete Task Arithmetic (CTA) and Concrete AdaMerging: Tang et al., "Concrete Subspace
  Learning based Interference Elimination for Multi-task Model Fusion", arXiv:2312.06173.
  A binary-Concrete mask ``m = σ((log u − log(1−u) + x)/T)`` with one logit per parameter is
  shared by every task vector; ``τ̃_t = τ_t ⊙ m / mean(m)`` per tensor (mean clamped ≥ 1e-3).
* Layer-wise AdaMerging: Yang et al., ICLR 2024, arXiv:2310.02575: ``θ = θ_0 + Σ_t λ_{t,l} τ_{t,l}``
  with λ learned by minimising prediction entropy on unlabelled inputs.

The objective is supplied by the caller: ``objective(params, step) -> (entropy, label_entropy)``,
the summed mean prediction entropy over tasks (differentiable) and the smallest entropy of the
predicted-label histogram over the step's batches (the collapse monitor's input).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from subspacelab.merging.algebra import StateDict

Objective = Callable[[StateDict, int], tuple[Tensor, float]]
MaskKind = Literal["continuous", "discrete"]
MIN_MASK_MEAN = 1e-3


def concrete_sample(logits: Tensor, temperature: float, generator: torch.Generator) -> Tensor:
    """One binary-Concrete (relaxed Bernoulli) sample, explicit logistic-noise form."""
    u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype).clamp(1e-6, 1 - 1e-6)
    return torch.sigmoid((torch.log(u) - torch.log1p(-u) + logits) / temperature)


def evaluation_mask(
    logits: StateDict, kind: MaskKind, generator: torch.Generator | None = None
) -> StateDict:
    """The mask used after training: ``continuous`` = the probabilities σ(x); ``discrete`` = a
    zero-temperature sample binarised at 0.5 (a Bernoulli(σ(x)) draw; needs ``generator``)."""
    if kind == "continuous":
        return {k: torch.sigmoid(v.detach()) for k, v in logits.items()}
    if generator is None:
        raise ValueError("a discrete evaluation mask needs a generator")
    return {
        k: (torch.rand(v.shape, generator=generator) < torch.sigmoid(v.detach())).to(v.dtype)
        for k, v in logits.items()
    }


def mask_task_vectors(tvs: Sequence[StateDict], mask: StateDict) -> list[StateDict]:
    """``τ_t ⊙ m / mean(m)`` per tensor, with mean(m) clamped at 1e-3."""
    scale = {k: m / m.mean().clamp(min=MIN_MASK_MEAN) for k, m in mask.items()}
    return [{k: v * scale[k] for k, v in tv.items()} for tv in tvs]


def mask_density(logits: StateDict) -> float:
    """Mean of σ(x) over every mask entry."""
    total = sum(float(torch.sigmoid(v).sum()) for v in logits.values())
    return total / sum(v.numel() for v in logits.values())


def merge_layerwise(base: StateDict, tvs: Sequence[StateDict], lambdas: Tensor) -> StateDict:
    """``θ_0 + Σ_t λ_{t,l} τ_{t,l}`` with one λ per task (rows) and tensor (columns, keys in
    ``base`` order)."""
    keys = list(base)
    if lambdas.shape != (len(tvs), len(keys)):
        raise ValueError(f"lambdas must be {(len(tvs), len(keys))}, got {tuple(lambdas.shape)}")
    return {
        k: base[k] + sum(lambdas[t, j] * tv[k] for t, tv in enumerate(tvs))
        for j, k in enumerate(keys)
    }


@dataclass
class TTAResult:
    """What a test-time adaptation run ends with."""

    steps_run: int
    collapsed: bool
    losses: list[float] = field(default_factory=list)
    logits: StateDict = field(default_factory=dict)
    lambdas: Tensor | None = None


def _collapsed(label_entropy: float, collapse_below: float) -> bool:
    return label_entropy < collapse_below


def concrete_task_arithmetic(
    base: StateDict,
    tvs: Sequence[StateDict],
    lam: float,
    objective: Objective,
    *,
    steps: int,
    lr: float,
    temperature: float,
    generator: torch.Generator,
    collapse_below: float,
) -> TTAResult:
    """Learn the mask logits of CTA, ``θ(m) = θ_0 + λ Σ_t τ̃_t``, by entropy minimisation.

    Stops early (``collapsed``) when the predicted-label entropy falls below ``collapse_below``.
    """
    logits = {k: torch.zeros_like(v, requires_grad=True) for k, v in base.items()}
    opt = torch.optim.Adam(list(logits.values()), lr=lr)
    summed = {k: sum(tv[k] for tv in tvs) for k in base}
    result = TTAResult(steps_run=0, collapsed=False, logits=logits)
    for step in range(steps):
        mask = {k: concrete_sample(x, temperature, generator) for k, x in logits.items()}
        (masked,) = mask_task_vectors([summed], mask)
        params = {k: base[k] + lam * masked[k] for k in base}
        loss, label_h = objective(params, step)
        result.losses.append(float(loss.detach()))
        if _collapsed(label_h, collapse_below):
            result.collapsed = True
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
        result.steps_run = step + 1
    result.logits = {k: v.detach() for k, v in logits.items()}
    return result


def layerwise_adamerging(
    base: StateDict,
    tvs: Sequence[StateDict],
    objective: Objective,
    *,
    steps: int,
    lr: float,
    init: float,
    collapse_below: float,
) -> TTAResult:
    """Layer-wise AdaMerging: learn λ_{t,l} (initialised at ``init``) with Adam on the entropy."""
    lambdas = torch.full((len(tvs), len(base)), init, requires_grad=True)
    opt = torch.optim.Adam([lambdas], lr=lr)
    result = TTAResult(steps_run=0, collapsed=False)
    for step in range(steps):
        loss, label_h = objective(merge_layerwise(base, tvs, lambdas), step)
        result.losses.append(float(loss.detach()))
        if _collapsed(label_h, collapse_below):
            result.collapsed = True
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
        result.steps_run = step + 1
    result.lambdas = lambdas.detach()
    return result


def concrete_adamerging_mask(
    base: StateDict,
    tvs: Sequence[StateDict],
    objective: Objective,
    *,
    steps: int,
    lr: float,
    inner_lr: float,
    init: float,
    temperature: float,
    generator: torch.Generator,
    collapse_below: float,
) -> TTAResult:
    """The bi-level, first-order meta-learning of Concrete AdaMerging's mask logits.

    Each outer step resets λ to ``init``, takes one inner Adam step (lr ``inner_lr``, Adam state
    kept across outer steps as the optimiser is created once) on λ with the mask held fixed,
    then one Adam step (lr ``lr``) on the mask logits at the adapted λ. Afterwards the mask is
    frozen and :func:`layerwise_adamerging` runs on the masked task vectors.
    """
    logits = {k: torch.zeros_like(v, requires_grad=True) for k, v in base.items()}
    lambdas = torch.full((len(tvs), len(base)), init, requires_grad=True)
    inner = torch.optim.Adam([lambdas], lr=inner_lr)
    outer = torch.optim.Adam(list(logits.values()), lr=lr)
    result = TTAResult(steps_run=0, collapsed=False)
    for step in range(steps):
        with torch.no_grad():
            lambdas.fill_(init)
        mask = {k: concrete_sample(x, temperature, generator) for k, x in logits.items()}
        fixed = mask_task_vectors(tvs, {k: m.detach() for k, m in mask.items()})
        loss, _ = objective(merge_layerwise(base, fixed, lambdas), step)
        inner.zero_grad()
        loss.backward()
        inner.step()
        meta_loss, label_h = objective(
            merge_layerwise(base, mask_task_vectors(tvs, mask), lambdas.detach()), step
        )
        result.losses.append(float(meta_loss.detach()))
        if _collapsed(label_h, collapse_below):
            result.collapsed = True
            break
        outer.zero_grad()
        meta_loss.backward()
        outer.step()
        result.steps_run = step + 1
    result.logits = {k: v.detach() for k, v in logits.items()}
    return result


def prediction_entropy(logits: Tensor) -> Tensor:
    """Mean Shannon entropy (nats) of the softmax predictions of a batch."""
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(dim=-1).mean()


def label_entropy(logits: Tensor) -> float:
    """Entropy (nats) of the histogram of a batch's predicted labels."""
    counts = torch.bincount(logits.argmax(dim=-1), minlength=logits.shape[-1]).double()
    p = counts / counts.sum()
    p = p[p > 0]
    return float(-(p * p.log()).sum())
