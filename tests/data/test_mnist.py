"""MNIST loader on tiny gzipped IDX files written in the real format."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from subspacelab.data import mnist
from subspacelab.data.download import DownloadError, Resource
from subspacelab.data.mnist import (
    IMAGES_MAGIC,
    LABELS_MAGIC,
    MNIST_RESOURCES,
    fetch_mnist,
    load_mnist,
    read_idx,
)


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write(path: Path, blob: bytes) -> Path:
    with gzip.open(path, "wb") as fh:
        fh.write(blob)
    return path


def _tiny_mnist(folder: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, size=5, dtype=np.uint8),
        "test_images": rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, size=3, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for key, arr in arrays.items():
        magic = IMAGES_MAGIC if key.endswith("images") else LABELS_MAGIC
        _write(folder / MNIST_RESOURCES[key].filename, _idx_bytes(arr, magic))
    return arrays


def test_load_mnist_reads_images_and_labels(tmp_path: Path) -> None:
    arrays = _tiny_mnist(tmp_path)
    split = load_mnist(tmp_path)
    assert split.x_train.shape == (5, 1, 28, 28) and split.x_train.dtype == np.float32
    assert split.x_test.shape == (3, 1, 28, 28)
    np.testing.assert_allclose(split.x_train[:, 0] * 255.0, arrays["train_images"], atol=1e-4)
    np.testing.assert_array_equal(split.y_train, arrays["train_labels"])
    np.testing.assert_array_equal(split.y_test, arrays["test_labels"])
    assert split.y_train.dtype == np.int64
    assert split.x_train.min() >= 0.0 and split.x_train.max() <= 1.0


def test_resources_pin_the_published_md5() -> None:
    assert {r.md5 for r in MNIST_RESOURCES.values()} == {
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "d53e105ee54ea40749a09fcbcd1e9432",
        "9fb629c4189551a2d022fa330f9573f3",
        "ec29112dd5afa0611ce80d1b7f02629c",
    }


def test_wrong_magic_is_refused(tmp_path: Path) -> None:
    labels = _write(tmp_path / "l.gz", _idx_bytes(np.zeros(4), LABELS_MAGIC))
    with pytest.raises(DownloadError, match="magic number 0x00000801, expected 0x00000803"):
        read_idx(labels, IMAGES_MAGIC)


def test_truncated_data_is_refused(tmp_path: Path) -> None:
    blob = _idx_bytes(np.zeros((2, 28, 28)), IMAGES_MAGIC)[:-10]
    path = _write(tmp_path / "i.gz", blob)
    with pytest.raises(DownloadError, match="declares shape"):
        read_idx(path, IMAGES_MAGIC)


def test_short_header_and_non_gzip_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="too short"):
        read_idx(_write(tmp_path / "s.gz", b"\x00\x00"), LABELS_MAGIC)
    plain = tmp_path / "p.gz"
    plain.write_bytes(b"not gzip at all")
    with pytest.raises(DownloadError, match="not a readable gzip"):
        read_idx(plain, LABELS_MAGIC)
    with pytest.raises(DownloadError, match="missing MNIST file"):
        read_idx(tmp_path / "absent.gz", LABELS_MAGIC)


def test_count_mismatch_and_bad_labels(tmp_path: Path) -> None:
    _tiny_mnist(tmp_path)
    _write(
        tmp_path / MNIST_RESOURCES["train_labels"].filename,
        _idx_bytes(np.zeros(4), LABELS_MAGIC),
    )
    with pytest.raises(DownloadError, match="5 images but"):
        load_mnist(tmp_path)
    _write(
        tmp_path / MNIST_RESOURCES["train_labels"].filename,
        _idx_bytes(np.full(5, 12), LABELS_MAGIC),
    )
    with pytest.raises(DownloadError, match="outside 0-9"):
        load_mnist(tmp_path)


def test_fetch_mnist_checks_md5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "mirror"
    _tiny_mnist(src)
    good = {
        key: Resource(
            (src / r.filename).as_uri(),
            r.filename,
            md5=hashlib.md5((src / r.filename).read_bytes()).hexdigest(),
        )
        for key, r in MNIST_RESOURCES.items()
    }
    monkeypatch.setattr(mnist, "MNIST_RESOURCES", good)
    dest = fetch_mnist(tmp_path / "dl")
    assert load_mnist(dest).x_train.shape == (5, 1, 28, 28)
    bad = dict(good)
    bad["test_labels"] = Resource(
        good["test_labels"].url, "t10k-labels-idx1-ubyte.gz", md5="0" * 32
    )
    monkeypatch.setattr(mnist, "MNIST_RESOURCES", bad)
    (tmp_path / "dl2").mkdir()
    with pytest.raises(DownloadError, match="md5 mismatch"):
        fetch_mnist(tmp_path / "dl2")
