"""CIFAR loader on tiny archives written in the real python-version format."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from subspacelab.data import cifar
from subspacelab.data.cifar import CIFAR_RESOURCES, fetch_cifar, load_cifar, load_cifar_split
from subspacelab.data.download import DownloadError, Resource


def _py2_style_pickle(obj: object) -> bytes:
    """A pickle naming numpy's reconstructor as the original (Python 2 era) files do.

    Protocol 3 writes bytes natively and globals as newline-terminated text, so the module name
    can be rewritten to the ``numpy.core.multiarray`` of the published archives.
    """
    blob = pickle.dumps(obj, protocol=3)
    return blob.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")


def _batch(rng: np.random.Generator, n: int, label_key: bytes, classes: int) -> dict:
    return {
        b"batch_label": b"tiny batch",
        label_key: [int(v) for v in rng.integers(0, classes, size=n)],
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def _write_archive(path: Path, folder: str, members: dict[str, object]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, obj in members.items():
            blob = _py2_style_pickle(obj)
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    return path


def _tiny_cifar10(tmp_path: Path) -> tuple[Path, dict[str, dict]]:
    rng = np.random.default_rng(0)
    members = {f"data_batch_{i}": _batch(rng, 3, b"labels", 10) for i in range(1, 6)}
    members["test_batch"] = _batch(rng, 4, b"labels", 10)
    members["batches.meta"] = {b"label_names": [b"airplane"] * 10, b"num_vis": 3072}
    archive = _write_archive(tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py", members)
    return archive, members


def _extract(archive: Path, dest: Path) -> Path:
    with tarfile.open(archive) as tf:
        tf.extractall(dest, filter="data")
    return dest


def test_cifar10_layout_values_and_ranges(tmp_path: Path) -> None:
    archive, members = _tiny_cifar10(tmp_path)
    split = load_cifar(_extract(archive, tmp_path / "x"), "cifar10")
    assert split.x_train.shape == (15, 3, 32, 32) and split.x_train.dtype == np.float32
    assert split.x_test.shape == (4, 3, 32, 32) and split.y_test.dtype == np.int64
    first = members["data_batch_1"]
    # row layout: 1024 red values, then green, then blue; pixel (0, 0) of image 0 per channel
    row = first[b"data"][0]
    np.testing.assert_allclose(split.x_train[0, :, 0, 0], row[[0, 1024, 2048]] / 255.0)
    np.testing.assert_allclose(split.x_train[0, 0, 1, 2], row[32 + 2] / 255.0)
    assert split.y_train[:3].tolist() == first[b"labels"]
    assert split.y_test.tolist() == members["test_batch"][b"labels"]
    assert split.x_train.min() >= 0.0 and split.x_train.max() <= 1.0
    # the inner folder itself is accepted too
    inner = load_cifar(tmp_path / "x" / "cifar-10-batches-py", "cifar10")
    np.testing.assert_array_equal(inner.x_test, split.x_test)


def test_cifar100_uses_fine_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    train = _batch(rng, 5, b"fine_labels", 100)
    train[b"coarse_labels"] = [0] * 5
    test = _batch(rng, 2, b"fine_labels", 100)
    test[b"coarse_labels"] = [1] * 2
    members = {"train": train, "test": test, "meta": {b"fine_label_names": [b"apple"] * 100}}
    archive = _write_archive(tmp_path / "c100.tar.gz", "cifar-100-python", members)
    split = load_cifar(_extract(archive, tmp_path / "x"), "cifar100")
    assert split.y_train.tolist() == train[b"fine_labels"]
    assert split.x_test.shape == (2, 3, 32, 32)


def test_one_split_is_read_without_the_other(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    test = _batch(rng, 3, b"fine_labels", 100)
    archive = _write_archive(tmp_path / "c100.tar.gz", "cifar-100-python", {"test": test})
    x, y = load_cifar_split(_extract(archive, tmp_path / "x"), "cifar100", "test")
    assert x.shape == (3, 3, 32, 32) and x.dtype == np.float32
    np.testing.assert_allclose(x.reshape(3, -1), test[b"data"] / 255.0)
    assert y.tolist() == test[b"fine_labels"]
    with pytest.raises(DownloadError, match="cifar-100-python/train: missing CIFAR batch"):
        load_cifar_split(tmp_path / "x", "cifar100", "train")
    with pytest.raises(ValueError, match="unknown CIFAR split 'val'"):
        load_cifar_split(tmp_path / "x", "cifar100", "val")


def test_fetch_checks_md5_then_extracts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive, _ = _tiny_cifar10(tmp_path)
    md5 = hashlib.md5(archive.read_bytes(), usedforsecurity=False).hexdigest()
    good = Resource(archive.as_uri(), "cifar-10-python.tar.gz", md5=md5)
    monkeypatch.setitem(cifar.CIFAR_RESOURCES, "cifar10", good)
    out = fetch_cifar("cifar10", tmp_path / "dl")
    assert load_cifar(out, "cifar10").x_train.shape[0] == 15
    bad = Resource(archive.as_uri(), "cifar-10-python.tar.gz", md5="0" * 32)
    monkeypatch.setitem(cifar.CIFAR_RESOURCES, "cifar10", bad)
    with pytest.raises(DownloadError, match="md5 mismatch"):
        fetch_cifar("cifar10", tmp_path / "dl2")
    assert not (tmp_path / "dl2" / "cifar10").exists()


def test_published_checksums_are_pinned() -> None:
    assert CIFAR_RESOURCES["cifar10"].md5 == "c58f30108f718f92721af3b95e74349a"
    assert CIFAR_RESOURCES["cifar100"].md5 == "eb9058c3a382ffc7106e4002c42a8d85"
    for resource in CIFAR_RESOURCES.values():
        assert resource.url.startswith("https://www.cs.toronto.edu/~kriz/")


class _Evil:
    def __reduce__(self) -> tuple:
        return (print, ("pwned",))


def test_refuses_code_in_pickles(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    (folder / "train").write_bytes(pickle.dumps({b"data": _Evil()}, protocol=2))
    with pytest.raises(DownloadError, match="refusing pickled global"):
        load_cifar(tmp_path, "cifar100")


def test_error_paths(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown CIFAR dataset"):
        load_cifar(tmp_path, "cifar5")
    with pytest.raises(DownloadError, match="no cifar-10-batches-py/"):
        load_cifar(tmp_path, "cifar10")
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    (folder / "train").write_bytes(b"not a pickle")
    with pytest.raises(DownloadError, match="not a CIFAR python batch"):
        load_cifar(tmp_path, "cifar100")
    bad = {b"data": np.zeros((2, 10), np.uint8), b"fine_labels": [0, 1]}
    (folder / "train").write_bytes(_py2_style_pickle(bad))
    with pytest.raises(DownloadError, match=r"shape \(n, 3072\)"):
        load_cifar(tmp_path, "cifar100")
    (folder / "train").write_bytes(_py2_style_pickle({b"data": np.zeros((2, 3072), np.uint8)}))
    with pytest.raises(DownloadError, match="missing b'data' or"):
        load_cifar(tmp_path, "cifar100")
