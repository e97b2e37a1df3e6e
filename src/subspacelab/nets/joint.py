"""The lab's one joint trainer: many small, independent models in one Lightning run.

Studies train many small models side by side (a baseline and a subspace model per dimension,
two nets per seed, an adapter arm per budget, a cell per loss and width). On a CPU Lightning's
per-step cost dominates such models, so :func:`train_joint` trains several :class:`Member` s at
once: the loss is the sum of the members' losses, and the optimiser holds one parameter group per
member (its own learning rate and weight decay). Since the members share no trainable parameter,
∂(Σ_k L_k)/∂θ_k = ∂L_k/∂θ_k bit for bit; Adam's, AdamW's and SGD's updates (moments, bias
correction, weight decay, momentum) are per element, and the schedule depends only on the step, so
every member ends exactly where its own run would. ``tests/nets/test_joint.py`` checks it.

Batches come one of two ways:

* **per-member streams** (``batch_size=``): each member has its own ``data``, drawn in its own
  order seeded by ``seed`` — the index sequence
  :func:`~subspacelab.nets.training.tensor_loader` draws for that seed;
* **one shared loader** (``loader=``): every member without ``data`` gets the loader's batch
  (the same mini-batches for all, or an empty batch for a model that computes its own loss);
  a member with ``data`` gets the whole of it every step (full-batch training on data of its
  own, held as buffers so that it follows the module's device).

A member may stop on its own (``stop``): it is frozen at the first step where ``stop(loss,
step)`` is true, its parameters untouched from then on, and the run ends when all have stopped.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler

from subspacelab.nets.training import TrainEnv, fit

Augment = Callable[[Tensor, torch.Generator], Tensor]
BatchedLoss = Callable[[Sequence[Sequence[Tensor]]], Tensor]
OPTIMIZERS = ("adam", "adamw", "sgd")  # adam: L2 decay in the gradient; adamw: decoupled
# a step after every member stopped returns None on purpose (the run then ends)
warnings.filterwarnings("ignore", ".*`training_step` returned `None`.*")
SCHEDULES = ("constant", "cosine")


@dataclass
class Member:
    """One model of a joint run and what its own run would use.

    ``loss(*batch)`` is the model's loss on a batch (the tensors of its stream, of the shared
    loader, or its whole ``data``); ``lr``/``weight_decay`` its optimiser group; ``seed`` orders
    its stream, and ``augment(batch[0], gen)`` transforms each batch's first tensor with a
    generator seeded ``seed + 1``; ``on_step()`` runs after every optimiser step (a projection,
    a monitor); ``stop(loss, step)``, checked on the loss before each step, freezes the member.
    """

    model: nn.Module
    loss: Callable[..., Tensor]
    lr: float
    weight_decay: float = 0.0
    data: Sequence[Tensor] = ()
    seed: int = 0
    augment: Augment | None = None
    on_step: Callable[[], None] | None = None
    stop: Callable[[float, int], bool] | None = None


@dataclass
class JointResult:
    """What a joint run leaves: each member's mean loss per epoch (``history[k]``), its loss
    and step when it stopped (``final[k]``/``steps[k]``; ``None`` if it never did) and the
    run's per-epoch metrics as :func:`~subspacelab.nets.training.fit` returns them."""

    history: list[list[float]]
    final: list[float | None]
    steps: list[int | None]
    epochs: list[dict[str, float]] = field(default_factory=list)


class _Streams(Dataset[tuple[tuple[Tensor, ...], ...]]):
    """Each member's tensors, indexed by one index list per member."""

    def __init__(self, data: Sequence[Sequence[Tensor]]) -> None:
        self.data = tuple(tuple(d) for d in data)

    def __len__(self) -> int:
        return len(self.data[0][0])

    def __getitem__(self, idx: Sequence[list[int]]) -> tuple[tuple[Tensor, ...], ...]:
        return tuple(tuple(t[i] for t in d) for d, i in zip(self.data, idx, strict=True))


class _ZippedBatches(Sampler[list[list[int]]]):
    """One batch of indices per member per step, each member's from its own seeded sampler."""

    def __init__(self, samplers: Sequence[BatchSampler]) -> None:
        self.samplers = list(samplers)

    def __iter__(self) -> Iterator[list[list[int]]]:
        return (list(batches) for batches in zip(*self.samplers, strict=True))

    def __len__(self) -> int:
        return len(self.samplers[0])


