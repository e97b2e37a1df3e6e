"""The one way the lab trains: a Lightning Trainer configured from the ``lab`` params.

Devices, nodes, strategy and precision come from params.yaml, so a study scales from a laptop to
a GPU cluster without code changes. Checkpoints are not written by Lightning (steps save
safetensors themselves, DVC tracks them); progress is one line per epoch.

Most studies train an injected network on a loss with Adam or SGD: :class:`LossModule` wraps
any ``nn.Module`` and a ``loss(net, batch)`` function, :func:`tensor_loader` serves seeded
mini-batches straight from tensors (index slicing, no per-sample collation), and
:func:`full_batch_loader` repeats one full batch ``steps`` times in a single epoch (for the
full-batch solvers of small problems, where an epoch per step would cost Lightning's per-epoch
hooks every step). :func:`fit` ties them to :func:`make_trainer`.

Every Trainer logs through a :class:`LabLogger`: Lightning's metrics per epoch (and a traced loss
for single-epoch full-batch runs), the hyperparameters, the optimiser and any ``params`` the step
passes are kept for the running stage, which spools them with its MLflow run; each trained model
(each ``fit``) becomes a child run of the stage run there. Training never waits on MLflow.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor, nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from subspacelab import tracking
from subspacelab.config import LabConfig
from subspacelab.io import NonFiniteError

# Tensor loaders run in the training process by design (the data is already in memory).
warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
# Lightning's info lines (GPU/TPU availability, tips) off on every fit; its warnings stay.
for _name in ("lightning.pytorch", "lightning.fabric"):
    logging.getLogger(_name).setLevel(logging.WARNING)


class _NoLitLoggerTip(logging.Filter):
    """Lightning advertises its cloud logger for every Trainer with another logger; a stage's
    log need not repeat that for each model it trains."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Drop the advertisement, keep everything else."""
        return "litlogger" not in record.getMessage()


for _name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(_NoLitLoggerTip())


class TrainEnv(Protocol):
    """What training needs from a step: the lab settings, the device and a progress printer
    (a :class:`~subspacelab.registry.StepContext` is one)."""

    lab: LabConfig
    device: torch.device
    progress: Callable[[str], None]


@dataclass
class LocalEnv:
    """A :class:`TrainEnv` for tests and benchmarks: one CPU process, deterministic, quiet."""

    lab: LabConfig = field(
        default_factory=lambda: LabConfig(
            profile="mini",
            device="cpu",
            threads=1,
            accelerator_devices=1,
            num_nodes=1,
            strategy="auto",
            precision="32-true",
            deterministic=True,
            jobs=1,
        )
    )
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    progress: Callable[[str], None] = field(default=lambda msg: None)


