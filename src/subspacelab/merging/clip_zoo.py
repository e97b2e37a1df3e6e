"""The full task zoo on disk: CLIP ViT-B/32 encoders fine-tuned on the 8 vision tasks.

The merge-bench of DC-Merge (Zhang et al., CVPR 2026, arXiv:2603.06242) and Concrete Task
Arithmetic / AdaMerging (Tang et al., arXiv:2312.06173) at the paper's scale, in the standard
task-vector setup (Ilharco et al., arXiv:2212.04089). The ``task_zoo`` study writes it (its full
profile); this module reads it back for every merging method:

* :func:`read_task` — a prepared task's ``index.json`` (class names, ``[path, label]`` per
  split);
* :class:`ImageFiles` / :func:`load_images` — CLIP's evaluation preprocessing (resize, centre
  crop; the normalisation is the encoder's);
* :class:`ImageEncoder` / :func:`clip_encoder` — CLIP's image tower on uint8 images, returning
  L2-normalised features;
* :func:`load_clip_zoo` — one seed of the zoo as a :class:`ClipZoo`, a
  :class:`~subspacelab.merging.bench.Zoo` whose ``backbone()`` is the CLIP image encoder.

open_clip and Pillow are optional (the ``full`` extra) and imported only where they are used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from subspacelab.io import load_tensors, read_json
from subspacelab.merging.algebra import StateDict
from subspacelab.merging.bench import SPLITS, ZOO_SLUG, Zoo

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
BACKBONE = "open_clip"


Samples = list[tuple[str, int]]


@dataclass(frozen=True)
class TaskIndex:
    """One prepared task: class names and ``(relative image path, label)`` per split."""

    classnames: list[str]
    splits: dict[str, Samples]


def read_task(task_dir: Path) -> TaskIndex:
    """A prepared task's index (paths made absolute)."""
    raw = read_json(task_dir / "index.json")
    splits = {
        s: [(str(task_dir / p), int(y)) for p, y in rows] for s, rows in raw["splits"].items()
    }
    return TaskIndex(list(raw["classnames"]), splits)


class ImageFiles(Dataset[tuple[Tensor, Tensor]]):
    """Images as uint8 CHW tensors: shorter side resized to ``size`` (bicubic), centre crop,
    RGB (CLIP's evaluation preprocessing without the normalisation, which the backbone does)."""

    def __init__(self, samples: Samples, size: int) -> None:
        self.samples = samples
        self.size = size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        from PIL import Image

        path, label = self.samples[i]
        with Image.open(path) as im:
            img = im.convert("RGB")
        w, h = img.size
        scale = self.size / min(w, h)
        img = img.resize(
            (max(self.size, round(w * scale)), max(self.size, round(h * scale))),
            Image.Resampling.BICUBIC,
        )
        left, top = (img.size[0] - self.size) // 2, (img.size[1] - self.size) // 2
        img = img.crop((left, top, left + self.size, top + self.size))
        x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
        return x, torch.tensor(label)


def load_images(samples: Samples, size: int, workers: int = 0) -> tuple[Tensor, Tensor]:
    """All of ``samples`` as one uint8 tensor ``(n, 3, size, size)`` and their labels."""
    loader = DataLoader(ImageFiles(samples, size), batch_size=256, num_workers=workers)
    xs, ys = zip(*loader, strict=True) if len(samples) else ((), ())
    if not xs:
        return torch.zeros(0, 3, size, size, dtype=torch.uint8), torch.zeros(0, dtype=torch.long)
    return torch.cat(xs), torch.cat(ys)


class ImageEncoder(nn.Module):
    """An image encoder on uint8 (or [0, 1] float) images: normalises with ``mean``/``std``,
    encodes in chunks of ``chunk`` images and returns L2-normalised features.

    ``encoder`` is CLIP's visual tower in the full profile, or any stand-in in tests.
    """

    def __init__(
        self,
        encoder: nn.Module,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        chunk: int = 256,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        self.chunk = chunk

    def forward(self, x: Tensor) -> Tensor:
        """L2-normalised features of a batch of images."""
        device = self.mean.device
        parts = []
        for part in x.split(self.chunk):
            part = part.to(device)
            if part.dtype == torch.uint8:
                part = part.float() / 255.0
            feats = self.encoder((part - self.mean) / self.std)
            parts.append(F.normalize(feats, dim=-1))
        return torch.cat(parts)


def clip_model(arch: str, pretrained: str | None) -> Any:
    """An open_clip CLIP model (``pretrained=None``: the architecture only)."""
    import open_clip  # optional: the `full` extra

    model = open_clip.create_model(arch, pretrained=pretrained or None)
    model.eval()
    return model


def clip_encoder(arch: str, pretrained: str | None) -> ImageEncoder:
    """CLIP's image tower wrapped as an :class:`ImageEncoder`."""
    return ImageEncoder(clip_model(arch, pretrained).visual)


@dataclass(frozen=True)
class ClipZoo(Zoo):
    """A :class:`Zoo` whose backbone is the CLIP image encoder of ``arch``."""

    arch: str = "ViT-B-32"

    def backbone(self) -> nn.Module:
        """CLIP's image encoder (weights come as ``params``)."""
        return clip_encoder(self.arch, None)


def load_clip_zoo(data_dir: Path, zoo_dir: Path, seed: int) -> Zoo:
    """Seed ``seed`` of the full task zoo: weights, zero-shot heads and the val/test images
    (uint8; the training images stay on disk)."""
    index = read_json(zoo_dir / "index.json")
    tasks, regimes, size = index["tasks"], index["regimes"], int(index["image_size"])
    m, _ = load_tensors(zoo_dir / f"seed{seed}.safetensors", study=ZOO_SLUG, kind="zoo")

    def pre(p: str) -> StateDict:
        return {k[len(p) :]: v for k, v in m.items() if k.startswith(p)}

    x: dict[str, list[Tensor]] = {s: [] for s in SPLITS}
    y: dict[str, list[Tensor]] = {s: [] for s in SPLITS}
    for task in tasks:
        ti = read_task(data_dir / task)
        for s in ("val", "test"):
            xs, ys = load_images(ti.splits[s], size)
            x[s].append(xs)
            y[s].append(ys)
    return ClipZoo(
        tasks=list(tasks),
        hidden=[],
        lora_rank=int(index["lora_rank"]),
        base=pre("base."),
        heads={"h1": [pre(f"head.h1.{t}.") for t in tasks]},
        finetuned={("h1", r): [pre(f"ft.h1.{r}.{t}.") for t in tasks] for r in regimes},
        x=x,
        y=y,
        arch=str(index["arch"]),
    )
