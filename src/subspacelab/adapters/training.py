"""Mini-batch training shared by the merging and adapter studies, through Lightning.

Those studies train many small, independent models (fine-tunes per task, adapter arms per budget,
retrieval arms per loss). On a CPU Lightning's per-step cost dominates such models, so
:func:`train_joint` trains several :class:`Member` s in **one** Lightning run: the loss is the
sum of the members' losses and one Adam optimiser holds one parameter group per member. Each
member keeps everything it would have alone — its own seeded mini-batch stream of its own data
(the same index sequence :func:`~subspacelab.nets.training.tensor_loader` draws for its seed),
its own learning rate and weight decay, its own augmentation generator and after-step hook — and
since the members share no trainable parameter, ∂(Σ_k L_k)/∂θ_k = ∂L_k/∂θ_k and Adam's update
is per element: every member ends bit for bit where its own run would
(``tests/adapters/test_adapters.py`` checks it). :func:`train_loop` is the one-member case.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler

from subspacelab.nets.training import TrainEnv, fit

Augment = Callable[[Tensor, torch.Generator], Tensor]


@dataclass
class Member:
    """One model of a joint run and what its own run would use.

    ``loss(xb, yb)`` computes the model's loss on a batch of ``(x, y)``; batches are drawn in
    an order seeded by ``seed``; ``augment(xb, gen)`` transforms each batch with a generator
    seeded ``seed + 1``; ``on_step()`` runs after every optimiser step (a monitor).
    """

    model: nn.Module
    loss: Callable[[Tensor, Tensor], Tensor]
    x: Tensor
    y: Tensor
    lr: float
    seed: int
    weight_decay: float = 0.0
    augment: Augment | None = None
    on_step: Callable[[], None] | None = None


class _Streams(Dataset[tuple[tuple[Tensor, Tensor], ...]]):
    """Each member's ``(x, y)``, indexed by one index list per member."""

    def __init__(self, data: Sequence[tuple[Tensor, Tensor]]) -> None:
        self.data = tuple(data)

    def __len__(self) -> int:
        return len(self.data[0][0])

    def __getitem__(self, idx: Sequence[list[int]]) -> tuple[tuple[Tensor, Tensor], ...]:
        return tuple((x[i], y[i]) for (x, y), i in zip(self.data, idx, strict=True))


class _ZippedBatches(Sampler[list[list[int]]]):
    """One batch of indices per member per step, each member's from its own seeded sampler."""

    def __init__(self, samplers: Sequence[BatchSampler]) -> None:
        self.samplers = list(samplers)

    def __iter__(self) -> Iterator[list[list[int]]]:
        return (list(batches) for batches in zip(*self.samplers, strict=True))

    def __len__(self) -> int:
        return len(self.samplers[0])