def zipped_loader(
    data: Sequence[Sequence[Tensor]], seeds: Sequence[int], *, batch_size: int
) -> DataLoader[tuple[tuple[Tensor, ...], ...]]:
    """Per step, one mini-batch of each ``data[k]``, reshuffled each epoch by a generator seeded
    ``seeds[k]`` exactly as ``tensor_loader(*data[k], batch_size=…, seed=seeds[k])`` would.

    Every ``data[k]`` must have the same length (the same number of batches per epoch)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not data or any(not d for d in data):
        raise ValueError("per-member streams need data for every member")
    lengths = {len(t) for d in data for t in d}
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


class JointModule(L.LightningModule):
    """The sum of independent members' losses, one optimiser group per member.

    ``optimizer``: ``"adam"`` (weight decay as L2 in the gradient), ``"adamw"`` (decoupled weight
    decay, Loshchilov & Hutter, arXiv 1711.05101) or ``"sgd"`` (with ``momentum``); ``schedule``:
    ``"constant"`` or ``"cosine"`` (per step, to 0 over the run), the first ``warmup`` fraction of
    the run's steps rising linearly from 0 (a cosine schedule only). ``batched(batches)``, if
    given, returns every member's loss on its own batch at once (a stacked model evaluating all
    members in a few ops per layer); it must equal the members' own losses up to round-off.
    """

    def __init__(
        self,
        members: Sequence[Member],
        *,
        streams: bool,
        optimizer: str = "adam",
        momentum: float = 0.0,
        schedule: str = "constant",
        warmup: float = 0.0,
        batched: BatchedLoss | None = None,
    ) -> None:
        super().__init__()
        if not members:
            raise ValueError("joint training needs at least one member")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; allowed: {', '.join(SCHEDULES)}")
        if not 0.0 <= warmup < 1.0 or (warmup > 0 and schedule != "cosine"):
            raise ValueError(f"warmup must be in [0, 1) with the cosine schedule, got {warmup}")
        if batched is not None and any(m.stop is not None for m in members):
            raise ValueError("a batched loss cannot stop members one by one")
        self.members = list(members)
        self.streams = streams
        self.optimizer_name, self.momentum, self.schedule = optimizer, momentum, schedule
        self.warmup = warmup
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
            if not streams:  # a member's own full batch follows the module's device
                for j, t in enumerate(m.data):
                    self.register_buffer(f"data{k}_{j}", t, persistent=False)
        self.gens = [
            None if m.augment is None else torch.Generator().manual_seed(m.seed + 1)
            for m in members
        ]
        self.history: list[list[float]] = [[] for _ in members]
        self.final: list[float | None] = [None] * len(members)
        self.steps: list[int | None] = [None] * len(members)
        self._sums = torch.zeros(len(members), dtype=torch.float64)
        self._rows = torch.zeros(len(members), dtype=torch.float64)
        self._total = 1

    def _batches(self, batch: Any) -> list[Sequence[Tensor]]:
        if self.streams:
            return list(batch)
        return [
            tuple(getattr(self, f"data{k}_{j}") for j in range(len(m.data))) if m.data else batch
            for k, m in enumerate(self.members)
        ]

    def training_step(self, batch: Any, batch_idx: int) -> Tensor | None:
        """The sum of the running members' losses, each on its own batch (logged as their
        mean); members whose ``stop`` fires are frozen first."""
        batches = []
        for m, gen, b in zip(self.members, self.gens, self._batches(batch), strict=True):
            if m.augment is not None:
                b = (m.augment(b[0], gen), *b[1:])
            batches.append(b)
        if self.batched is not None:
            losses = list(self.batched(batches))
        else:
            losses = [
                m.loss(*b) if self.final[k] is None else None
                for k, (m, b) in enumerate(zip(self.members, batches, strict=True))
            ]
        running: list[int] = []
        for k, (m, loss) in enumerate(zip(self.members, losses, strict=True)):
            if loss is None:
                continue
            if m.stop is not None and m.stop(float(loss.detach()), batch_idx):
                self.final[k], self.steps[k] = float(loss.detach()), batch_idx
                continue
            running.append(k)
        if not running:
            self.trainer.should_stop = True
            return None
        stacked = torch.stack([losses[k] for k in running])  # type: ignore[misc]
        rows = torch.tensor(
            [len(batches[k][0]) if batches[k] else 1 for k in running], dtype=torch.float64
        )
        self._sums[running] += stacked.detach().double().cpu() * rows  # one sync per step
        self._rows[running] += rows
        self.log("loss", stacked.detach().mean(), on_step=False, on_epoch=True, batch_size=1)
        return stacked.sum()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Run the running members' after-step hooks once the optimiser has stepped."""
        with torch.no_grad():
            for k, m in enumerate(self.members):
                if m.on_step is not None and self.final[k] is None:
                    m.on_step()

    def on_train_epoch_end(self) -> None:
        """Record each member's mean loss over the epoch's rows."""
        means = (self._sums / self._rows.clamp(min=1)).tolist()
        for k, value in enumerate(means):
            if self._rows[k] > 0:
                self.history[k].append(value)
        self._sums.zero_()
        self._rows.zero_()

    def configure_optimizers(self) -> Any:
        """Adam, AdamW or SGD with one group (lr, weight decay) per member, and the schedule."""
        groups = [
            {"params": params, "lr": m.lr, "weight_decay": m.weight_decay}
            for m, params in zip(self.members, self.groups, strict=True)
        ]
        opt: torch.optim.Optimizer
        if self.optimizer_name == "sgd":
            opt = torch.optim.SGD(groups, lr=self.members[0].lr, momentum=self.momentum)
        elif self.optimizer_name == "adamw":
            opt = torch.optim.AdamW(groups)
        else:
            opt = torch.optim.Adam(groups)
        if self.schedule == "constant":
            return opt
        self._total = max(1, int(self.trainer.estimated_stepping_batches))
        return {
            "optimizer": opt,
            "lr_scheduler": {"scheduler": LambdaLR(opt, self._factor), "interval": "step"},
        }

    def _factor(self, step: int) -> float:
        """Linear warm-up over the first ``warmup`` fraction of the steps, then cosine decay of
        the learning rate to 0 at the end of the run (plain cosine when ``warmup`` is 0)."""
        warm = min(round(self.warmup * self._total), self._total - 1)
        if step < warm:
            return (step + 1) / (warm + 1)
        span = self._total - warm
        return 0.5 * (1.0 + math.cos(math.pi * min(step - warm, span) / span))


