"""STL-10 reader on tiny archives written in the binary release's format (column-major images,
labels 1..10), extracted through safe_extract with only one split's members."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from subspacelab.data.download import DownloadError, safe_extract
from subspacelab.data.stl10 import IMAGE_BYTES, load_stl10, stl10_members


def stl10_bytes(images: np.ndarray) -> bytes:
    """uint8 (n, 3, 96, 96) channel, row, column as the release stores them: each channel
    column by column."""
    return np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tobytes()


def write_stl10(path: Path, test_x: np.ndarray, test_y: np.ndarray) -> Path:
    """A tiny ``stl10_binary.tar.gz``: the test split given, a one-image train split, a few
    unlabeled images and the class names, in the release's layout."""
    rng = np.random.default_rng(9)
    extra = rng.integers(0, 256, size=(1, 3, 96, 96), dtype=np.uint8)
    members = {
        "test_X.bin": stl10_bytes(test_x),
        "test_y.bin": test_y.astype(np.uint8).tobytes(),
        "train_X.bin": stl10_bytes(extra),
        "train_y.bin": bytes([3]),
        "unlabeled_X.bin": stl10_bytes(np.repeat(extra, 2, axis=0)),
        "class_names.txt": b"airplane\nbird\ncar\ncat\ndeer\ndog\nhorse\nmonkey\nship\ntruck\n",
    }
    with tarfile.open(path, "w:gz") as tf:
        for name, blob in members.items():
            info = tarfile.TarInfo(f"stl10_binary/{name}")
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    return path


def _tiny(tmp_path: Path, n: int = 4) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n, 3, 96, 96), dtype=np.uint8)
    y = rng.integers(1, 11, size=n).astype(np.uint8)
    return write_stl10(tmp_path / "stl10_binary.tar.gz", x, y), x, y


def test_reads_the_test_split_in_its_orientation(tmp_path: Path) -> None:
    archive, x, y = _tiny(tmp_path)
    written = safe_extract(archive, tmp_path / "x", keep=lambda name: name in stl10_members("test"))
    assert sorted(p.name for p in written) == ["test_X.bin", "test_y.bin"]
    images, labels = load_stl10(tmp_path / "x", "test")
    assert images.shape == (4, 3, 96, 96) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, x)
    assert labels.dtype == np.int64 and labels.tolist() == (y.astype(int) - 1).tolist()
    # byte 1 of a channel is row 1 of column 0 (column-major), not column 1 of row 0
    raw = (tmp_path / "x" / "stl10_binary" / "test_X.bin").read_bytes()
    assert raw[1] == x[0, 0, 1, 0] and raw[96] == x[0, 0, 0, 1] and raw[96 * 96] == x[0, 1, 0, 0]
    # the folder itself is accepted too
    again, _ = load_stl10(tmp_path / "x" / "stl10_binary", "test")
    np.testing.assert_array_equal(again, x)


def _folder(tmp_path: Path, x_bytes: bytes, y_bytes: bytes) -> Path:
    folder = tmp_path / "stl10_binary"
    folder.mkdir(exist_ok=True)
    (folder / "test_X.bin").write_bytes(x_bytes)
    (folder / "test_y.bin").write_bytes(y_bytes)
    return tmp_path


def test_bad_files_are_named(tmp_path: Path) -> None:
    image = bytes(IMAGE_BYTES)
    with pytest.raises(DownloadError, match="no stl10_binary/ folder"):
        load_stl10(tmp_path)
    with pytest.raises(DownloadError, match=r"27647 bytes is not a whole number of 27648-byte"):
        load_stl10(_folder(tmp_path, image[:-1], b"\x01"))
    with pytest.raises(DownloadError, match="1 labels for the 2 images"):
        load_stl10(_folder(tmp_path, image * 2, b"\x01"))
    with pytest.raises(DownloadError, match=r"label 11 outside 1\.\.10"):
        load_stl10(_folder(tmp_path, image, b"\x0b"))
    with pytest.raises(DownloadError, match="label 0 outside"):
        load_stl10(_folder(tmp_path, image, b"\x00"))
    (tmp_path / "stl10_binary" / "test_y.bin").unlink()
    with pytest.raises(DownloadError, match=r"test_y\.bin: missing"):
        load_stl10(tmp_path)
    with pytest.raises(ValueError, match="unknown STL-10 split 'unlabeled'"):
        load_stl10(tmp_path, "unlabeled")
