"""Full-scale MHS-VM (arXiv 2406.05992): ISIC 2017 / 2018 lesion segmentation in VM-UNet's split.

:func:`data_full` (the chain's data step in the full profile) downloads the prepared archive named
in params.yaml (VM-UNet's README links the ISIC archive originals split 7:3; no checksum is
published, so the SHA-256 pin stays empty and the step refuses to run until one is set),
verifies it, extracts it safely and reads VM-UNet's layout: ``<dataset>/train/images/*.jpg``,
``train/masks/*.png``, ``val/images``, ``val/masks`` (images and masks paired in sorted order,
as VM-UNet's ``NPY_datasets``), resized to ``data.size`` (bilinear images, nearest masks,
mask > 127 = lesion). The fit and report steps are the miniature's, on these arrays. Pillow is
optional (the ``full`` extra), imported in :func:`read_split`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from subspacelab.api import StepOutput
from subspacelab.data.download import Resource, fetch, safe_extract

if TYPE_CHECKING:
    from subspacelab.api import StepContext
    from subspacelab.studies.mhs_vm.config import MhsVmConfig

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def find_split(root: Path, split: str) -> Path:
    """The folder holding ``<split>/images`` and ``<split>/masks`` under ``root`` (any depth)."""
    for images in sorted(root.rglob("images")):
        if images.parent.name == split and (images.parent / "masks").is_dir():
            return images.parent
    raise FileNotFoundError(f"{root}: no {split}/images with {split}/masks (VM-UNet's layout)")


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def read_split(folder: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3, size, size) float32 images in [0, 1] and (n, size, size) float32 {0, 1} masks of
    one split folder, paired in sorted order."""
    from PIL import Image

    images, masks = _files(folder / "images"), _files(folder / "masks")
    if not images or len(images) != len(masks):
        raise ValueError(f"{folder}: {len(images)} images and {len(masks)} masks; need equal, > 0")
    xs, ys = [], []
    for ip, mp in zip(images, masks, strict=True):
        with Image.open(ip) as im:
            xs.append(np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR)))
        with Image.open(mp) as im:
            ys.append(np.asarray(im.convert("L").resize((size, size), Image.NEAREST)) > 127)
    x = np.stack(xs).astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    return x, np.stack(ys).astype(np.float32)


def data_full(ctx: StepContext[MhsVmConfig]) -> StepOutput:
    """Download (pinned), extract and read the ISIC split; the same arrays for every seed."""
    d = ctx.cfg.data
    if d.source != "isic":
        raise ValueError(f"mhs_vm.full.data.source must be 'isic', got {d.source!r}")
    cache = Path(d.root).expanduser()
    archive = fetch(Resource(d.url, d.filename, sha256=d.sha256 or None), cache, ctx.progress)
    target = cache / "extracted"
    if not target.is_dir():
        safe_extract(archive, target)
    x_train, y_train = read_split(find_split(target, "train"), d.size)
    x_test, y_test = read_split(find_split(target, "val"), d.size)
    train = torch.cat([torch.from_numpy(x_train), torch.from_numpy(y_train)[:, None]], 1)
    for seed in ctx.seeded():
        ctx.save(
            f"seed{seed}",
            {
                "train": train,
                "x_test": torch.from_numpy(x_test),
                "y_test": torch.from_numpy(y_test),
            },
        )
    return StepOutput(metrics={"n_train": float(len(train)), "n_test": float(len(x_test))})
