"""ImageNet preparation (data.imagenet) on tiny archives in the official layout."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from subspacelab.config import ParamsError, build
from subspacelab.data.download import DownloadError
from subspacelab.data.imagenet import (
    IMAGENET_ARCHIVES,
    ImageNetData,
    imagenet_split,
    prepare_imagenet,
    verify_archives,
)
from tests.data.imagenet_archives import tiny_imagenet_archives


def test_prepare_imagenet_imagefolder_layout(tmp_path: Path) -> None:
    tiny_imagenet_archives(tmp_path / "arch")
    counts = prepare_imagenet(tmp_path / "arch", tmp_path / "prep")
    assert counts == {"train": 4, "val": 3}
    prep = tmp_path / "prep"
    assert sorted(p.name for p in (prep / "val" / "n01443537").iterdir()) == [
        "ILSVRC2012_val_00000001.JPEG",
        "ILSVRC2012_val_00000003.JPEG",
    ]
    assert (prep / "val" / "n01440764" / "ILSVRC2012_val_00000002.JPEG").read_bytes() == b"val2"
    assert len(list((prep / "train" / "n01440764").iterdir())) == 2
    assert not (prep / ".prepare").exists()


def test_verify_archives_records_sha256_and_never_deletes(tmp_path: Path) -> None:
    tiny_imagenet_archives(tmp_path)
    sums = {
        n: "md5:" + hashlib.md5((tmp_path / n).read_bytes(), usedforsecurity=False).hexdigest()
        for n in IMAGENET_ARCHIVES
    }
    manifest = verify_archives(tmp_path, sums)
    val = IMAGENET_ARCHIVES[1]
    assert manifest[val]["sha256"] == hashlib.sha256((tmp_path / val).read_bytes()).hexdigest()
    with pytest.raises(DownloadError, match="md5 mismatch"):
        verify_archives(tmp_path, {**sums, val: "md5:" + "0" * 32})
    assert (tmp_path / val).is_file()
    (tmp_path / val).unlink()
    with pytest.raises(DownloadError, match=r"missing ILSVRC2012_img_val\.tar.*image-net\.org"):
        verify_archives(tmp_path, sums)


def test_imagenet_split_needs_torchvision_and_a_known_split(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValueError, match="train or val"):
        imagenet_split(Path("."), "test", 224, 256)
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(ImportError, match=r"subspacelab\[full\]"):
        imagenet_split(Path("."), "val", 224, 256)


def test_imagenet_section_errors_name_the_key() -> None:
    good = {
        "root": "imagenet",
        "checksums": {n: "md5:" + "0" * 32 for n in IMAGENET_ARCHIVES},
        "image_size": 224,
        "resize_size": 256,
    }
    assert build(ImageNetData, good, "imagenet").image_size == 224
    with pytest.raises(ParamsError, match="checksums"):
        build(ImageNetData, {**good, "checksums": {IMAGENET_ARCHIVES[0]: "md5:1"}}, "imagenet")
    with pytest.raises(ParamsError, match="resize_size"):
        build(ImageNetData, {**good, "resize_size": 200}, "imagenet")
