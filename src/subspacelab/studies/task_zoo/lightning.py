"""Fine-tuning of the full task zoo's CLIP encoders, through Lightning (task_zoo's full profile).

Imported only by :func:`~subspacelab.studies.task_zoo.full.zoo_step`, the code that trains.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from subspacelab.adapters import LoRA, wrap_layers
from subspacelab.api import TrainEnv, make_trainer, seed_all, state_dict_cpu
from subspacelab.merging.algebra import StateDict


class HeadFinetune(L.LightningModule):
    """Cross-entropy of ``head(encoder(x))`` with the head frozen; AdamW with a linear warm-up
    then cosine decay, stepped every optimiser step (the task-vectors recipe)."""

    def __init__(
        self,
        encoder: nn.Module,
        head: StateDict,
        *,
        lr: float,
        weight_decay: float,
        warmup: int,
        steps: int,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.register_buffer("head_w", head["weight"].clone())
        self.register_buffer("head_b", head["bias"].clone())
        self.lr, self.weight_decay, self.warmup, self.steps = lr, weight_decay, warmup, steps

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        """The loss of this batch."""
        x, y = batch
        logits = self.encoder(x) @ self.head_w.T + self.head_b
        loss = F.cross_entropy(logits, y)
        self.log("loss", loss.detach(), on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def configure_optimizers(self) -> Any:
        """AdamW on the trainable parameters with warm-up + cosine (per step)."""
        params = [p for p in self.encoder.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)

        def factor(step: int) -> float:
            if step < self.warmup:
                return (step + 1) / self.warmup
            progress = (step - self.warmup) / max(1, self.steps - self.warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


# LoRA goes on the MLP linears of every residual block. Attention is left out: open_clip's
# nn.MultiheadAttention keeps q/k/v as one raw ``in_proj_weight`` and reads ``out_proj.weight``
# directly in its fused kernel, so a wrapped module would never be called (KnOTS' LoRA zoo also
# adapts q/k/v/o: a deviation, named in the report).
MLP_LAYERS = ("c_fc", "c_proj")


def finetune(
    env: TrainEnv,
    base: nn.Module,
    head: StateDict,
    data: Dataset[Any],
    *,
    regime: str,
    steps: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    warmup: int,
    lora_rank: int,
    lora_scale: float,
    seed: int,
    workers: int = 0,
    label: str = "finetune",
) -> StateDict:
    """Fine-tune a copy of ``base`` through the frozen ``head`` for ``steps`` optimiser steps
    (``regime`` ``"fft"``: every weight; ``"lora"``: a LoRA on every MLP linear layer named in
    :data:`MLP_LAYERS`, merged back). Returns the encoder's full state dict."""
    seed_all(seed)
    model = copy.deepcopy(base)
    model.requires_grad_(regime == "fft")
    if regime == "lora":
        names = [n for n, m in model.named_modules() if n.rsplit(".", 1)[-1] in MLP_LAYERS]
        if not names:
            raise ValueError(f"no MLP linear layer named {MLP_LAYERS} to put a LoRA on")
        wrap_layers(model, lambda layer: LoRA(layer, lora_rank, lora_scale), names)
    module = HeadFinetune(model, head, lr=lr, weight_decay=weight_decay, warmup=warmup, steps=steps)
    loader = DataLoader(
        data,
        batch_size=batch_size,
        shuffle=True,
        drop_last=len(data) >= batch_size,  # type: ignore[arg-type]
        num_workers=workers,
        generator=torch.Generator().manual_seed(seed),
    )
    trainer, _ = make_trainer(env, max_steps=steps, label=label)
    module.train()  # as nets.training.fit does (a step budget, not epochs, so its own Trainer)
    trainer.fit(module, loader)
    model.eval()
    if regime == "lora":
        for _name, sub in list(model.named_modules()):
            for child_name, child in list(sub.named_children()):
                if isinstance(child, LoRA):
                    merged = copy.deepcopy(child.base)
                    merged.weight.data += child.delta().detach()
                    setattr(sub, child_name, merged)
    return state_dict_cpu(model)
