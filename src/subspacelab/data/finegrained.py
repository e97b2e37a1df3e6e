"""The fine-grained transfer sets of ULSAM's full profile (Saini et al., arXiv:2006.15102, §7):
Food-101, Stanford Dogs and CUB-200-2011, downloaded against pinned checksums, unpacked safely,
and read in their official train/test splits.

Food-101 and CUB-200-2011 publish MD5s (the ones torchvision and the CUB loaders of the field
check); Stanford Dogs publishes none, so its two archives stay unpinned until the user records
their SHA-256 in params (``python -m subspacelab check`` lists them and the data stage refuses to
start). Each archive is unpacked into ``<prepared>/<set>/<archive stem>/``:

* food101: ``food-101/meta/{train,test}.txt`` lines ``<class>/<id>`` naming
  ``food-101/images/<class>/<id>.jpg``; classes in ``meta/classes.txt`` order;
* cub200: ``CUB_200_2011/images.txt`` (``<id> <path>``), ``image_class_labels.txt``
  (``<id> <label from 1>``) and ``train_test_split.txt`` (``<id> <1 train / 0 test>``);
* dogs: ``Images/<wnid>-<breed>/<file>.jpg`` and ``{train,test}_list.mat`` (``file_list`` and
  ``labels`` from 1) from ``lists.tar``.

torchvision (the ``full`` extra) is imported only inside :func:`finegrained_split`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from subspacelab.config import param
from subspacelab.data.download import Resource, fetch, safe_extract
from subspacelab.io import DownloadError, sha256_file

CHECKSUM = re.compile(r"^(md5:[0-9a-f]{32}|sha256:[0-9a-f]{64})$")


@dataclass(frozen=True)
class Archive:
    """One archive of a set: its URL, file name and the checksum its publisher gives (if any)."""

    url: str
    filename: str
    published: str = ""


SETS: dict[str, tuple[Archive, ...]] = {
    "food101": (
        Archive(
            "http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz",
            "food-101.tar.gz",
            "md5:85eeb15f3717b99a5da872d97d918f87",
        ),
    ),
    "cub200": (
        Archive(
            "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz",
            "CUB_200_2011.tgz",
            "md5:97eceeb196236b17998738112f37df78",
        ),
    ),
    "dogs": (
        Archive("http://vision.stanford.edu/aditya86/ImageNetDogs/images.tar", "images.tar"),
        Archive("http://vision.stanford.edu/aditya86/ImageNetDogs/lists.tar", "lists.tar"),
    ),
}


@dataclass
class FineGrainedData:
    """The fine-grained sets to fine-tune on: where archives go, which sets, each archive's
    checksum (``md5:<hex>`` / ``sha256:<hex>``; empty until pinned), and the image pipeline."""

    root: str = param()  # downloads land here (under the repository)
    sets: list[str] = param(min_len=1)
    checksums: dict[str, str] = param()  # archive file name -> pin ("" = not pinned yet)
    image_size: int = param(ge=32)
    resize_size: int = param(ge=32)

    def check(self) -> dict[str, str]:
        """Known sets; exactly their archives pinned or left empty; the resize covers the crop."""
        bad: dict[str, str] = {}
        unknown = sorted(set(self.sets) - set(SETS))
        if unknown:
            bad["sets"] = f"names among {', '.join(SETS)} (not {', '.join(unknown)})"
            return bad
        wanted = {a.filename for s in self.sets for a in SETS[s]}
        if set(self.checksums) != wanted or not all(
            v == "" or CHECKSUM.match(v) for v in self.checksums.values()
        ):
            bad["checksums"] = (
                f"exactly the archives {', '.join(sorted(wanted))}, each 'md5:<32 hex>', "
                "'sha256:<64 hex>' or '' until pinned"
            )
        if self.resize_size < self.image_size:
            bad["resize_size"] = f">= image_size ({self.image_size})"
        return bad

    def unpinned(self) -> dict[str, str]:
        """Archives with no checksum yet (Stanford Dogs publishes none)."""
        return {
            f"checksums.{name}": f"the sha256 of {name} (no checksum is published)"
            for name, pin in sorted(self.checksums.items())
            if not pin
        }


def _resource(archive: Archive, pin: str) -> Resource:
    algo, _, digest = pin.partition(":")
    if algo not in ("md5", "sha256") or not digest:
        raise DownloadError(f"{archive.filename}: no checksum pinned; pin it in params first")
    return Resource(archive.url, archive.filename, **{algo: digest})


def fetch_sets(
    data: FineGrainedData,
    downloads: Path,
    prepared: Path,
    progress: Callable[[str], None] = lambda _m: None,
) -> dict[str, dict[str, Any]]:
    """Download (or verify a placed copy of) each pinned archive into ``downloads`` and unpack it
    into ``prepared/<set>/<archive stem>``; returns ``{file: {set, bytes, pinned, sha256}}``."""
    manifest = {}
    for name in data.sets:
        for archive in SETS[name]:
            path = fetch(_resource(archive, data.checksums[archive.filename]), downloads, progress)
            progress(f"unpacking {archive.filename}")
            safe_extract(path, prepared / name / archive.filename.split(".")[0])
            manifest[archive.filename] = {
                "set": name,
                "bytes": path.stat().st_size,
                "pinned": data.checksums[archive.filename],
                "sha256": sha256_file(path),
            }
    return manifest


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DownloadError(f"{path}: missing; the archive is incomplete or another release")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _food101(root: Path, split: str) -> list[tuple[Path, int]]:
    base = root / "food-101" / "food-101"
    classes = {c: i for i, c in enumerate(_lines(base / "meta" / "classes.txt"))}
    out = []
    for item in _lines(base / "meta" / f"{split}.txt"):
        cls = item.split("/", 1)[0]
        if cls not in classes:
            raise DownloadError(f"{base}/meta/{split}.txt: unknown class {cls!r}")
        out.append((base / "images" / f"{item}.jpg", classes[cls]))
    return out


def _cub200(root: Path, split: str) -> list[tuple[Path, int]]:
    base = root / "CUB_200_2011" / "CUB_200_2011"
    paths = dict(line.split(" ", 1) for line in _lines(base / "images.txt"))
    labels = dict(line.split(" ", 1) for line in _lines(base / "image_class_labels.txt"))
    is_train = dict(line.split(" ", 1) for line in _lines(base / "train_test_split.txt"))
    keep = "1" if split == "train" else "0"
    return [
        (base / "images" / paths[i], int(labels[i]) - 1)
        for i in sorted(paths, key=int)
        if is_train[i] == keep
    ]


def _dogs(root: Path, split: str) -> list[tuple[Path, int]]:
    from scipy.io import loadmat

    lists = root / "lists" / f"{split}_list.mat"
    if not lists.is_file():
        raise DownloadError(f"{lists}: missing; lists.tar is incomplete or another release")
    mat = loadmat(str(lists), squeeze_me=True)
    files = [str(f) for f in mat["file_list"]]
    labels = [int(v) - 1 for v in mat["labels"]]
    return [(root / "images" / "Images" / f, y) for f, y in zip(files, labels, strict=True)]


READERS: dict[str, Callable[[Path, str], list[tuple[Path, int]]]] = {
    "food101": _food101,
    "cub200": _cub200,
    "dogs": _dogs,
}


def split_files(prepared: Path, name: str, split: str) -> list[tuple[Path, int]]:
    """The (image path, class from 0) pairs of set ``name``'s official ``split`` (train/test)."""
    if name not in READERS:
        raise ValueError(f"unknown fine-grained set {name!r}; known: {', '.join(READERS)}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be train or test, got {split!r}")
    return READERS[name](prepared / name, split)


def finegrained_split(
    prepared: Path, name: str, split: str, image_size: int, resize_size: int
) -> Any:
    """A dataset of set ``name``'s ``split`` with the ImageNet pipelines (train: random resized
    crop and flip; test: resize and centre crop), labels from 0."""
    try:
        from PIL import Image
        from torchvision import transforms
    except ImportError as exc:
        raise ImportError(
            "the full profile needs torchvision: pip install 'subspacelab[full]'"
        ) from exc
    from torch.utils.data import Dataset

    from subspacelab.data.imagenet import IMAGENET_MEAN, IMAGENET_STD

    if split == "train":
        crop = [transforms.RandomResizedCrop(image_size), transforms.RandomHorizontalFlip()]
    else:
        crop = [transforms.Resize(resize_size), transforms.CenterCrop(image_size)]
    pipeline = transforms.Compose(
        [*crop, transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )
    items = split_files(prepared, name, split)

    class _Files(Dataset):
        def __len__(self) -> int:
            return len(items)

        def __getitem__(self, i: int) -> tuple[Any, int]:
            path, label = items[i]
            with Image.open(path) as img:
                return pipeline(img.convert("RGB")), label

    return _Files()
