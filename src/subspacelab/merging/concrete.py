"""Concrete subspace merging and AdaMerging (test-time entropy adaptation of merge weights).

* Concrete Task Arithmetic (CTA) and Concrete AdaMerging: Tang et al., "Concrete Subspace
  Learning based Interference Elimination for Multi-task Model Fusion", arXiv:2312.06173.
  A binary-Concrete mask ``m = σ((log u − log(1−u) + x)/T)`` with one logit per parameter is
  shared by every task vector; ``τ̃_t = τ_t ⊙ m / mean(m)`` per tensor (mean clamped ≥ 1e-3).
* Layer-wise AdaMerging: Yang et al., ICLR 2024, arXiv:2310.02575: ``θ = θ_0 + Σ_t λ_{t,l} τ_{t,l}``
  with λ ∈ [0, 1] (clamped, as in AdaMerging's and the Concrete paper's code) learned by
  minimising prediction entropy on unlabelled inputs.

All three learn by gradient descent, so they train through Lightning
(:class:`EntropyAdaptation`, one optimiser step per batch of a
:func:`~subspacelab.nets.training.full_batch_loader`; the objective draws its own batches).

The objective is supplied by the caller: ``objective(params, step) -> (entropy, label_entropy)``,
the summed mean prediction entropy over tasks (differentiable) and the smallest entropy of the
predicted-label histogram over the step's batches (the collapse monitor's input).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.core.optimizer import LightningOptimizer
from torch import Tensor, nn

from subspacelab.merging.algebra import StateDict
from subspacelab.nets.training import TrainEnv, fit, full_batch_loader

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


def shuffled_mask(mask: StateDict, generator: torch.Generator) -> StateDict:
    """A random mask of the same density: each tensor's entries of ``mask`` permuted at random.

    Every tensor keeps its density (and its whole distribution of values) but loses where they
    sit: the control that tells a learned mask from one that only thins the task vectors.
    """
    out = {}
    for k, m in mask.items():
        flat = m.detach().reshape(-1)
        out[k] = flat[torch.randperm(flat.numel(), generator=generator)].reshape(m.shape)
    return out


def logit_spread(logits: StateDict) -> tuple[float, float]:
    """(standard deviation, largest |x|) of the mask logits over every entry: how far training
    moved them from their common start at 0 (at 0 the mask is uniform, σ(x) = ½)."""
    flat = torch.cat([v.detach().reshape(-1) for v in logits.values()]).double()
    return float(flat.std(unbiased=False)), float(flat.abs().max())


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
    """What a test-time adaptation run ends with. ``lambdas`` are the merge coefficients as
    used in the merge (clamped to [0, 1])."""

    steps_run: int
    collapsed: bool
    losses: list[float] = field(default_factory=list)
    logits: StateDict = field(default_factory=dict)
    lambdas: Tensor | None = None


class ConcreteMask(nn.Module):
    """Mask logits, one per parameter tensor of ``base`` (initialised at 0, i.e. p = ½), with
    the Concrete relaxation's temperature and sampling generator (arXiv 2312.06173)."""

    def __init__(self, base: StateDict, temperature: float, generator: torch.Generator) -> None:
        super().__init__()
        self.keys = list(base)
        self.logits = nn.ParameterList([nn.Parameter(torch.zeros_like(base[k])) for k in base])
        self.temperature, self.generator = temperature, generator

    def sample(self) -> StateDict:
        """One relaxed mask sample per parameter tensor (differentiable in the logits)."""
        return {
            k: concrete_sample(x, self.temperature, self.generator)
            for k, x in zip(self.keys, self.logits, strict=True)
        }

    def logits_dict(self) -> StateDict:
        """A detached copy of the logits by parameter name."""
        return {k: x.detach().clone() for k, x in zip(self.keys, self.logits, strict=True)}


