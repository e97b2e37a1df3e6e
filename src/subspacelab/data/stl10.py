"""STL-10 (Coates, Lee & Ng, AISTATS 2011) in its binary release ``stl10_binary.tar.gz``.

The archive (:data:`STL10_URL`; MD5 :data:`STL10_MD5`, the checksum torchvision pins) holds a
folder ``stl10_binary/`` with ``<split>_X.bin``, raw uint8 images of 3 × 96 × 96 bytes each, every
channel stored column by column (Fortran order, as MATLAB writes it), and ``<split>_y.bin``, one
uint8 label per image, 1..10. Only verified archives should be extracted (the callers pin them);
extraction goes through :func:`subspacelab.data.download.safe_extract`, and :func:`stl10_members`
names the two files one split needs (the 2.5 GB ``unlabeled_X.bin`` is never written).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from subspacelab.io import DownloadError

STL10_URL = "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"
STL10_MD5 = "91f7769df0f17e558f3565bffb0c7dfb"
FOLDER = "stl10_binary"
SIDE = 96
IMAGE_BYTES = 3 * SIDE * SIDE
SPLITS = ("train", "test")


def stl10_members(split: str) -> tuple[str, str]:
    """The archive members holding ``split``'s images and labels."""
    if split not in SPLITS:
        raise ValueError(f"unknown STL-10 split {split!r}; allowed: {', '.join(SPLITS)}")
    return f"{FOLDER}/{split}_X.bin", f"{FOLDER}/{split}_y.bin"


def load_stl10(extracted_dir: Path, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """One labelled split of STL-10 as uint8 images (n, 3, 96, 96), channel, row, column, and
    int64 labels 0..9 (the file's 1..10 less one), in the file's order.

    Args:
        extracted_dir: The directory the archive was extracted into (holding ``stl10_binary/``),
            or that folder itself.
        split: ``"train"`` (5,000 images) or ``"test"`` (8,000).
    """
    x_name, y_name = (Path(m).name for m in stl10_members(split))
    base = extracted_dir if extracted_dir.name == FOLDER else extracted_dir / FOLDER
    if not base.is_dir():
        raise DownloadError(f"{extracted_dir}: no {FOLDER}/ folder; extract STL-10's archive here")
    x_path, y_path = base / x_name, base / y_name
    for path in (x_path, y_path):
        if not path.is_file():
            raise DownloadError(f"{path}: missing; is this an extracted stl10_binary.tar.gz?")
    size = x_path.stat().st_size
    if size == 0 or size % IMAGE_BYTES:
        raise DownloadError(
            f"{x_path}: {size} bytes is not a whole number of {IMAGE_BYTES}-byte images "
            "(3 x 96 x 96): a truncated or different file"
        )
    n = size // IMAGE_BYTES
    labels = np.fromfile(y_path, dtype=np.uint8)
    if labels.shape != (n,):
        raise DownloadError(f"{y_path}: {labels.size} labels for the {n} images of {x_name}")
    if labels.min() < 1 or labels.max() > 10:
        bad = int(labels[(labels < 1) | (labels > 10)][0])
        raise DownloadError(f"{y_path}: label {bad} outside 1..10")
    raw = np.fromfile(x_path, dtype=np.uint8).reshape(n, 3, SIDE, SIDE)
    # each channel is stored column by column: raw[i, c, col, row]
    images = np.ascontiguousarray(raw.transpose(0, 1, 3, 2))
    return images, labels.astype(np.int64) - 1
