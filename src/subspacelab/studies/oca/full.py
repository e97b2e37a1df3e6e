"""Full-scale OCA (arXiv:2408.08793): CIFAR-100, old model on 50 classes, new models on 100.

The paper's CIFAR-100 setting (configs/train/cifar100_OCA.yaml of the official code): a ResNet
with the CIFAR stem (3×3 stride-1 first convolution, no max-pool) whose pooled features go
through a linear embedding (128-d for the old model and BCT, 128 + 32 for the independent model
and OCA), L2-normalised, then (OCA only) the orthogonal layer and the classifier. Adam with
weight decay, a linear warm-up then cosine decay per epoch, random crop (padding 4) and
horizontal flip. The steps write the same files as the miniature (old model + prototypes, then
``results.json`` of the retrieval matrix), so the study's evaluate step and claims run unchanged.

CIFAR-100 comes through :mod:`subspacelab.data.cifar` (MD5-pinned download, safe extraction);
torchvision (the ResNet) is optional (the ``full`` extra) and imported only in
:func:`resnet_trunk`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from subspacelab.adapters import OrthogonalLayer, bct_loss, oca_loss
from subspacelab.api import StepContext, StepOutput, fit, seed_all, tensor_loader, write_json
from subspacelab.data.cifar import fetch_cifar, load_cifar
from subspacelab.studies.oca.config import OcaConfig
from subspacelab.studies.oca.core import retrieval

ARMS = ("independent", "bct", "oca")
CIFAR_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR_STD = (0.2673, 0.2564, 0.2762)


def resnet_trunk(arch: str) -> tuple[nn.Module, int]:
    """A torchvision ResNet with the CIFAR stem and no classifier; (trunk, feature width)."""
    import torchvision  # optional: the `full` extra

    net = getattr(torchvision.models, arch)(weights=None)
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    width = int(net.fc.in_features)
    net.fc = nn.Identity()
    return net, width


class ImageEmbedder(nn.Module):
    """trunk → linear embedding (L2-normalised) → [orthogonal layer] → classifier: the
    interface of the miniature's ``Embedder`` (``embed``, ``forward -> (logits, h)``,
    ``ortho``) on images. ``trunk`` maps images to ``width`` features (a ResNet, or a stand-in)."""

    def __init__(
        self, trunk: nn.Module, width: int, dim: int, n_classes: int, ortho: bool, bias: bool
    ) -> None:
        super().__init__()
        self.trunk = trunk
        self.embed_layer = nn.Linear(width, dim)
        self.ortho = OrthogonalLayer(dim, bias=bias) if ortho else None
        self.classifier = nn.Linear(dim, n_classes)
        self.register_buffer("mean", torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CIFAR_STD).view(1, 3, 1, 1), persistent=False)

    def embed(self, x: Tensor) -> Tensor:
        """L2-normalised embedding h of images in [0, 1]."""
        return F.normalize(self.embed_layer(self.trunk((x - self.mean) / self.std)), dim=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(class logits, h)."""
        h = self.embed(x)
        return self.classifier(self.ortho(h) if self.ortho is not None else h), h


