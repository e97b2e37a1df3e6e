"""vsae's worlds (Baker & Li, arXiv 2509.22994, §6 of the spec): toy-models superposition
streams generated on the fly, templated sentences for MiniLM token states, and the arms.

The SAEs themselves (TopK + AuxK, fixed- and learned-variance vSAE) are
:mod:`subspacelab.representation.sae`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from subspacelab.representation.sae import SAEArm

TRAIN, EVAL = 0, 1  # the two purposes a stream serves, each its own random numbers


@dataclass(frozen=True)
class Arm:
    """A named SAE arm."""

    name: str
    sae: SAEArm


def _c(c_kl: float) -> str:
    return f"c{c_kl:g}".replace(".", "p")


def make_arms(
    fixed: Sequence[float],
    learned: Sequence[float],
    headline: float,
    aux_alpha: float,
    sweep: bool,
) -> list[Arm]:
    """The arms of a setting. Always: ``topk_auxk`` (TopK + AuxK), ``vsae`` (the fixed-variance
    vSAE at the paper's ``headline`` c_KL, no AuxK: the reported run) and ``vsae_auxk`` (the
    same with AuxK: the confound control R4). With ``sweep`` also ``topk`` (no AuxK), the other
    fixed-variance c_KL (``fixed_c0p1``...) and the learned-variance ones (``learned_c0p03``...),
    all without AuxK as the paper's vSAE."""
    arms = [
        Arm("topk_auxk", SAEArm("none", 0.0, aux_alpha)),
        Arm("vsae", SAEArm("fixed", headline, 0.0)),
        Arm("vsae_auxk", SAEArm("fixed", headline, aux_alpha)),
    ]
    if sweep:
        arms.append(Arm("topk", SAEArm("none", 0.0, 0.0)))
        arms += [Arm(f"fixed_{_c(c)}", SAEArm("fixed", c, 0.0)) for c in fixed if c != headline]
        arms += [Arm(f"learned_{_c(c)}", SAEArm("learned", c, 0.0)) for c in learned]
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise ValueError(f"the KL weights repeat: {names}")
    return arms