def zipped_loader(
    data: Sequence[tuple[Tensor, Tensor]], seeds: Sequence[int], *, batch_size: int
) -> DataLoader[tuple[tuple[Tensor, Tensor], ...]]:
    """Per step, one mini-batch of each ``data[k]``, reshuffled each epoch by a generator seeded
    ``seeds[k]`` exactly as ``tensor_loader(*data[k], batch_size=…, seed=seeds[k])`` would.

    Every ``data[k]`` must have the same length (the same number of batches per epoch)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    lengths = {len(x) for x, _ in data} | {len(y) for _, y in data}
    if len(lengths) != 1:
        raise ValueError(f"joint training needs data of one length, got {sorted(lengths)}")
    n = lengths.pop()
    samplers = [
        BatchSampler(
            RandomSampler(range(n), generator=torch.Generator().manual_seed(seed)),
            batch_size=batch_size,
            drop_last=False,
        )
        for seed in seeds
    ]
    # its own generator for the loader's per-epoch base seed: training leaves the global RNG alone
    return DataLoader(
        _Streams(data),
        sampler=_ZippedBatches(samplers),
        batch_size=None,
        generator=torch.Generator().manual_seed(0),
    )


BatchedLoss = Callable[[Sequence[Tensor], Sequence[Tensor]], Tensor]


class JointLoss(L.LightningModule):
    """Adam on the sum of independent members' losses, one parameter group per member.

    ``batched(xs, ys)``, if given, returns every member's loss on its own batch at once (a
    stacked model evaluating all members in a few ops per layer, e.g. ``adapters.stacked``); it
    must equal the members' own losses up to round-off (random layers such as dropout: in
    distribution, drawing from the stacked model's own generator)."""

    def __init__(self, members: Sequence[Member], batched: BatchedLoss | None = None) -> None:
        super().__init__()
        if not members:
            raise ValueError("joint training needs at least one member")
        self.members = list(members)
        self.batched = batched
        self.nets = nn.ModuleList([m.model for m in members])
        self.groups: list[list[nn.Parameter]] = []
        seen: set[int] = set()
        for k, m in enumerate(members):
            params = [p for p in m.model.parameters() if p.requires_grad]
            if not params:
                raise ValueError(f"member {k} has no trainable parameters")
            if seen & {id(p) for p in params}:
                raise ValueError(f"member {k} shares trainable parameters with another member")
            seen |= {id(p) for p in params}
            self.groups.append(params)
        self.gens = [
            None if m.augment is None else torch.Generator().manual_seed(m.seed + 1)
            for m in members
        ]
        self.history: list[list[float]] = [[] for _ in members]
        self._sums = torch.zeros(len(members), dtype=torch.float64)
        self._count = 0

    def training_step(self, batch: Sequence[tuple[Tensor, Tensor]], batch_idx: int) -> Tensor:
        """The sum of every member's loss on its own batch (logged as their mean)."""
        xs = [
            xb if m.augment is None else m.augment(xb, gen)
            for m, gen, (xb, _) in zip(self.members, self.gens, batch, strict=True)
        ]
        ys = [yb for _, yb in batch]
        if self.batched is not None:
            stacked = self.batched(xs, ys)
        else:
            stacked = torch.stack(
                [m.loss(xb, yb) for m, xb, yb in zip(self.members, xs, ys, strict=True)]
            )
        size = len(batch[0][0])
        self._sums += stacked.detach().double().cpu() * size
        self._count += size
        self.log("loss", stacked.detach().mean(), on_step=False, on_epoch=True, batch_size=size)
        return stacked.sum()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Run the members' after-step hooks once the optimiser has stepped."""
        with torch.no_grad():
            for m in self.members:
                if m.on_step is not None:
                    m.on_step()

    def on_train_epoch_end(self) -> None:
        """Record each member's mean loss over the epoch's samples."""
        for k, value in enumerate((self._sums / max(self._count, 1)).tolist()):
            self.history[k].append(value)
        self._sums.zero_()
        self._count = 0

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam with one group (lr, weight decay) per member."""
        return torch.optim.Adam(
            [
                {"params": params, "lr": m.lr, "weight_decay": m.weight_decay}
                for m, params in zip(self.members, self.groups, strict=True)
            ]
        )


def train_joint(
    env: TrainEnv,
    members: Sequence[Member],
    *,
    epochs: int,
    batch_size: int,
    label: str = "train",
    batched: BatchedLoss | None = None,
) -> list[list[float]]:
    """Train every member for ``epochs`` passes over its own data in one Lightning run; returns
    each member's mean loss per epoch. Each member ends as its own run would have left it (with
    ``batched``, see :class:`JointLoss`, up to round-off)."""
    module = JointLoss(members, batched)
    for m in members:
        m.model.train()
    loader = zipped_loader(
        [(m.x, m.y) for m in members], [m.seed for m in members], batch_size=batch_size
    )
    fit(env, module, loader, epochs=epochs, label=label, every=max(1, epochs // 5))
    for m in members:
        m.model.eval()
    return module.history


def train_loop(
    env: TrainEnv,
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    weight_decay: float = 0.0,
    augment: Augment | None = None,
    on_step: Callable[[], None] | None = None,
    label: str = "train",
) -> list[float]:
    """One model trained alone (see :class:`Member` for the arguments); returns its mean loss
    per epoch."""
    member = Member(model, loss_fn, x, y, lr, seed, weight_decay, augment, on_step)
    return train_joint(env, [member], epochs=epochs, batch_size=batch_size, label=label)[0]


@torch.no_grad()
def predict(model: Callable[[Tensor], Tensor], x: Tensor, batch_size: int = 1024) -> Tensor:
    """Outputs of ``model`` on ``x`` in batches (no grad)."""
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def accuracy(logits: Tensor, y: Tensor) -> float:
    """Top-1 accuracy."""
    return float((logits.argmax(dim=1) == y).double().mean())