def augment(x: Tensor, generator: torch.Generator, pad: int = 4) -> Tensor:
    """Random crop with zero padding ``pad`` and random horizontal flip, per image."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    rows = (dy[:, None] + torch.arange(h)[None]).to(x.device)
    cols = (dx[:, None] + torch.arange(w)[None]).to(x.device)
    cols = torch.where(flip.to(x.device)[:, None], cols.flip(1), cols)
    idx = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def arm_loss(arm: str, protos: Tensor) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """The loss of one arm on (logits, h, labels): CE for the old model, label-smoothed CE for
    the independent model, BCT's and OCA's losses against the old prototypes."""

    def loss(logits: Tensor, h: Tensor, y: Tensor) -> Tensor:
        if arm == "oca":
            return oca_loss(logits, h, protos.to(h.device), y)
        if arm == "bct":
            return bct_loss(logits, h, protos.to(h.device), y)
        if arm == "old":
            return F.cross_entropy(logits, y)
        return F.cross_entropy(logits, y, label_smoothing=0.1)

    return loss


class ArmTraining(L.LightningModule):
    """One model of one arm: augmented mini-batches, Adam with weight decay, linear warm-up
    then cosine decay (per epoch); records ‖QᵀQ − I‖_F after every step for OCA."""

    def __init__(
        self,
        net: ImageEmbedder,
        loss: Callable[[Tensor, Tensor, Tensor], Tensor],
        *,
        lr: float,
        weight_decay: float,
        warmup_epochs: int,
        epochs: int,
        seed: int,
    ) -> None:
        super().__init__()
        self.net, self.loss_fn = net, loss
        self.lr, self.weight_decay = lr, weight_decay
        self.warmup, self.epochs = warmup_epochs, epochs
        self.generator = torch.Generator().manual_seed(seed)
        self.ortho_errors: list[float] = []

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """The arm's loss on an augmented batch."""
        x, y = batch
        logits, h = self.net(augment(x, self.generator))
        loss = self.loss_fn(logits, h, y)
        self.log("loss", loss.detach(), on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Monitor Q's orthogonality after the optimiser step."""
        if self.net.ortho is not None:
            self.ortho_errors.append(self.net.ortho.orthogonality_error())

    def configure_optimizers(self) -> Any:
        """Adam (weight decay) with warm-up + cosine per epoch."""
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)

        def factor(epoch: int) -> float:
            if epoch < self.warmup:
                return (epoch + 1) / (self.warmup + 1)
            t = (epoch - self.warmup) / max(1, self.epochs - self.warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

        return {
            "optimizer": opt,
            "lr_scheduler": torch.optim.lr_scheduler.LambdaLR(opt, factor),
        }


TrunkFactory = Callable[[], tuple[nn.Module, int]]


def train_arm(
    env: Any,
    make_trunk: TrunkFactory,
    arm: str,
    x: Tensor,
    y: Tensor,
    *,
    dim: int,
    n_classes: int,
    ortho_bias: bool,
    protos: Tensor,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    warmup_epochs: int,
    seed: int,
) -> tuple[ImageEmbedder, list[float]]:
    """Train one arm's model from scratch; returns it (eval mode) and its orthogonality log."""
    seed_all(seed)
    trunk, width = make_trunk()
    net = ImageEmbedder(trunk, width, dim, n_classes, arm == "oca", ortho_bias)
    module = ArmTraining(
        net,
        arm_loss(arm, protos),
        lr=lr,
        weight_decay=weight_decay,
        warmup_epochs=warmup_epochs,
        epochs=epochs,
        seed=seed,
    )
    fit(
        env, module, tensor_loader(x, y, batch_size=batch_size, seed=seed), epochs=epochs, label=arm
    )
    return net, module.ortho_errors


@torch.no_grad()
def embed_all(net: ImageEmbedder, x: Tensor, device: torch.device, batch: int = 500) -> Tensor:
    """Embeddings of ``x`` in batches, on CPU."""
    net.to(device).eval()
    return torch.cat([net.embed(xb.to(device)).cpu() for xb in x.split(batch)])


def _cifar(ctx: StepContext[OcaConfig]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    c = ctx.cfg.data.cifar100
    if c is None:
        raise ValueError("oca.full.data.cifar100: must be set for the full profile")
    extracted = fetch_cifar("cifar100", Path(c.root).expanduser(), ctx.progress)
    s = load_cifar(extracted, "cifar100")
    return (
        torch.as_tensor(s.x_train),
        torch.as_tensor(s.y_train),
        torch.as_tensor(s.x_test),
        torch.as_tensor(s.y_test),
    )


def _trunk_factory(ctx: StepContext[OcaConfig]) -> TrunkFactory:
    arch = ctx.cfg.model.resnet.arch
    return lambda: resnet_trunk(arch)


def old_step(ctx: StepContext[OcaConfig], make_trunk: TrunkFactory | None = None) -> StepOutput:
    """The old model on the first ``n_old`` classes and the prototypes (old features' class
    means over the new training set), per seed."""
    m, t, c = ctx.cfg.model, ctx.cfg.train, ctx.cfg.data.cifar100
    sched = t.schedule
    x, y, _, _ = _cifar(ctx)
    make_trunk = make_trunk or _trunk_factory(ctx)
    keep = y < c.n_old
    for seed in ctx.seeds:
        net, _ = train_arm(
            ctx,
            make_trunk,
            "old",
            x[keep],
            y[keep],
            dim=m.d_old,
            n_classes=c.n_old,
            ortho_bias=False,
            protos=torch.zeros(0),
            epochs=t.epochs,
            batch_size=t.batch_size,
            lr=t.lr,
            weight_decay=sched.weight_decay,
            warmup_epochs=sched.warmup_epochs,
            seed=seed,
        )
        feats = embed_all(net, x, ctx.device)
        n_classes = int(y.max()) + 1
        protos = torch.stack([feats[y == k].mean(0) for k in range(n_classes)])
        tensors = {f"net.{k}": v.cpu() for k, v in net.state_dict().items()}
        ctx.save(f"seed{seed}", {**tensors, "prototypes": protos}, kind="old")
        ctx.progress(f"seed {seed}: old model trained on {int(keep.sum())} images")
    return StepOutput()


def fit_step(ctx: StepContext[OcaConfig], make_trunk: TrunkFactory | None = None) -> StepOutput:
    """The new arms on all classes and the retrieval matrix on the test set, per seed (the
    miniature's ``results.json``)."""
    m, t, c = ctx.cfg.model, ctx.cfg.train, ctx.cfg.data.cifar100
    sched = t.schedule
    x, y, xt, yt = _cifar(ctx)
    make_trunk = make_trunk or _trunk_factory(ctx)
    n_classes = int(y.max()) + 1
    results: dict[str, dict[str, float]] = {}
    ortho: dict[str, list[float]] = {}
    for seed in ctx.seeds:
        saved = ctx.load(f"seed{seed}", kind="old")
        trunk, width = make_trunk()
        old = ImageEmbedder(trunk, width, m.d_old, c.n_old, False, False)
        old.load_state_dict({k[4:]: v for k, v in saved.items() if k.startswith("net.")})
        feats = {"old": embed_all(old, xt, ctx.device)}
        row: dict[str, float] = {}
        for arm in ARMS:
            net, errors = train_arm(
                ctx,
                make_trunk,
                arm,
                x,
                y,
                dim=m.d_old if arm == "bct" else m.d_old + m.extra_dims,
                n_classes=n_classes,
                ortho_bias=m.ortho_bias,
                protos=saved["prototypes"],
                epochs=t.epochs,
                batch_size=t.batch_size,
                lr=t.lr,
                weight_decay=sched.weight_decay,
                warmup_epochs=sched.warmup_epochs,
                seed=seed,
            )
            if arm == "oca":
                row["ortho_error_max"] = max(errors)
                ortho[str(seed)] = errors
            feats[arm] = embed_all(net, xt, ctx.device)
        for q in ("old", *ARMS):
            for g in {"old", q}:
                top1, ap = retrieval(feats[q], feats[g], yt)
                row[f"{q}_to_{g}/map"], row[f"{q}_to_{g}/top1"] = ap, top1
        results[str(seed)] = row
        ctx.progress(
            f"seed {seed}: mAP old→old {row['old_to_old/map']:.3f} "
            f"OCA→old {row['oca_to_old/map']:.3f} OCA→OCA {row['oca_to_oca/map']:.3f}"
        )
    write_json(ctx.out / "results.json", results)
    write_json(ctx.out / "ortho_errors.json", ortho)
    return StepOutput()