class EntropyAdaptation(L.LightningModule):
    """Test-time adaptation by entropy minimisation, one optimiser step per Lightning batch.

    Subclasses define :meth:`step_loss` (the loss whose gradient the main optimiser follows, and
    the batch's predicted-label entropy; a bi-level subclass takes its inner step there) and
    :meth:`configure_optimizers` (the main optimiser first). The bookkeeping is here once: the
    losses, the collapse monitor (when the label entropy falls below ``collapse_below`` the run
    stops before stepping and is flagged ``collapsed``) and the count of steps taken.
    Optimisation is manual so that a bi-level loop can step two optimisers per batch.
    """

    def __init__(self, objective: Objective, collapse_below: float) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.objective = objective
        self.collapse_below = collapse_below
        self.losses: list[float] = []
        self.steps_run = 0
        self.collapsed = False

    def step_loss(self, step: int) -> tuple[Tensor, float]:
        """The loss of step ``step`` and its batch's predicted-label entropy."""
        raise NotImplementedError

    def _optimizers(self) -> list[LightningOptimizer]:
        opts = self.optimizers()
        return list(opts) if isinstance(opts, list) else [opts]  # type: ignore[list-item]

    def training_step(self, batch: Any, batch_idx: int) -> None:
        """One adaptation step, unless the monitor sees a collapse (then stop, unstepped)."""
        loss, label_h = self.step_loss(batch_idx)
        self.losses.append(float(loss.detach()))
        self.log("entropy", loss.detach(), on_step=False, on_epoch=True, batch_size=1)
        if label_h < self.collapse_below:
            self.collapsed = True
            self.trainer.should_stop = True
            return
        main = self._optimizers()[0]
        main.zero_grad()
        self.manual_backward(loss)
        main.step()
        self.steps_run += 1


def _adapt(env: TrainEnv, module: EntropyAdaptation, steps: int, label: str) -> None:
    """Run ``module`` for ``steps`` steps (or until it collapses) in one Lightning run."""
    fit(env, module, full_batch_loader(steps=steps), epochs=1, label=label)


class ConcreteTaskArithmetic(EntropyAdaptation):
    """CTA: mask logits (init 0) of ``θ(m) = θ_0 + λ Σ_t τ̃_t`` under Adam."""

    def __init__(
        self,
        base: StateDict,
        tvs: Sequence[StateDict],
        lam: float,
        objective: Objective,
        *,
        lr: float,
        temperature: float,
        generator: torch.Generator,
        collapse_below: float,
    ) -> None:
        super().__init__(objective, collapse_below)
        self.base, self.lam, self.lr = base, lam, lr
        self.summed = {k: sum(tv[k] for tv in tvs) for k in base}
        self.mask = ConcreteMask(base, temperature, generator)

    def step_loss(self, step: int) -> tuple[Tensor, float]:
        """Entropy of the merge under one Concrete mask sample."""
        mask = self.mask.sample()
        (masked,) = mask_task_vectors([self.summed], mask)
        return self.objective({k: self.base[k] + self.lam * masked[k] for k in self.base}, step)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam on the mask logits."""
        return torch.optim.Adam(self.mask.parameters(), lr=self.lr)


class LayerwiseAdaMerging(EntropyAdaptation):
    """Layer-wise AdaMerging: ``θ_0 + Σ_t clamp(λ_{t,l}, 0, 1) τ_{t,l}``, λ (init ``init``)
    under Adam; the [0, 1] clamp is AdaMerging's and the Concrete paper code's."""

    def __init__(
        self,
        base: StateDict,
        tvs: Sequence[StateDict],
        objective: Objective,
        *,
        lr: float,
        init: float,
        collapse_below: float,
    ) -> None:
        super().__init__(objective, collapse_below)
        self.base, self.tvs, self.lr, self.init = base, list(tvs), lr, init
        self.lambdas = nn.Parameter(torch.full((len(tvs), len(base)), init))

    def coefficients(self) -> Tensor:
        """The merge coefficients, λ clamped to [0, 1]."""
        return self.lambdas.clamp(0.0, 1.0)

    def step_loss(self, step: int) -> tuple[Tensor, float]:
        """Entropy of the layer-wise merge."""
        return self.objective(merge_layerwise(self.base, self.tvs, self.coefficients()), step)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam on λ."""
        return torch.optim.Adam([self.lambdas], lr=self.lr)