def train_joint(
    env: TrainEnv,
    members: Sequence[Member],
    *,
    epochs: int,
    batch_size: int | None = None,
    loader: DataLoader[Any] | None = None,
    optimizer: str = "adam",
    momentum: float = 0.0,
    schedule: str = "constant",
    warmup: float = 0.0,
    batched: BatchedLoss | None = None,
    label: str = "train",
    every: int | None = None,
    callbacks: Sequence[Callback] = (),
    params: Mapping[str, Any] | None = None,
) -> JointResult:
    """Train every member for ``epochs`` passes in one Lightning run: over its own stream
    (``batch_size``) or over the shared ``loader``. Each member ends as its own run would have
    left it (with ``batched``, up to round-off); models are left in eval mode."""
    if (batch_size is None) == (loader is None):
        raise ValueError("give exactly one of batch_size (per-member streams) or loader (shared)")
    module = JointModule(
        members,
        streams=loader is None,
        optimizer=optimizer,
        momentum=momentum,
        schedule=schedule,
        warmup=warmup,
        batched=batched,
    )
    if loader is None:
        assert batch_size is not None
        loader = zipped_loader(
            [m.data for m in members], [m.seed for m in members], batch_size=batch_size
        )
    run = fit(
        env,
        module,
        loader,
        epochs=epochs,
        label=label,
        every=every or max(1, epochs // 5),
        callbacks=callbacks,
        params=params,
    )
    return JointResult(module.history, module.final, module.steps, run)


def train_one(
    env: TrainEnv,
    member: Member,
    *,
    epochs: int,
    batch_size: int,
    label: str = "train",
) -> list[float]:
    """One model trained alone on its own stream; returns its mean loss per epoch."""
    return train_joint(env, [member], epochs=epochs, batch_size=batch_size, label=label).history[0]
