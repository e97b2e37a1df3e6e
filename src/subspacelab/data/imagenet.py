"""ImageNet-1K (ILSVRC2012) from the user's archives: their params section, checks, unpacking and
the standard image pipelines.

ImageNet cannot be downloaded without a login, so the user places the three official archives in
a directory that a study's params name (:class:`ImageNetData`); :func:`verify_archives` checks them
against the pinned checksums (never deleting a user's file) and records their SHA-256, and
:func:`prepare_imagenet` unpacks them into the ImageFolder layout ``train/<wnid>/`` and
``val/<wnid>/`` with safe extraction; :func:`imagenet_split` reads a prepared split with the
usual training augmentation or evaluation crop. Used by the gcr (arXiv:2308.01547), convergent
(arXiv:1511.07543) and report_card studies' full profiles. torchvision is optional (the ``full``
extra) and imported only inside :func:`imagenet_split`.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from subspacelab.config import param
from subspacelab.data.download import DownloadError, safe_extract

IMAGENET_ARCHIVES = (
    "ILSVRC2012_img_train.tar",
    "ILSVRC2012_img_val.tar",
    "ILSVRC2012_devkit_t12.tar.gz",
)
CHECKSUM_PATTERN = re.compile(r"^(md5:[0-9a-f]{32}|sha256:[0-9a-f]{64})$")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_DEVKIT_DATA = "ILSVRC2012_devkit_t12/data"


@dataclass
class ImageNetData:
    """ImageNet-1K archives placed by the user (image-net.org needs a login)."""

    root: str = param()  # the directory holding the three official archives
    checksums: dict[str, str] = param()  # file name -> "md5:<hex>" or "sha256:<hex>"
    image_size: int = param(ge=32)  # training crop and evaluation centre crop
    resize_size: int = param(ge=32)  # evaluation: shorter side before the centre crop

    def check(self) -> dict[str, str]:
        """Checksums must name the algorithm; the evaluation resize must cover the crop."""
        bad = {}
        if set(self.checksums) != set(IMAGENET_ARCHIVES) or not all(
            CHECKSUM_PATTERN.match(v) for v in self.checksums.values()
        ):
            bad["checksums"] = (
                f"exactly the files {', '.join(IMAGENET_ARCHIVES)}, each mapped to "
                "'md5:<32 hex>' or 'sha256:<64 hex>'"
            )
        if self.resize_size < self.image_size:
            bad["resize_size"] = f">= image_size ({self.image_size})"
        return bad


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
            "(registration required) into this directory, which the study's full params name "
            "as data.imagenet.root"
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
    """A torchvision ImageFolder of ``prepared/<split>`` with the standard pipelines.

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
