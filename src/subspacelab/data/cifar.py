"""CIFAR-10 and CIFAR-100 (Krizhevsky, 2009) in their original "python version" tarballs.

The archives at cs.toronto.edu publish only an MD5, which is pinned in :data:`CIFAR_RESOURCES`
and checked by :func:`subspacelab.data.download.fetch` before anything is extracted.

The batches inside are Python 2 pickles of plain dicts holding a uint8 ``data`` array and a list
of labels. They are read with a *restricted* unpickler that resolves exactly three globals
(``numpy.ndarray``, ``numpy.dtype`` and numpy's array reconstructor) and refuses every other one,
so even a tampered file cannot run code; on top of that, :func:`fetch_cifar` only extracts an
archive whose checksum matched. ``encoding="bytes"`` keeps Python 2 strings as bytes, as the
format requires.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from subspacelab.data.download import DownloadError, Resource, fetch, safe_extract
from subspacelab.data.embedded import Split

CIFAR_RESOURCES: dict[str, Resource] = {
    "cifar10": Resource(
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        filename="cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
    ),
    "cifar100": Resource(
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        filename="cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
    ),
}

# Per dataset: the folder inside the archive, its train and test batch files, the label key.
_LAYOUT: dict[str, tuple[str, tuple[str, ...], tuple[str, ...], bytes]] = {
    "cifar10": (
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        b"labels",
    ),
    "cifar100": ("cifar-100-python", ("train",), ("test",), b"fine_labels"),
}

_RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy's ndarray reconstructor, whatever its module
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        """Resolve only the numpy globals an ndarray needs."""
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DownloadError(
                f"refusing pickled global {module}.{name}: a CIFAR batch holds only arrays, "
                "lists and strings"
            ) from None


def _read_batch(path: Path) -> dict[bytes, Any]:
    if not path.is_file():
        raise DownloadError(f"{path}: missing CIFAR batch file; is this an extracted archive?")
    with path.open("rb") as fh:
        try:
            batch = _ArrayOnlyUnpickler(fh, encoding="bytes").load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
            raise DownloadError(f"{path}: not a CIFAR python batch ({exc})") from None
    if not isinstance(batch, dict):
        raise DownloadError(f"{path}: expected a dict, got {type(batch).__name__}")
    return batch


def _images_and_labels(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    batch = _read_batch(path)
    if b"data" not in batch or label_key not in batch:
        raise DownloadError(f"{path}: missing b'data' or {label_key!r}; keys: {sorted(batch)}")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DownloadError(f"{path}: data must be uint8 of shape (n, 3072), got {data.shape}")
    if labels.shape != (data.shape[0],):
        raise DownloadError(f"{path}: {labels.shape[0]} labels for {data.shape[0]} images")
    # Each row is the red, green and blue 32x32 planes in turn: already channel-first.
    images = data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0
    return images, labels


def _base(extracted_dir: Path, name: str) -> Path:
    if name not in _LAYOUT:
        raise ValueError(f"unknown CIFAR dataset {name!r}; allowed: {', '.join(_LAYOUT)}")
    folder = _LAYOUT[name][0]
    base = extracted_dir if extracted_dir.name == folder else extracted_dir / folder
    if not base.is_dir():
        raise DownloadError(f"{extracted_dir}: no {folder}/ folder; extract {name}'s archive here")
    return base


def load_cifar_split(extracted_dir: Path, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """One split of CIFAR-10/100 (``"train"`` or ``"test"``) as float32 NCHW images in [0, 1]
    and int64 labels, in the archive's order; the arguments as in :func:`load_cifar`. Only this
    split's batch files are read (an archive extracted with just those members will do)."""
    base = _base(extracted_dir, name)
    if split not in ("train", "test"):
        raise ValueError(f"unknown CIFAR split {split!r}; allowed: train, test")
    _, train_files, test_files, label_key = _LAYOUT[name]
    parts = [
        _images_and_labels(base / f, label_key)
        for f in (train_files if split == "train" else test_files)
    ]
    x, y = (np.concatenate(a) for a in zip(*parts, strict=True))
    return x, y


def load_cifar(extracted_dir: Path, name: str) -> Split:
    """Read CIFAR-10/100 from an extracted python-version archive as float32 NCHW in [0, 1].

    Args:
        extracted_dir: The directory the archive was extracted into (holding
            ``cifar-10-batches-py`` or ``cifar-100-python``), or that inner folder itself. Only
            pass a directory extracted from an archive whose checksum was verified
            (:func:`fetch_cifar` does both).
        name: ``"cifar10"`` or ``"cifar100"`` (fine labels).

    Returns:
        A :class:`Split` with ``x`` of shape ``(n, 3, 32, 32)`` and int64 labels.
    """
    x_tr, y_tr = load_cifar_split(extracted_dir, name, "train")
    x_te, y_te = load_cifar_split(extracted_dir, name, "test")
    return Split(x_tr, y_tr, x_te, y_te)


def fetch_cifar(
    name: str, dest_dir: Path, progress: Callable[[str], None] = lambda _msg: None
) -> Path:
    """Download (MD5-checked) and safely extract one CIFAR archive; returns the extracted dir.

    The archive is kept in ``dest_dir`` (a verified copy is not downloaded again) and extracted
    into ``dest_dir / name``, which :func:`load_cifar` reads.
    """
    if name not in CIFAR_RESOURCES:
        raise ValueError(f"unknown CIFAR dataset {name!r}; allowed: {', '.join(CIFAR_RESOURCES)}")
    archive = fetch(CIFAR_RESOURCES[name], dest_dir, progress)
    target = dest_dir / name
    safe_extract(archive, target)
    return target