class ConcreteAdaMergingMask(LayerwiseAdaMerging):
    """The bi-level, first-order meta-learning of Concrete AdaMerging's shared mask logits.

    Each step resets λ to ``init``, draws one mask, takes one inner Adam step (lr ``inner_lr``)
    on λ with the mask held fixed — the inner optimiser is created once, so its Adam state
    persists across steps as in the paper's code — then returns the entropy at the adapted λ
    (held fixed) under the same mask sample, which the outer Adam (lr ``lr``) follows on the
    logits: the meta-gradient ignores how λ depends on the mask.
    """

    def __init__(
        self,
        base: StateDict,
        tvs: Sequence[StateDict],
        objective: Objective,
        *,
        lr: float,
        inner_lr: float,
        init: float,
        temperature: float,
        generator: torch.Generator,
        collapse_below: float,
    ) -> None:
        super().__init__(base, tvs, objective, lr=lr, init=init, collapse_below=collapse_below)
        self.inner_lr = inner_lr
        self.mask = ConcreteMask(base, temperature, generator)

    def step_loss(self, step: int) -> tuple[Tensor, float]:
        """The inner step on λ, then the meta-loss at the adapted λ."""
        with torch.no_grad():
            self.lambdas.fill_(self.init)
        mask = self.mask.sample()
        fixed = mask_task_vectors(self.tvs, {k: m.detach() for k, m in mask.items()})
        inner_loss, _ = self.objective(merge_layerwise(self.base, fixed, self.coefficients()), step)
        inner = self._optimizers()[1]
        inner.zero_grad()
        self.manual_backward(inner_loss)
        inner.step()
        adapted = self.coefficients().detach()
        return self.objective(
            merge_layerwise(self.base, mask_task_vectors(self.tvs, mask), adapted), step
        )

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:  # type: ignore[override]
        """The outer Adam on the mask logits, then the inner Adam on λ."""
        return [
            torch.optim.Adam(self.mask.parameters(), lr=self.lr),
            torch.optim.Adam([self.lambdas], lr=self.inner_lr),
        ]


def concrete_task_arithmetic(
    env: TrainEnv,
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
    """Learn the mask logits of CTA, ``θ(m) = θ_0 + λ Σ_t τ̃_t``, by entropy minimisation (at
    most ``steps`` steps; stops early, ``collapsed``, when the label entropy falls below
    ``collapse_below``)."""
    module = ConcreteTaskArithmetic(
        base,
        tvs,
        lam,
        objective,
        lr=lr,
        temperature=temperature,
        generator=generator,
        collapse_below=collapse_below,
    )
    _adapt(env, module, steps, "concrete task arithmetic")
    return TTAResult(
        module.steps_run,
        module.collapsed,
        module.losses,
        logits=module.mask.logits_dict(),
    )


def layerwise_adamerging(
    env: TrainEnv,
    base: StateDict,
    tvs: Sequence[StateDict],
    objective: Objective,
    *,
    steps: int,
    lr: float,
    init: float,
    collapse_below: float,
) -> TTAResult:
    """Layer-wise AdaMerging: learn λ_{t,l} ∈ [0, 1] (initialised at ``init``) with Adam on the
    entropy; ``lambdas`` of the result are the clamped coefficients."""
    module = LayerwiseAdaMerging(
        base, tvs, objective, lr=lr, init=init, collapse_below=collapse_below
    )
    _adapt(env, module, steps, "layer-wise AdaMerging")
    return TTAResult(
        module.steps_run, module.collapsed, module.losses, lambdas=module.coefficients().detach()
    )


def concrete_adamerging_mask(
    env: TrainEnv,
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
    """Meta-learn Concrete AdaMerging's mask logits (see :class:`ConcreteAdaMergingMask`).
    Afterwards the caller freezes the mask and runs :func:`layerwise_adamerging` on the masked
    task vectors."""
    module = ConcreteAdaMergingMask(
        base,
        tvs,
        objective,
        lr=lr,
        inner_lr=inner_lr,
        init=init,
        temperature=temperature,
        generator=generator,
        collapse_below=collapse_below,
    )
    _adapt(env, module, steps, "Concrete AdaMerging mask")
    return TTAResult(
        module.steps_run,
        module.collapsed,
        module.losses,
        logits=module.mask.logits_dict(),
    )


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
