"""Training of ``robustness_lottery`` (Li et al., arXiv:2206.07918): the dense model and its
four pruned counterparts (one-shot magnitude + fine-tuning, gradual magnitude, lottery-ticket
rewinding, edge-popup), all from one init, through Lightning. Only the fit step imports it."""

from __future__ import annotations

import copy
from collections.abc import Callable

from torch import Tensor, nn

from subspacelab.api import Batch, LossModule, TrainEnv, fit, tensor_loader
from subspacelab.probes import pruning as pr
from subspacelab.studies.robustness_lottery.core import METHODS, Classifier, to_edge_popup


def _train(
    env: TrainEnv,
    net: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    epochs: int,
    lr: float,
    batch: int,
    seed: int,
    label: str,
    after_step: Callable[[nn.Module], None] | None = None,
) -> None:
    """Adam on cross-entropy through Lightning; ``after_step`` re-applies masks after every
    optimiser step (a pruned weight moved by Adam is zeroed again before the next forward)."""
    net.train()
    module = LossModule(net, _cross_entropy, lr=lr, after_step=after_step)
    fit(env, module, tensor_loader(x, y, batch_size=batch, seed=seed), epochs=epochs, label=label)


def _cross_entropy(net: nn.Module, batch: Batch) -> Tensor:
    x, y = batch
    return nn.functional.cross_entropy(net(x), y)


def train_methods(
    env: TrainEnv,
    make: Callable[[], Classifier],
    x: Tensor,
    y: Tensor,
    *,
    epochs: int,
    finetune_epochs: int,
    rewind_epoch: int,
    sparsity: float,
    lr: float,
    batch: int,
    seed: int,
) -> dict[str, Classifier]:
    """The dense model and its four pruned counterparts, all from the same init.

    Every phase has its own mini-batch order, seeded from ``seed`` and the phase."""
    init = make()
    dense = copy.deepcopy(init)
    common = {"lr": lr, "batch": batch}
    _train(env, dense, x, y, epochs=rewind_epoch, seed=seed, label="dense", **common)
    early = copy.deepcopy(dense)
    rest = epochs - rewind_epoch
    _train(env, dense, x, y, epochs=rest, seed=seed + 1, label="dense", **common)
    masks = pr.magnitude_masks(pr.prunable(dense), sparsity)
    finetuned = copy.deepcopy(dense)
    pr.apply_masks(finetuned, masks)
    _train(
        env,
        finetuned,
        x,
        y,
        epochs=finetune_epochs,
        lr=lr / 10,
        batch=batch,
        seed=seed + 2,
        label="finetune",
        after_step=pr.MaskHold(masks),
    )
    gradual = copy.deepcopy(init)
    steps_per_epoch = -(-len(y) // batch)
    schedule = pr.GradualMagnitude(steps_per_epoch, epochs, sparsity)
    schedule.start(gradual)
    _train(
        env,
        gradual,
        x,
        y,
        epochs=epochs,
        seed=seed + 3,
        label="gradual",
        after_step=schedule,
        **common,
    )
    rewound = copy.deepcopy(early)
    pr.apply_masks(rewound, masks)
    _train(
        env,
        rewound,
        x,
        y,
        epochs=rest,
        seed=seed + 4,
        label="rewind",
        after_step=pr.MaskHold(masks),
        **common,
    )
    popup = to_edge_popup(copy.deepcopy(init), 1.0 - sparsity, seed)
    _train(env, popup, x, y, epochs=epochs, seed=seed + 5, label="edge_popup", **common)
    return dict(zip(METHODS, (dense, finetuned, gradual, rewound, popup), strict=True))
