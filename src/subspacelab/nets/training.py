"""The one way the lab trains: a Lightning Trainer configured from the ``lab`` params.

Devices, nodes, strategy and precision come from params.yaml, so a study scales from a laptop to
a GPU cluster without code changes. Checkpoints are not written by Lightning (steps save
safetensors themselves, DVC tracks them); progress is one line per epoch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from subspacelab.registry import StepContext


class EpochProgress(Callback):
    """Prints one line per epoch (``every`` epochs) and keeps the epoch-end metrics."""

    def __init__(self, say: Callable[[str], None], label: str, every: int = 1) -> None:
        self.say = say
        self.label = label
        self.every = max(1, every)
        self.history: list[dict[str, float]] = []
        self._t0 = time.perf_counter()

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


def make_trainer(
    ctx: StepContext,
    *,
    max_epochs: int = -1,
    max_steps: int = -1,
    label: str = "train",
    every: int = 1,
    **kwargs: Any,
) -> tuple[L.Trainer, EpochProgress]:
    """A Trainer on ctx.device with the lab's scale-out settings and a progress callback."""
    lab = ctx.lab
    progress = EpochProgress(ctx.progress, label, every)
    trainer = L.Trainer(
        accelerator="gpu" if ctx.device.type == "cuda" else "cpu",
        devices=lab.accelerator_devices,
        num_nodes=lab.num_nodes,
        strategy=lab.strategy,
        precision=lab.precision,  # type: ignore[arg-type]
        deterministic=lab.deterministic,
        max_epochs=max_epochs,
        max_steps=max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[progress],
        **kwargs,
    )
    return trainer, progress


def state_dict_cpu(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a module's state dict (parameters and buffers)."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
