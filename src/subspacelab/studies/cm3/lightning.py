"""Training the cm3 arms through Lightning: all arms of a seed in one run on the same
(user, positive, negative) batches (Zhou, Wang, Shen 2025, arXiv:2508.01226).

The arms share no parameter and Adam is per-parameter, so the summed loss trains each arm as a
run of its own would.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from subspacelab.nets.training import LossModule, TrainEnv, fit, tensor_loader
from subspacelab.studies.cm3.core import Recommender


def triples(train: np.ndarray, n_items: int, epochs: int, seed: int) -> Tensor:
    """``epochs`` shuffled passes over the training pairs, each with a uniform negative the user
    has not interacted with in training, as one (epochs x pairs, 3) tensor."""
    rng = np.random.default_rng(seed)
    seen = {(int(u), int(i)) for u, i in train}
    out = []
    for _ in range(epochs):
        order = rng.permutation(len(train))
        neg = rng.integers(0, n_items, len(train))
        users = train[order, 0]
        clash = [(int(u), int(n)) in seen for u, n in zip(users, neg, strict=True)]
        for k in np.flatnonzero(clash):
            while (int(train[order[k], 0]), int(neg[k])) in seen:
                neg[k] = rng.integers(0, n_items)
        out.append(np.stack([train[order, 0], train[order, 1], neg], axis=1))
    return torch.from_numpy(np.concatenate(out)).long()


def train_arms(
    env: TrainEnv,
    arms: Sequence[Recommender],
    batches: Tensor,
    *,
    batch_size: int,
    lr: float,
    weight_decay: float,
    gamma: float,
    min_sim: float,
    max_sim: float,
    label: str,
) -> None:
    """One pass over ``batches`` (already ``epochs`` shuffled passes), every arm on each batch."""
    nets = nn.ModuleList(arms)

    def loss(_: nn.Module, b: tuple[Tensor, ...]) -> Tensor:
        (rows,) = b
        return sum(arm.loss(rows, gamma, min_sim, max_sim) for arm in arms)  # type: ignore[return-value]

    module = LossModule(nets, loss, lr=lr, weight_decay=weight_decay)
    fit(
        env, module, tensor_loader(batches, batch_size=batch_size, seed=None), epochs=1, label=label
    )
