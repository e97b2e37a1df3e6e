"""dsl's full profile (arXiv 2206.09068, spec §7): ISIC-2019 and a ResNet-50 trunk.

ISIC-2019's training set is a zip of JPEGs (``ISIC_2019_Training_Input/<image>.jpg``) and a CSV
of one-hot diagnoses (``image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK``; UNK is empty in training, so
8 classes). Neither publishes a checksum: both are fetched only against the SHA-256 pins of
params.yaml (``python -m subspacelab check`` lists them while empty). Pillow and torchvision come
from the optional ``full`` extra and are imported inside the functions that need them.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from subspacelab.api import StepOutput

if TYPE_CHECKING:
    from subspacelab.api import StepContext
    from subspacelab.studies.dsl.config import DslConfig

ISIC_CLASSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")


def read_isic_labels(path: Path) -> tuple[list[str], np.ndarray]:
    """Image ids and class indices (into :data:`ISIC_CLASSES`) of an ISIC-2019 ground-truth CSV;
    a row that is not one-hot over the eight classes is refused, naming it."""
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("image", *ISIC_CLASSES) if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path.name}: missing columns {missing}")
        names, labels = [], []
        for i, row in enumerate(reader, start=2):
            hot = np.array([float(row[c]) for c in ISIC_CLASSES])
            if sorted(hot.tolist()) != [0.0] * 7 + [1.0]:
                raise ValueError(f"{path.name} line {i}: not one-hot over {ISIC_CLASSES}")
            names.append(row["image"])
            labels.append(int(hot.argmax()))
    if not names:
        raise ValueError(f"{path.name}: no images")
    return names, np.asarray(labels, dtype=np.int64)


def load_images(folder: Path, names: list[str], size: int) -> torch.Tensor:
    """``<folder>/<name>.jpg`` resized (shorter side) and centre-cropped to ``size``², as uint8
    (n, 3, size, size)."""
    from PIL import Image

    out = torch.empty(len(names), 3, size, size, dtype=torch.uint8)
    for i, name in enumerate(names):
        path = folder / f"{name}.jpg"
        if not path.is_file():
            raise FileNotFoundError(f"ISIC image {path.name} listed in the CSV is missing")
        with Image.open(path) as img:
            rgb = img.convert("RGB")
            w, h = rgb.size
            scale = size / min(w, h)
            rgb = rgb.resize((max(size, round(w * scale)), max(size, round(h * scale))))
            w, h = rgb.size
            left, top = (w - size) // 2, (h - size) // 2
            arr = np.asarray(rgb.crop((left, top, left + size, top + size)))
        out[i] = torch.from_numpy(arr.copy()).permute(2, 0, 1)
    return out


def split_indices(n: int, sizes: tuple[int, int, int], seed: int) -> list[np.ndarray]:
    """Disjoint seeded train / validation / test indices of the given sizes."""
    if sum(sizes) > n:
        raise ValueError(f"train + val + test = {sum(sizes)} exceeds the {n} images")
    order = np.random.default_rng(seed).permutation(n)
    a, b = sizes[0], sizes[0] + sizes[1]
    return [order[:a], order[a:b], order[b : b + sizes[2]]]


def data(ctx: StepContext[DslConfig]) -> StepOutput:
    """Fetch ISIC-2019 against its pins, resize, and save the seeded splits as the mini data step
    does; ISIC-2019 has no lesion masks, so ``m_test`` is empty (Dice needs ISIC-2018 masks)."""
    from subspacelab.data.download import Resource, fetch, safe_extract

    d = ctx.cfg.data
    root = ctx.out / "downloads"
    csv_path = fetch(
        Resource(d.labels_url, Path(d.labels_url).name, sha256=d.labels_sha256), root, ctx.progress
    )
    archive = fetch(
        Resource(d.images_url, Path(d.images_url).name, sha256=d.images_sha256), root, ctx.progress
    )
    folder = root / "images"
    if not folder.exists():
        safe_extract(archive, folder)
    names, labels = read_isic_labels(csv_path)
    jpgs = next(p.parent for p in folder.rglob("*.jpg"))
    images = load_images(jpgs, names, d.size)
    y = torch.from_numpy(labels)
    for seed in ctx.seeded():
        tr, va, te = split_indices(len(names), (d.n_train, d.n_val, d.n_test), seed)
        ctx.save(
            f"seed{seed}",
            {
                "x_train": images[tr],
                "y_train": y[tr],
                "x_val": images[va],
                "y_val": y[va],
                "x_test": images[te],
                "y_test": y[te],
                "m_test": torch.zeros(len(te), d.size, d.size, dtype=torch.bool),
                "n_classes": torch.tensor(len(ISIC_CLASSES)),
            },
        )
    return StepOutput()


def resnet50_trunk() -> nn.Module:
    """torchvision's ImageNet ResNet-50 without pooling and classifier (2048 × 7 × 7 at 224²)."""
    from torchvision.models import ResNet50_Weights, resnet50

    net = resnet50(weights=ResNet50_Weights.IMAGENET1K_V2)
    return nn.Sequential(*list(net.children())[:-2])
