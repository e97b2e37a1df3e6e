"""Full-scale FLoRA (arXiv:2405.14739): VTAB-1k on ConvNeXt-V2-B (timm, IN-22k fine-tuned).

* :func:`pretrain_step` (the chain's first step; the backbone itself comes pretrained from timm)
  downloads the VTAB-1k archive in the layout common to PEFT papers (NOAH's ``vtab-1k``:
  ``<task>/train800val200.txt`` and ``<task>/test.txt``, lines ``<image path> <label>``),
  verifies it against the SHA-256 pinned in params.yaml (none is published: the pin is left
  empty, so the download refuses to run until one is set), extracts it safely and writes
  ``index.json``.
* :func:`fit_step` adapts the backbone per task with each arm (linear probe, full fine-tuning,
  and LoRA / FLoRA at the same trainable-parameter budgets, fractions of the adaptable
  weights), trains through Lightning (AdamW, linear warm-up then cosine per epoch) and writes
  the miniature's ``results.json`` so the study's evaluate step and claims run unchanged.

Adapters go on every dense linear and convolution of the backbone's stages (the pointwise MLPs
and the down-sampling convolutions); depthwise convolutions (``groups > 1``) and the
classification head are left to the arm's protocol. Conv ranks are ``[r, r, s, s]``, linear
ranks ``[r, r]`` (paper §3). timm is optional (the ``full`` extra), imported in
:func:`convnext`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from subspacelab.adapters.budget import make_adapter, match_budgets
from subspacelab.api import (
    StepContext,
    StepOutput,
    TrainEnv,
    accuracy,
    fit,
    read_json,
    seed_all,
    write_json,
)
from subspacelab.data.download import Resource, fetch, safe_extract
from subspacelab.studies.flora.config import FloraConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPLIT_FILES = {"train": "train800val200.txt", "test": "test.txt"}

Samples = list[tuple[str, int]]
Layer = nn.Linear | nn.Conv2d


# ---------------------------------------------------------------- VTAB-1k


def read_vtab_task(task_dir: Path) -> dict[str, Samples]:
    """``train`` (800 + 200) and ``test`` of one VTAB-1k task as (absolute path, label)."""
    out = {}
    for split, name in SPLIT_FILES.items():
        rows = []
        for line in (task_dir / name).read_text().splitlines():
            if line.strip():
                path, label = line.rsplit(maxsplit=1)
                rows.append((str(task_dir / path), int(label)))
        out[split] = rows
    return out


def find_task_dirs(root: Path, tasks: list[str]) -> dict[str, Path]:
    """Each task's folder under an extracted VTAB-1k archive (at any depth)."""
    found = {p.parent.name: p.parent for p in root.rglob(SPLIT_FILES["train"])}
    missing = [t for t in tasks if t not in found]
    if missing:
        raise FileNotFoundError(f"{root}: no VTAB-1k folder for {missing}")
    return {t: found[t] for t in tasks}


class VtabImages(Dataset[tuple[Tensor, Tensor]]):
    """Images resized to ``size``×``size`` (the VTAB protocol: no crop), ImageNet-normalised."""

    def __init__(self, samples: Samples, size: int) -> None:
        self.samples, self.size = samples, size
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        from PIL import Image

        path, label = self.samples[i]
        with Image.open(path) as im:
            img = im.convert("RGB").resize((self.size, self.size), Image.Resampling.BICUBIC)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (x - self.mean) / self.std, torch.tensor(label)


# ---------------------------------------------------------------- backbone and adapters


def convnext(name: str, n_classes: int) -> nn.Module:
    """A pretrained timm model with a fresh ``n_classes`` head (``reset_classifier``)."""
    import timm  # optional: the `full` extra

    return timm.create_model(name, pretrained=True, num_classes=n_classes)


def adaptable_layers(model: nn.Module, head: str = "head") -> list[tuple[str, Layer]]:
    """Dense linear and conv layers outside the head (depthwise/grouped convs excluded)."""
    return [
        (n, m)
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear | nn.Conv2d)
        and not n.startswith(head)
        and not (isinstance(m, nn.Conv2d) and m.groups > 1)
    ]


def adapt(
    model: nn.Module, kind: str, rank: int, spatial: int, scale: float, dropout: float
) -> None:
    """Freeze everything but the head and put a LoRA/FLoRA (``adapters.budget.make_adapter``:
    the same scale and input dropout for both) on every adaptable layer."""
    targets = adaptable_layers(model)
    for p in model.parameters():
        p.requires_grad_(False)
    head = model.get_submodule("head")
    head.requires_grad_(True)
    for name, layer in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, make_adapter(kind, layer, rank, spatial, scale, dropout))


