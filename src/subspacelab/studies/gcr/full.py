"""Full-scale pieces of the GCR study (arXiv:2308.01547): ImageNet-1K, ResNet50-D, CIFAR images.

ImageNet cannot be downloaded without a login, so the user places the three official archives in
a directory named in params; :func:`verify_archives` checks them against the pinned checksums
(never deleting a user's file) and records their SHA-256, and :func:`prepare_imagenet` unpacks
them into the ImageFolder layout ``train/<wnid>/`` and ``val/<wnid>/`` with safe extraction.
torchvision (ImageFolder, transforms) and timm (ResNet50-D) are optional (the ``full`` extra) and
imported only inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from subspacelab.data.download import DownloadError, safe_extract
from subspacelab.studies.gcr.config import IMAGENET_ARCHIVES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_DEVKIT_DATA = "ILSVRC2012_devkit_t12/data"


def _digests(path: Path, chunk: int = 1 << 22) -> dict[str, str]:
    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            md5.update(block)
            sha.update(block)
    return {"md5": md5.hexdigest(), "sha256": sha.hexdigest()}


def verify_archives(
    root: Path, checksums: dict[str, str], progress: Callable[[str], None] = lambda _m: None
) -> dict[str, dict[str, Any]]:
    """Check each archive in ``root`` against its pinned ``"md5:<hex>"``/``"sha256:<hex>"``.

    Returns a manifest ``{file: {bytes, md5, sha256, pinned}}`` (the SHA-256 is recorded even when
    only an MD5 is published). A missing or mismatching file raises DownloadError naming it;
    nothing is deleted, since these files cannot be downloaded again automatically.
    """
    missing = [name for name in checksums if not (root / name).is_file()]
    if missing:
        raise DownloadError(
            f"{root}: missing {', '.join(missing)}; download them from https://image-net.org "
            "(registration required) into this directory, which params names as "
            "gcr.full.data.imagenet.root"
        )
    manifest = {}
    for name, pinned in sorted(checksums.items()):
        progress(f"checking {name}")
        algo, expected = pinned.split(":", 1)
        got = _digests(root / name)
        if got[algo] != expected:
            raise DownloadError(
                f"{root / name}: {algo} mismatch (expected {expected}, got {got[algo]}); "
                "the file is corrupt or a different release"
            )
        manifest[name] = {"bytes": (root / name).stat().st_size, "pinned": pinned, **got}
    return manifest


def _leaf_synsets(meta_mat: Path) -> dict[int, str]:
    """ILSVRC2012_ID -> WNID of the 1000 leaf classes, from the devkit's meta.mat."""
    from scipy.io import loadmat

    synsets = loadmat(str(meta_mat), squeeze_me=True)["synsets"]
    out = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets if int(s["num_children"]) == 0}
    if not out:
        raise DownloadError(f"{meta_mat}: no leaf synsets")
    return out


def prepare_imagenet(
    root: Path, dest: Path, progress: Callable[[str], None] = lambda _m: None
) -> dict[str, int]:
    """Unpack verified ILSVRC2012 archives from ``root`` into ``dest/{train,val}/<wnid>/``.

    Returns the number of images per split. Every archive goes through :func:`safe_extract`.
    """
    train_tar, val_tar, devkit_tar = (root / name for name in IMAGENET_ARCHIVES)
    work = dest / ".prepare"
    if work.exists():
        shutil.rmtree(work)
    progress("extracting the devkit")
    safe_extract(devkit_tar, work / "devkit")
    wnids = _leaf_synsets(work / "devkit" / _DEVKIT_DATA / "meta.mat")
    truth_file = work / "devkit" / _DEVKIT_DATA / "ILSVRC2012_validation_ground_truth.txt"
    truth = [int(line) for line in truth_file.read_text().split()]

    progress("extracting the validation images")
    val_files = sorted(p for p in safe_extract(val_tar, work / "val") if p.is_file())
    if len(val_files) != len(truth):
        raise DownloadError(f"{val_tar}: {len(val_files)} images but {len(truth)} labels")
    for path, label in zip(val_files, truth, strict=True):
        target = dest / "val" / wnids[label] / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        path.replace(target)

    progress("extracting the training archives (one per class)")
    inner = sorted(p for p in safe_extract(train_tar, work / "train") if p.suffix == ".tar")
    unknown = sorted({p.stem for p in inner} - set(wnids.values()))
    if unknown:
        raise DownloadError(f"{train_tar}: class archives {unknown[:3]} not in the devkit")
    n_train = 0
    for i, class_tar in enumerate(inner):
        n_train += len(safe_extract(class_tar, dest / "train" / class_tar.stem))
        class_tar.unlink()
        if (i + 1) % 100 == 0:
            progress(f"{i + 1}/{len(inner)} classes extracted")
    shutil.rmtree(work)
    return {"train": n_train, "val": len(val_files)}


def imagenet_split(prepared: Path, split: str, image_size: int, resize_size: int) -> Any:
    """A torchvision ImageFolder of ``prepared/<split>`` with the official GCR pipelines.

    train: RandomResizedCrop + horizontal flip; val: resize the shorter side, centre crop.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be train or val, got {split!r}")
    try:
        from torchvision import datasets, transforms
    except ImportError as exc:
        raise ImportError(
            "the full profile needs torchvision: pip install 'subspacelab[full]'"
        ) from exc
    if split == "train":
        crop = [transforms.RandomResizedCrop(image_size), transforms.RandomHorizontalFlip()]
    else:
        crop = [transforms.Resize(resize_size), transforms.CenterCrop(image_size)]
    norm = [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return datasets.ImageFolder(str(prepared / split), transform=transforms.Compose(crop + norm))


class ResizedImages(Dataset):
    """Float NCHW images in [0, 1] (e.g. CIFAR), resized to the backbone's input and normalised.

    Bilinear, antialiased resizing to ``image_size`` and ImageNet normalisation, done in torch so
    the transfer sets need no torchvision.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, image_size: int) -> None:
        if images.ndim != 4 or images.shape[1] != 3 or labels.shape != (images.shape[0],):
            raise ValueError(f"expected (n, 3, H, W) images and (n,) labels, got {images.shape}")
        self.images, self.labels, self.size = images, labels, image_size
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        img = torch.from_numpy(np.ascontiguousarray(self.images[i])).unsqueeze(0)
        img = nn.functional.interpolate(
            img, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False
        )[0]
        return (img - self.mean) / self.std, int(self.labels[i])


class TimmTrunk(nn.Module):
    """A timm backbone without its classifier: globally pooled penultimate features."""

    def __init__(self, name: str) -> None:
        super().__init__()
        try:
            import timm
        except ImportError as exc:
            raise ImportError(
                f"backbone {name!r} needs timm: pip install 'subspacelab[full]'"
            ) from exc
        self.body = timm.create_model(name, pretrained=False, num_classes=0)
        self.feature_dim = int(self.body.num_features)

    def forward(self, x: Tensor) -> Tensor:
        """Pooled features of shape (n, d)."""
        return self.body(x)
