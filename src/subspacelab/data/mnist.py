"""MNIST (LeCun, Bottou, Bengio & Haffner, 1998) from its four gzipped IDX files.

The files publish only an MD5 (the one torchvision pins), which :data:`MNIST_RESOURCES` carries;
:func:`subspacelab.data.download.fetch` checks it, so the SHA-256 is recorded by the caller after
the first download. The mirror is the one torchvision tries first (the original
yann.lecun.com site often refuses downloads); the bytes are the same, hence the same MD5.

IDX format (big-endian): a 4-byte magic number ``0x00 0x00 <type> <ndim>`` with type ``0x08``
(unsigned byte), then ``ndim`` 4-byte sizes, then the data. Images have ``ndim = 3``
(magic 2051 = ``0x00000803``), labels ``ndim = 1`` (magic 2049 = ``0x00000801``).
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from subspacelab.data.download import DownloadError, Resource, fetch
from subspacelab.data.embedded import Split

MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"

MNIST_RESOURCES: dict[str, Resource] = {
    "train_images": Resource(
        MIRROR + "train-images-idx3-ubyte.gz",
        "train-images-idx3-ubyte.gz",
        md5="f68b3c2dcbeaaa9fbdd348bbdeb94873",
    ),
    "train_labels": Resource(
        MIRROR + "train-labels-idx1-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        md5="d53e105ee54ea40749a09fcbcd1e9432",
    ),
    "test_images": Resource(
        MIRROR + "t10k-images-idx3-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        md5="9fb629c4189551a2d022fa330f9573f3",
    ),
    "test_labels": Resource(
        MIRROR + "t10k-labels-idx1-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
        md5="ec29112dd5afa0611ce80d1b7f02629c",
    ),
}

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read one gzipped IDX file of unsigned bytes; DownloadError if it is not one.

    Args:
        path: A ``*-idx?-ubyte.gz`` file.
        magic: The expected magic number (:data:`IMAGES_MAGIC` or :data:`LABELS_MAGIC`).

    Returns:
        A uint8 array of the shape the header declares.
    """
    if not path.is_file():
        raise DownloadError(f"{path}: missing MNIST file; run the download step")
    try:
        with gzip.open(path, "rb") as fh:
            blob = fh.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DownloadError(f"{path}: not a readable gzip file ({exc})") from None
    if len(blob) < 4:
        raise DownloadError(f"{path}: {len(blob)} bytes, too short for an IDX header")
    found = int.from_bytes(blob[:4], "big")
    if found != magic:
        raise DownloadError(
            f"{path}: magic number {found:#010x}, expected {magic:#010x} "
            f"({'images' if magic == IMAGES_MAGIC else 'labels'} IDX file)"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(blob) < header:
        raise DownloadError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(blob[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(blob) - header != expected:
        raise DownloadError(
            f"{path}: header declares shape {shape} ({expected} bytes), "
            f"found {len(blob) - header} data bytes"
        )
    return np.frombuffer(blob, dtype=np.uint8, offset=header).reshape(shape)


def _pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise DownloadError(
            f"{images_path.name}: {images.shape[0]} images but {labels_path.name} has "
            f"{labels.shape[0]} labels"
        )
    if labels.size and int(labels.max()) > 9:
        raise DownloadError(f"{labels_path}: label {int(labels.max())} outside 0-9")
    x = images.astype(np.float32)[:, None, :, :] / 255.0
    return x, labels.astype(np.int64)


def load_mnist(directory: Path) -> Split:
    """Read MNIST from the four ``.gz`` files in ``directory`` as float32 NCHW in [0, 1].

    Returns:
        A :class:`Split` with ``x`` of shape ``(n, 1, 28, 28)`` and int64 labels.
    """
    files = {k: directory / r.filename for k, r in MNIST_RESOURCES.items()}
    x_tr, y_tr = _pair(files["train_images"], files["train_labels"])
    x_te, y_te = _pair(files["test_images"], files["test_labels"])
    return Split(x_tr, y_tr, x_te, y_te)


def fetch_mnist(dest_dir: Path, progress: Callable[[str], None] = lambda _msg: None) -> Path:
    """Download the four MNIST files into ``dest_dir`` (MD5-checked); returns ``dest_dir``."""
    for resource in MNIST_RESOURCES.values():
        fetch(resource, dest_dir, progress)
    return dest_dir