class PeftTraining(L.LightningModule):
    """Cross-entropy on the trainable parameters; AdamW, warm-up then cosine per epoch."""

    def __init__(
        self, net: nn.Module, *, lr: float, weight_decay: float, warmup_epochs: int, epochs: int
    ) -> None:
        super().__init__()
        self.net = net
        self.lr, self.weight_decay = lr, weight_decay
        self.warmup, self.epochs = warmup_epochs, epochs

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """The loss of this batch."""
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("loss", loss.detach(), on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def configure_optimizers(self) -> Any:
        """AdamW with warm-up + cosine (per epoch)."""
        params = [p for p in self.net.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)

        def factor(epoch: int) -> float:
            if epoch < self.warmup:
                return (epoch + 1) / (self.warmup + 1)
            t = (epoch - self.warmup) / max(1, self.epochs - self.warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.LambdaLR(opt, factor)}


def train_arm(
    env: TrainEnv,
    net: nn.Module,
    data: Dataset[Any],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    warmup_epochs: int,
    seed: int,
    workers: int = 0,
    label: str = "arm",
) -> None:
    """Train ``net``'s trainable parameters on ``data`` (shuffled by ``seed``)."""
    module = PeftTraining(
        net, lr=lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs, epochs=epochs
    )
    loader = DataLoader(
        data,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        generator=torch.Generator().manual_seed(seed),
    )
    fit(env, module, loader, epochs=epochs, label=label)


@torch.no_grad()
def evaluate(net: nn.Module, data: Dataset[Any], device: torch.device, batch: int = 256) -> float:
    """Top-1 accuracy of ``net`` on ``data``."""
    net.to(device).eval()
    logits, labels = [], []
    for x, y in DataLoader(data, batch_size=batch):
        logits.append(net(x.to(device)).cpu())
        labels.append(y)
    return accuracy(torch.cat(logits), torch.cat(labels))


# ---------------------------------------------------------------- steps

ModelFactory = Callable[[int], nn.Module]


def pretrain_step(ctx: StepContext[FloraConfig]) -> StepOutput:
    """Download (pinned), verify and extract VTAB-1k; ``index.json`` names each task's folder."""
    v = ctx.cfg.data.vtab
    if v is None:
        raise ValueError("flora.full.data.vtab: must be set for the full profile")
    cache = Path(v.root).expanduser()
    archive = fetch(Resource(v.url, v.filename, sha256=v.sha256 or None), cache, ctx.progress)
    target = cache / "extracted"
    if not target.is_dir():
        safe_extract(archive, target)
    dirs = find_task_dirs(target, list(v.tasks))
    counts = {}
    for task, folder in dirs.items():
        splits = read_vtab_task(folder)
        counts.update({f"{task}_{s}": float(len(r)) for s, r in splits.items()})
    write_json(ctx.out / "index.json", {t: str(p) for t, p in dirs.items()})
    return StepOutput(metrics=counts)


def fit_step(ctx: StepContext[FloraConfig], make_model: ModelFactory | None = None) -> StepOutput:
    """Every arm on every task (per seed); the miniature's ``results.json``."""
    v, m, t = ctx.cfg.data.vtab, ctx.cfg.model, ctx.cfg.train
    sched = t.schedule
    if v is None or m.convnext is None or sched is None:
        raise ValueError("flora.full: data.vtab, model.convnext and train.schedule must be set")
    name = m.convnext
    make_model = make_model or (lambda n: convnext(name, n))
    dirs = {k: Path(p) for k, p in read_json(ctx.inputs["pretrain"] / "index.json").items()}
    results: dict[str, dict[str, dict[str, float]]] = {}
    for seed in ctx.seeds:
        for i, task in enumerate(v.tasks):
            splits = read_vtab_task(dirs[task])
            n_classes = 1 + max(y for _, y in splits["train"] + splits["test"])
            train = VtabImages(splits["train"], v.image_size)
            test = VtabImages(splits["test"], v.image_size)
            seed_all(seed * 100 + i)
            base = make_model(n_classes)
            layers = [layer for _, layer in adaptable_layers(base)]
            total = sum(layer.weight.numel() for layer in layers)
            arms: list[tuple[str, str, int]] = [
                ("linear_probe", "probe", 0),
                ("full_ft", "full", 0),
            ]
            matches = match_budgets(layers, [round(b * total) for b in m.budgets], m.spatial_rank)
            for b, match in zip(m.budgets, matches, strict=True):
                arms += [
                    (f"flora_{b:g}", "flora", match.flora_rank),
                    (f"lora_{b:g}", "lora", match.lora_rank),
                ]
            row: dict[str, dict[str, float]] = {}
            for arm, kind, rank in arms:
                seed_all(seed * 100 + i)
                net = copy.deepcopy(base)
                if kind == "probe":
                    net.requires_grad_(False)
                    net.get_submodule("head").requires_grad_(True)
                elif kind != "full":
                    adapt(net, kind, rank, m.spatial_rank, m.scale, m.dropout)
                train_arm(
                    ctx,
                    net,
                    train,
                    epochs=t.epochs,
                    batch_size=t.batch_size,
                    lr=t.lr if kind in ("full", "probe") else t.peft_lr,
                    weight_decay=sched.weight_decay,
                    warmup_epochs=sched.warmup_epochs,
                    seed=seed * 100 + i,
                    workers=sched.workers,
                    label=f"{task} {arm}",
                )
                head = sum(p.numel() for p in net.get_submodule("head").parameters())
                trainable = sum(p.numel() for p in net.parameters() if p.requires_grad) - head
                row[arm] = {
                    "acc": evaluate(net, test, ctx.device),
                    "params": float(trainable),
                    "budget_frac": trainable / total,
                    "rank": float(rank),
                }
            results[f"{seed}/{task}"] = row
            ctx.progress(
                f"seed {seed} {task}: " + " ".join(f"{a} {r['acc']:.3f}" for a, r in row.items())
            )
    write_json(ctx.out / "results.json", results)
    return StepOutput(metrics={"runs": float(len(results))})
