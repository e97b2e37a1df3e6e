"""dsl's full profile (arXiv 2206.09068, spec §7): ISIC-2019, MURA or HyperKvasir and a
ResNet-50 trunk.

``data.source`` picks the dataset; every one is an archive fetched (or placed by hand and
verified) against the SHA-256 pins of params.yaml, since none publishes a checksum
(``python -m subspacelab check`` lists them while empty), and extracted by
:func:`~subspacelab.data.download.safe_extract`, which refuses members escaping the archive.

* ISIC-2019 (8 classes): a zip of JPEGs (``ISIC_2019_Training_Input/<image>.jpg``) and a
  separate CSV of one-hot diagnoses (``image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK``; UNK is empty
  in training).
* MURA v1.1 (14 classes: 7 body parts × normal / abnormal, the label of the image's study):
  ``MURA-v1.1/{train,valid}_image_paths.csv`` (one image path a line) and
  ``..._labeled_studies.csv`` (``<study folder>/,<0|1>``), PNGs under
  ``MURA-v1.1/<split>/XR_<PART>/patient<id>/study<n>_<positive|negative>/image<k>.png``. The
  official ``valid`` split is the held-out test pool (MURA's test set is not public).
* HyperKvasir (23 classes, the findings): ``labeled-images/image-labels.csv`` with columns
  ``Video file,Organ,Finding,Classification`` (``Video file`` is the image's name) and JPEGs
  under ``labeled-images/<organ>/<classification>/<finding>/<name>.jpg``.

Pillow and torchvision come from the optional ``full`` extra and are imported inside the
functions that need them.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
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
MURA_PARTS = (
    "XR_ELBOW",
    "XR_FINGER",
    "XR_FOREARM",
    "XR_HAND",
    "XR_HUMERUS",
    "XR_SHOULDER",
    "XR_WRIST",
)
MURA_SPLITS = ("train", "valid")
_MURA_IMAGE = re.compile(
    r"MURA-v1\.1/(train|valid)/(XR_[A-Z]+)/patient\d+/study\d+_(positive|negative)/image\d+\.png"
)
HYPERKVASIR_COLUMNS = ("Video file", "Organ", "Finding", "Classification")


@dataclass(frozen=True)
class LabelledImages:
    """A dataset's image files, class indices into ``classes``, and ``held_out``: the images of
    an official held-out split (MURA's ``valid``), all False where the dataset has none."""

    paths: list[Path]
    labels: np.ndarray
    classes: tuple[str, ...]
    held_out: np.ndarray


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


def read_isic(labels_csv: Path, folder: Path) -> LabelledImages:
    """ISIC-2019's images (``<name>.jpg`` anywhere under ``folder``) and CSV labels."""
    names, labels = read_isic_labels(labels_csv)
    jpgs = next((p.parent for p in folder.rglob("*.jpg")), folder)
    paths = [jpgs / f"{name}.jpg" for name in names]
    return LabelledImages(paths, labels, ISIC_CLASSES, np.zeros(len(names), dtype=bool))


def mura_classes() -> tuple[str, ...]:
    """MURA's 14 classes, ``<part>/<negative|positive>``: index 2 · part + study label."""
    return tuple(f"{part}/{state}" for part in MURA_PARTS for state in ("negative", "positive"))


def _mura_studies(path: Path) -> dict[str, int]:
    """``{study folder: 0 | 1}`` of a ``<split>_labeled_studies.csv``; a bad row names its line."""
    studies: dict[str, int] = {}
    with path.open(newline="") as fh:
        for i, row in enumerate(csv.reader(fh), start=1):
            if len(row) != 2 or row[1].strip() not in ("0", "1"):
                raise ValueError(f"{path.name} line {i}: want '<study folder>/,<0|1>', got {row}")
            folder, label = row[0].strip().rstrip("/"), int(row[1])
            state = "positive" if label else "negative"
            if not folder.endswith(f"_{state}"):
                raise ValueError(f"{path.name} line {i}: label {label} but folder {folder!r}")
            studies[folder] = label
    return studies


def read_mura(folder: Path) -> LabelledImages:
    """MURA v1.1 extracted in ``folder``: every image of both splits with its study's class;
    ``held_out`` marks the ``valid`` split. Bad rows and images of unlabelled studies are
    refused, naming the file and line."""
    base = next((p.parent for p in folder.rglob("train_image_paths.csv")), None)
    if base is None or base.name != "MURA-v1.1":
        raise FileNotFoundError(f"{folder}: no MURA-v1.1/train_image_paths.csv in the archive")
    root = base.parent
    paths, labels, held_out = [], [], []
    for split in MURA_SPLITS:
        studies = _mura_studies(base / f"{split}_labeled_studies.csv")
        listing = base / f"{split}_image_paths.csv"
        with listing.open(newline="") as fh:
            for i, row in enumerate(csv.reader(fh), start=1):
                name = row[0].strip() if len(row) == 1 else ""
                match = _MURA_IMAGE.fullmatch(name)
                if match is None or match[1] != split or match[2] not in MURA_PARTS:
                    raise ValueError(
                        f"{listing.name} line {i}: want 'MURA-v1.1/{split}/XR_<PART>/patient<id>"
                        f"/study<n>_<positive|negative>/image<k>.png', got {row}"
                    )
                study = name.rsplit("/", 1)[0]
                if study not in studies:
                    raise ValueError(f"{listing.name} line {i}: study {study!r} has no label")
                paths.append(root / name)
                labels.append(2 * MURA_PARTS.index(match[2]) + studies[study])
                held_out.append(split == "valid")
    if not paths:
        raise ValueError(f"{base}: no images listed")
    return LabelledImages(
        paths, np.asarray(labels, dtype=np.int64), mura_classes(), np.asarray(held_out)
    )


def read_hyperkvasir(folder: Path) -> LabelledImages:
    """HyperKvasir's labelled images extracted in ``folder``: ``labeled-images/image-labels.csv``
    names each image and its finding (the class, 23 in the release); the image is
    ``labeled-images/<organ>/<classification>/<finding>/<name>.jpg``, found by its name."""
    listing = next(folder.rglob("image-labels.csv"), None)
    if listing is None or listing.parent.name != "labeled-images":
        raise FileNotFoundError(f"{folder}: no labeled-images/image-labels.csv in the archive")
    jpgs: dict[str, Path] = {}
    for p in listing.parent.rglob("*.jpg"):
        if p.stem in jpgs:
            raise ValueError(f"{listing.parent}: two images named {p.stem}.jpg")
        jpgs[p.stem] = p
    names, findings = [], []
    with listing.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != HYPERKVASIR_COLUMNS:
            raise ValueError(f"{listing.name}: want columns {HYPERKVASIR_COLUMNS}")
        for i, row in enumerate(reader, start=2):
            if None in row or any(not (row[c] or "").strip() for c in HYPERKVASIR_COLUMNS):
                raise ValueError(f"{listing.name} line {i}: want 4 non-empty fields, got {row}")
            names.append(row["Video file"].strip())
            findings.append(row["Finding"].strip())
    if not names:
        raise ValueError(f"{listing.name}: no images")
    missing = [n for n in names if n not in jpgs]
    if missing:
        raise FileNotFoundError(
            f"HyperKvasir image {missing[0]}.jpg listed in {listing.name} is missing"
        )
    classes = tuple(sorted(set(findings)))
    labels = np.asarray([classes.index(f) for f in findings], dtype=np.int64)
    return LabelledImages([jpgs[n] for n in names], labels, classes, np.zeros(len(names), bool))


def load_images(paths: list[Path], size: int) -> torch.Tensor:
    """Images resized (shorter side) and centre-cropped to ``size``², as uint8
    (n, 3, size, size); grey images (MURA) are repeated over the three channels."""
    from PIL import Image

    out = torch.empty(len(paths), 3, size, size, dtype=torch.uint8)
    for i, path in enumerate(paths):
        if not path.is_file():
            raise FileNotFoundError(f"image {path.name} listed in the labels is missing")
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


def dataset_split(held_out: np.ndarray, sizes: tuple[int, int, int], seed: int) -> list[np.ndarray]:
    """Seeded train / validation / test indices: :func:`split_indices` over every image, or,
    where the dataset has an official held-out split, train and validation from the rest and
    the test images from the held-out ones."""
    if not held_out.any():
        return split_indices(len(held_out), sizes, seed)
    pool, test = np.flatnonzero(~held_out), np.flatnonzero(held_out)
    tr, va, _ = split_indices(len(pool), (sizes[0], sizes[1], 0), seed)
    if sizes[2] > len(test):
        raise ValueError(f"test = {sizes[2]} exceeds the {len(test)} held-out images")
    te = np.random.default_rng(seed).permutation(len(test))[: sizes[2]]
    return [pool[tr], pool[va], test[te]]


def open_dataset(
    source: str, archive: Path, folder: Path, labels_csv: Path | None = None
) -> LabelledImages:
    """Extract ``archive`` into ``folder`` (once; unsafe members refused) and read ``source``'s
    images and labels (ISIC-2019's labels come in ``labels_csv``)."""
    from subspacelab.data.download import safe_extract

    if not folder.exists():
        safe_extract(archive, folder)
    if source == "isic2019":
        if labels_csv is None:
            raise ValueError("ISIC-2019 needs its ground-truth CSV")
        return read_isic(labels_csv, folder)
    if source == "mura":
        return read_mura(folder)
    if source == "hyperkvasir":
        return read_hyperkvasir(folder)
    raise ValueError(f"data.source {source!r}: want isic2019, mura or hyperkvasir")


def data(ctx: StepContext[DslConfig]) -> StepOutput:
    """Fetch the dataset against its pins, resize the images the seeded splits use, and save
    the splits as the mini data step does; these datasets have no lesion masks, so ``m_test``
    is empty (Dice needs ISIC-2018 masks)."""
    from subspacelab.data.download import Resource, fetch

    d = ctx.cfg.data
    root = ctx.out / "downloads"
    labels_csv = None
    if d.source == "isic2019":
        labels_csv = fetch(
            Resource(d.labels_url, Path(d.labels_url).name, sha256=d.labels_sha256),
            root,
            ctx.progress,
        )
    archive = fetch(
        Resource(d.images_url, Path(d.images_url).name, sha256=d.images_sha256), root, ctx.progress
    )
    table = open_dataset(d.source, archive, root / "images", labels_csv)
    sizes = (d.n_train, d.n_val, d.n_test)
    splits = {seed: dataset_split(table.held_out, sizes, seed) for seed in ctx.cfg.seeds}
    used = np.unique(np.concatenate([i for parts in splits.values() for i in parts]))
    images = load_images([table.paths[i] for i in used], d.size)
    row = np.full(len(table.paths), -1, dtype=np.int64)
    row[used] = np.arange(len(used))
    y = torch.from_numpy(table.labels)
    for seed in ctx.seeded():
        tr, va, te = splits[seed]
        ctx.save(
            f"seed{seed}",
            {
                "x_train": images[row[tr]],
                "y_train": y[tr],
                "x_val": images[row[va]],
                "y_val": y[va],
                "x_test": images[row[te]],
                "y_test": y[te],
                "m_test": torch.zeros(len(te), d.size, d.size, dtype=torch.bool),
                "n_classes": torch.tensor(len(table.classes)),
            },
        )
    return StepOutput()


def resnet50_trunk() -> nn.Module:
    """torchvision's ImageNet ResNet-50 without pooling and classifier (2048 × 7 × 7 at 224²)."""
    from torchvision.models import ResNet50_Weights, resnet50

    net = resnet50(weights=ResNet50_Weights.IMAGENET1K_V2)
    return nn.Sequential(*list(net.children())[:-2])