class LabLogger(Logger):
    """Lightning's logging of one trained model, kept for the running stage's MLflow run.

    Records the hyperparameters Lightning reports, what :meth:`describe` reads off the Trainer
    (optimiser and its settings, epochs, batches, trainable parameters, the torch seed) and the
    step's own ``params``; every metric Lightning logs, with its step. When training ends the
    record joins the stage's (:func:`subspacelab.tracking.add_model`): the stage spools it with
    its own run and MLflow shows it as a child run of the stage run. Nothing here talks to MLflow.
    """

    def __init__(self, label: str, params: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.label = label
        self.params = {"label": label, "torch_initial_seed": str(torch.initial_seed())}
        self.params.update({k: str(v) for k, v in (params or {}).items()})
        self.history: list[tuple[str, float, int, int]] = []
        self._start_ms = tracking.now_ms()
        self._trained = False
        self._done = False

    @property
    def name(self) -> str:
        """The lab's logger."""
        return "subspacelab"

    @property
    def version(self) -> str:
        """The model's label."""
        return self.label

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Keep the module's hyperparameters (``save_hyperparameters``), flattened."""
        items = params.items() if isinstance(params, Mapping) else vars(params).items()
        for key, value in items:
            self.params.setdefault(f"hparams.{key}", str(value))

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Keep each metric with its step (Lightning's global step unless given)."""
        now = tracking.now_ms()
        for key, value in metrics.items():
            self.history.append((key, float(value), int(step or 0), now))

    @rank_zero_only
    def describe(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        """What the model's run shows as params: module, optimiser settings, schedule."""
        self._trained = True
        self._start_ms = tracking.now_ms()
        info: dict[str, Any] = {
            "module": type(module).__name__,
            "trainable_params": sum(p.numel() for p in module.parameters() if p.requires_grad),
            "max_epochs": trainer.max_epochs,
            "max_steps": trainer.max_steps,
            "batches_per_epoch": trainer.num_training_batches,
            "precision": trainer.precision,
        }
        for i, opt in enumerate(trainer.optimizers):
            key = "optimizer" if i == 0 else f"optimizer{i}"
            info[key] = type(opt).__name__
            group = opt.param_groups[0]
            for name in ("lr", "momentum", "weight_decay", "betas", "eps", "nesterov"):
                if name in group:
                    info[f"{key}.{name}"] = group[name]
            if len(opt.param_groups) > 1:
                info[f"{key}.groups"] = len(opt.param_groups)
        for key, value in info.items():
            self.params.setdefault(key, str(value))

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Hand the model's record to the running stage (once, and only if it trained)."""
        if self._done or not self._trained:
            return
        self._done = True
        tracking.add_model(
            {
                "name": self.label,
                "params": self.params,
                "metrics": [list(m) for m in self.history],
                "status": "FINISHED" if status in ("success", "finished") else "FAILED",
                "start_ms": self._start_ms,
                "end_ms": tracking.now_ms(),
            }
        )


class EpochProgress(Callback):
    """Prints one line per epoch (``every`` epochs) and keeps the epoch-end metrics."""

    def __init__(
        self,
        say: Callable[[str], None],
        label: str,
        every: int = 1,
        logger: LabLogger | None = None,
    ) -> None:
        self.say = say
        self.label = label
        self.every = max(1, every)
        self.logger = logger
        self.history: list[dict[str, float]] = []
        self._t0 = time.perf_counter()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Let the model's logger read the optimiser and schedule."""
        if self.logger is not None:
            self.logger.describe(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Record and print the logged metrics of the finished epoch."""
        row = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        row["epoch"] = float(trainer.current_epoch)
        self.history.append(row)
        epoch = trainer.current_epoch + 1
        if epoch % self.every == 0 or epoch == trainer.max_epochs:
            shown = " ".join(f"{k}={v:.4f}" for k, v in sorted(row.items()) if k != "epoch")
            self.say(
                f"{self.label} epoch {epoch}/{trainer.max_epochs} {shown} "
                f"({time.perf_counter() - self._t0:.1f}s)"
            )


class StopOnNonFinite(Callback):
    """Stops training at the first non-finite loss (or epoch metric) with a NonFiniteError that
    names the study, step, model and epoch: a diverged run never reaches a metric or a file.

    Every trainer from :func:`make_trainer` has it; under multi-process training the ranks agree
    on the decision, so all of them stop together.
    """

    def __init__(self, env: TrainEnv, label: str) -> None:
        study = getattr(env, "study", None)
        step = getattr(env, "step", None)
        self.where = (
            f"{study.slug}.{step.name}" if study is not None and step is not None else "training"
        )
        self.label = label

    def _check(self, trainer: L.Trainer, name: str, value: Tensor, batch: int | None) -> None:
        bad = not bool(torch.isfinite(value.detach()).all())
        if trainer.strategy.reduce_boolean_decision(bad, all=False):
            at = f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
            if batch is not None:
                at += f", batch {batch + 1} (optimiser step {trainer.global_step})"
            shown = float(value.detach().float().flatten()[0]) if value.numel() else value
            raise NonFiniteError(
                f"{self.where}: model {self.label!r} diverged: {name} is {shown} at {at}; "
                "nothing was written (lower the learning rate, or check the inputs)"
            )

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Check the batch's loss (the training step's output)."""
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, Tensor):
            self._check(trainer, "the loss", loss, batch_idx)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Check every metric the module logged this epoch."""
        for name, value in sorted(trainer.callback_metrics.items()):
            if isinstance(value, Tensor):
                self._check(trainer, f"logged metric {name!r}", value, None)


def make_trainer(
    ctx: TrainEnv,
    *,
    max_epochs: int = -1,
    max_steps: int = -1,
    label: str = "train",
    every: int = 1,
    callbacks: Sequence[Callback] = (),
    params: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> tuple[L.Trainer, EpochProgress]:
    """A Trainer on ctx.device with the lab's scale-out settings, a progress callback,
    :class:`StopOnNonFinite` and a :class:`LabLogger` (the model's MLflow child run, named
    ``label``; ``params`` are its params besides those read off the Trainer, e.g. arm and seed)."""
    lab = ctx.lab
    logger = LabLogger(label, params)
    progress = EpochProgress(ctx.progress, label, every, logger)
    trainer = L.Trainer(
        accelerator="gpu" if ctx.device.type == "cuda" else "cpu",
        devices=lab.accelerator_devices,
        num_nodes=lab.num_nodes,
        strategy=lab.strategy,
        precision=lab.precision,  # type: ignore[arg-type]
        deterministic=lab.deterministic,
        max_epochs=max_epochs,
        max_steps=max_steps,
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[progress, StopOnNonFinite(ctx, label), *callbacks],
        **kwargs,
    )
    return trainer, progress


def state_dict_cpu(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a module's state dict (parameters and buffers)."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


Batch = Sequence[Tensor]
LossFn = Callable[[nn.Module, Batch], Tensor]
TRACE_POINTS = 100  # traced losses of a single-epoch (full-batch) run


class LossModule(L.LightningModule):
    """Trains an injected network on ``loss(net, batch)``.

    ``optimizer`` is ``"adam"`` or ``"sgd"`` (with ``momentum``); ``param_groups`` replaces the
    default single group of the network's trainable parameters (each a dict with ``params`` and
    optional ``lr``/``weight_decay``, as torch takes them). ``after_step(net)`` runs after every
    optimiser step (a projection, a pruning mask, a monitor) without gradient tracking.
    """

    def __init__(
        self,
        net: nn.Module,
        loss: LossFn,
        *,
        lr: float,
        weight_decay: float = 0.0,
        optimizer: str = "adam",
        momentum: float = 0.0,
        param_groups: list[dict[str, Any]] | None = None,
        after_step: Callable[[nn.Module], None] | None = None,
    ) -> None:
        super().__init__()
        if optimizer not in ("adam", "sgd"):
            raise ValueError(f"unknown optimizer {optimizer!r}; allowed: adam, sgd")
        self.net = net
        self.loss = loss
        self.lr, self.weight_decay = lr, weight_decay
        self.optimizer_name, self.momentum = optimizer, momentum
        self.param_groups = param_groups
        self.after_step = after_step
        if param_groups is None and not any(p.requires_grad for p in net.parameters()):
            raise ValueError("the network has no trainable parameters")

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """The loss of this batch (summed here, logged once per epoch as the mean over rows:
        Lightning's per-step logging would cost more than a tiny model's step)."""
        loss = self.loss(self.net, batch)
        size = len(batch[0]) if batch else 1
        self._loss_sum = self._loss_sum + loss.detach() * size
        self._rows += size
        if self._trace_every and batch_idx % self._trace_every == 0:
            self._trace.append((batch_idx, loss.detach()))
        return loss

    def on_train_epoch_start(self) -> None:
        """Reset the epoch's running loss; a single-epoch run of many steps (full-batch
        training) also traces the loss at up to ``TRACE_POINTS`` evenly spaced steps."""
        self._loss_sum, self._rows = torch.zeros((), device=self.device), 0
        batches = self.trainer.num_training_batches
        single = self.trainer.max_epochs == 1 and 1 < batches < math.inf
        self._trace_every = math.ceil(batches / TRACE_POINTS) if single else 0
        self._trace: list[tuple[int, Tensor]] = []

    def on_train_epoch_end(self) -> None:
        """Send the traced losses (one device sync) to the loggers as ``step_loss``."""
        if not self._trace:
            return
        values = torch.stack([v for _, v in self._trace]).float().cpu().tolist()
        for logger in self.loggers:
            for (step, _), value in zip(self._trace, values, strict=True):
                logger.log_metrics({"step_loss": value}, step=step)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam or SGD over the trainable parameters (or the given groups)."""
        groups: Iterable[Any] = self.param_groups or [
            p for p in self.net.parameters() if p.requires_grad
        ]
        if self.optimizer_name == "sgd":
            return torch.optim.SGD(
                groups, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
            )
        return torch.optim.Adam(groups, lr=self.lr, weight_decay=self.weight_decay)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Run ``after_step`` once the optimiser has stepped; after the epoch's last batch, log
        the epoch's mean loss."""
        if self.after_step is not None:
            with torch.no_grad():
                self.after_step(self.net)
        if batch_idx + 1 == self.trainer.num_training_batches:
            mean = self._loss_sum / max(1, self._rows)
            self.log("loss", mean, on_step=False, on_epoch=True, batch_size=1)


class _Tensors(Dataset[tuple[Tensor, ...]]):
    """Tensors indexed together by a list of indices (one slice per batch, no collation)."""

    def __init__(self, tensors: Sequence[Tensor], repeat: int = 0) -> None:
        if not repeat and (not tensors or any(len(t) != len(tensors[0]) for t in tensors)):
            raise ValueError(f"need tensors of one length, got {[len(t) for t in tensors]}")
        self.tensors = tuple(tensors)
        self.repeat = repeat

    def __len__(self) -> int:
        return self.repeat or len(self.tensors[0])

    def __getitem__(self, idx: Any) -> tuple[Tensor, ...]:
        if self.repeat:
            return self.tensors
        return tuple(t[idx] for t in self.tensors)


def _private_generator() -> torch.Generator:
    """A generator of the loader's own: a DataLoader draws a base seed from it every epoch,
    which would otherwise come from (and shift) the global random state."""
    return torch.Generator().manual_seed(0)


def tensor_loader(
    *tensors: Tensor, batch_size: int, seed: int | None, drop_last: bool = False
) -> DataLoader[tuple[Tensor, ...]]:
    """Mini-batches of ``tensors`` (indexed together), reshuffled each epoch by a generator
    seeded with ``seed`` (``None``: in order)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    data = _Tensors(tensors)
    sampler: Any = (
        SequentialSampler(data)
        if seed is None
        else RandomSampler(data, generator=torch.Generator().manual_seed(seed))
    )
    batches = BatchSampler(sampler, batch_size=batch_size, drop_last=drop_last)
    return DataLoader(data, sampler=batches, batch_size=None, generator=_private_generator())


def full_batch_loader(*tensors: Tensor, steps: int) -> DataLoader[tuple[Tensor, ...]]:
    """One epoch of ``steps`` batches, each the whole of ``tensors`` (full-batch training).

    With no tensors each batch is empty (for a model that computes its own loss)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return DataLoader(
        _Tensors(tensors, repeat=steps), batch_size=None, generator=_private_generator()
    )


def fit(
    env: TrainEnv,
    module: L.LightningModule,
    loader: DataLoader[Any],
    *,
    epochs: int,
    label: str = "train",
    every: int = 1,
    callbacks: Sequence[Callback] = (),
    params: Mapping[str, Any] | None = None,
) -> list[dict[str, float]]:
    """Train ``module`` for ``epochs`` passes over ``loader``; returns the per-epoch metrics
    (``loss`` is the epoch mean). ``callbacks`` join the progress callback (a stopping rule);
    ``label`` and ``params`` name and describe the model's MLflow child run.
    The module is put in train mode first (Lightning keeps whatever mode it finds, so a second
    ``fit`` would otherwise train BatchNorm in eval mode) and left in eval mode."""
    trainer, progress = make_trainer(
        env, max_epochs=epochs, label=label, every=every, callbacks=callbacks, params=params
    )
    module.train()
    trainer.fit(module, loader)
    module.eval()
    return progress.history