def _generator(seed: int, purpose: int, index: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, purpose, index]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def true_directions(n_features: int, d: int, seed: int) -> Tensor:
    """``n_features`` random unit directions in R^d (rows), the world of seed ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n_features, d, generator=g), dim=1)


@dataclass(frozen=True)
class Superposition:
    """Toy-models superposition: each true direction active with probability ``p`` (i.i.d.,
    ``group_size`` 1), or in correlated groups of ``group_size`` (a group switches on with
    probability 2p and each of its features then with probability ½, so each feature keeps
    marginal p), magnitude U(0, 1), plus ``noise``·N(0, I). Batch ``i`` of a purpose is drawn
    from its own generator, so a stream is the same whatever consumes it."""

    directions: Tensor
    p: float
    group_size: int
    noise: float
    seed: int

    def __post_init__(self) -> None:
        n = self.directions.shape[0]
        if self.group_size < 1 or n % self.group_size:
            raise ValueError(f"group_size {self.group_size} must divide {n} features")
        if not 0 < self.p * (2 if self.group_size > 1 else 1) <= 1:
            raise ValueError(f"activation probability {self.p} out of range for the groups")

    def batch(self, index: int, rows: int, purpose: int = TRAIN) -> Tensor:
        """Batch ``index`` of ``rows`` samples, (rows, d)."""
        g = _generator(self.seed, purpose, index)
        n = self.directions.shape[0]
        if self.group_size == 1:
            active = torch.rand(rows, n, generator=g) < self.p
        else:
            groups = torch.rand(rows, n // self.group_size, generator=g) < 2 * self.p
            active = groups.repeat_interleave(self.group_size, dim=1)
            active &= torch.rand(rows, n, generator=g) < 0.5
        coef = active * torch.rand(rows, n, generator=g)
        return coef @ self.directions + self.noise * torch.randn(
            rows, self.directions.shape[1], generator=g
        )


@dataclass(frozen=True)
class Resample:
    """Batches drawn with replacement from stored rows (token states): training batches from
    ``train``, evaluation batches from the held-out ``held_out``; batch ``i`` of a purpose from
    its own generator seeded by (seed, purpose, i)."""

    train: Tensor
    held_out: Tensor
    seed: int

    def batch(self, index: int, rows: int, purpose: int = TRAIN) -> Tensor:
        """Batch ``index``: ``rows`` stored rows drawn with replacement, (rows, d)."""
        g = _generator(self.seed, purpose, index)
        pool = self.held_out if purpose == EVAL else self.train
        return pool[torch.randint(len(pool), (rows,), generator=g)]


class StepBatches(Dataset[tuple[Tensor]]):
    """Step i: batch i of every stream, stacked to (streams, rows, d)."""

    def __init__(self, streams: Sequence[Superposition | Resample], steps: int, rows: int):
        if steps < 1 or rows < 1 or not streams:
            raise ValueError(f"need streams, steps >= 1 and rows >= 1; got {steps}, {rows}")
        self.streams, self.steps, self.rows = list(streams), steps, rows

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> tuple[Tensor]:
        return (torch.stack([s.batch(step, self.rows) for s in self.streams]),)


SUBJECTS = (
    "the teacher", "a young farmer", "my neighbour", "the old doctor", "a small child",
    "the pilot", "our manager", "the musician", "a tired student", "the baker",
    "the river", "a city council", "the engineer", "her brother", "the museum guide",
)  # fmt: skip
VERBS = (
    "painted", "repaired", "carried", "described", "forgot", "bought", "opened", "measured",
    "cleaned", "sold", "studied", "found", "borrowed", "planted", "visited",
)  # fmt: skip
OBJECTS = (
    "a wooden chair", "the broken window", "three green apples", "an old map of the coast",
    "the heavy box", "a letter from Paris", "the red bicycle", "a quiet garden", "the blue kettle",
    "a long report", "the kitchen table", "two paper kites", "a cracked violin", "the harbour",
    "a jar of honey",
)  # fmt: skip
PLACES = (
    "before breakfast", "in the rain", "near the station", "after the long meeting",
    "on a cold Monday", "while the radio played", "at the edge of town", "during the storm",
    "with great care", "for the third time", "in the afternoon", "without a word",
)  # fmt: skip
TEMPLATES = (
    "{s} {v} {o} {p}.",
    "Yesterday {s} {v} {o}.",
    "{p}, {s} {v} {o}.",
    "Nobody knew why {s} {v} {o} {p}.",
    "Did {s} say that it {v} {o}?",
)


def sentences(count: int, seed: int) -> list[str]:
    """``count`` templated sentences (subject, verb, object, circumstance), in a seeded order."""
    combos = list(itertools.product(TEMPLATES, SUBJECTS, VERBS, OBJECTS, PLACES))
    if count > len(combos):
        raise ValueError(f"at most {len(combos)} distinct sentences, asked {count}")
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.choice(len(combos), size=count, replace=False):
        t, s, v, o, p = combos[int(i)]
        text = t.format(s=s, v=v, o=o, p=p)
        out.append(text[0].upper() + text[1:])
    return out


@torch.no_grad()
def token_states(
    tokenizer: Any,
    model: Any,
    texts: Sequence[str],
    *,
    layer: int,
    context: int,
    batch_size: int,
    max_tokens: int,
    device: torch.device,
) -> Tensor:
    """(tokens, width) float32 hidden states ``hidden_states[layer]`` (0: the embeddings) of
    every real token (no padding, no special token) of ``texts``, truncated to ``context``
    tokens each, until ``max_tokens`` tokens are collected."""
    if not texts:
        raise ValueError("no texts to encode")
    out: list[Tensor] = []
    total = 0
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(
            list(texts[i : i + batch_size]),
            padding=True,
            truncation=True,
            max_length=context,
            return_tensors="pt",
            return_special_tokens_mask=True,
        )
        keep = enc.pop("special_tokens_mask").eq(0) & enc["attention_mask"].bool()
        hidden = model(**enc.to(device), output_hidden_states=True).hidden_states
        if not 0 <= layer < len(hidden):
            raise ValueError(f"layer {layer} not in the model's 0..{len(hidden) - 1}")
        rows = hidden[layer].float().cpu()[keep]
        out.append(rows)
        total += len(rows)
        if total >= max_tokens:
            break
    return torch.cat(out)[:max_tokens].contiguous()
