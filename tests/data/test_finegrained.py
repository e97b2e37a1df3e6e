"""Fine-grained transfer sets (data.finegrained) on tiny archives in the official layouts."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from subspacelab.config import ParamsError, build
from subspacelab.data.download import DownloadError
from subspacelab.data.finegrained import SETS, FineGrainedData, fetch_sets, split_files


def _tar(path: Path, files: dict[str, bytes], gz: bool) -> None:
    with tarfile.open(path, "w:gz" if gz else "w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def _mat(payload: dict[str, object]) -> bytes:
    buf = io.BytesIO()
    savemat(buf, payload)
    return buf.getvalue()


def tiny_archives(root: Path) -> dict[str, str]:
    """The four archives of the three sets with two classes each; returns their sha256 pins."""
    root.mkdir(parents=True, exist_ok=True)
    _tar(
        root / "food-101.tar.gz",
        {
            "food-101/meta/classes.txt": b"apple_pie\nbaklava\n",
            "food-101/meta/train.txt": b"apple_pie/11\nbaklava/21\nbaklava/22\n",
            "food-101/meta/test.txt": b"apple_pie/12\n",
            **{
                f"food-101/images/{p}.jpg": p.encode()
                for p in ("apple_pie/11", "apple_pie/12", "baklava/21", "baklava/22")
            },
        },
        gz=True,
    )
    _tar(
        root / "CUB_200_2011.tgz",
        {
            "CUB_200_2011/images.txt": b"1 001.A/a1.jpg\n2 002.B/b1.jpg\n3 002.B/b2.jpg\n",
            "CUB_200_2011/image_class_labels.txt": b"1 1\n2 2\n3 2\n",
            "CUB_200_2011/train_test_split.txt": b"1 1\n2 0\n3 1\n",
            **{
                f"CUB_200_2011/images/{p}": b"x"
                for p in ("001.A/a1.jpg", "002.B/b1.jpg", "002.B/b2.jpg")
            },
        },
        gz=True,
    )
    files = np.array(["n1-chihuahua/c1.jpg", "n2-husky/h1.jpg"], dtype=object)
    _tar(root / "images.tar", {f"Images/{f}": b"d" for f in files}, gz=False)
    _tar(
        root / "lists.tar",
        {
            "train_list.mat": _mat({"file_list": files, "labels": np.array([1, 2])}),
            "test_list.mat": _mat({"file_list": files[:1], "labels": np.array([1])}),
        },
        gz=False,
    )
    return {
        a.filename: "sha256:" + hashlib.sha256((root / a.filename).read_bytes()).hexdigest()
        for arcs in SETS.values()
        for a in arcs
    }


def _data(root: Path, checksums: dict[str, str], sets: list[str] | None = None) -> FineGrainedData:
    sets = sets or list(SETS)
    wanted = {a.filename for s in sets for a in SETS[s]}
    raw = {
        "root": str(root),
        "sets": sets,
        "checksums": {k: v for k, v in checksums.items() if k in wanted},
        "image_size": 224,
        "resize_size": 256,
    }
    return build(FineGrainedData, raw, "ulsam.full.data.finegrained")


def test_fetch_unpack_and_read_the_official_splits(tmp_path: Path) -> None:
    pins = tiny_archives(tmp_path / "dl")
    manifest = fetch_sets(_data(tmp_path / "dl", pins), tmp_path / "dl", tmp_path / "prep")
    assert set(manifest) == set(pins)
    assert all("sha256:" + m["sha256"] == pins[f] for f, m in manifest.items())
    prep = tmp_path / "prep"
    food = split_files(prep, "food101", "train")
    assert [(p.parent.name, p.name, y) for p, y in food] == [
        ("apple_pie", "11.jpg", 0),
        ("baklava", "21.jpg", 1),
        ("baklava", "22.jpg", 1),
    ]
    assert food[0][0].read_bytes() == b"apple_pie/11"
    assert [(p.name, y) for p, y in split_files(prep, "cub200", "train")] == [
        ("a1.jpg", 0),
        ("b2.jpg", 1),
    ]
    assert [(p.name, y) for p, y in split_files(prep, "cub200", "test")] == [("b1.jpg", 1)]
    dogs = split_files(prep, "dogs", "train")
    assert [(p.name, y) for p, y in dogs] == [("c1.jpg", 0), ("h1.jpg", 1)]
    assert all(p.is_file() for p, _ in dogs)


def test_a_wrong_pin_stops_before_unpacking(tmp_path: Path) -> None:
    pins = tiny_archives(tmp_path / "dl")
    pins["CUB_200_2011.tgz"] = "md5:" + "0" * 32
    with pytest.raises(DownloadError, match=r"CUB_200_2011\.tgz: md5 mismatch"):
        fetch_sets(_data(tmp_path / "dl", pins, ["cub200"]), tmp_path / "dl", tmp_path / "prep")
    assert not (tmp_path / "prep" / "cub200").exists()
    assert (tmp_path / "dl" / "CUB_200_2011.tgz").is_file()  # never deleted


def test_dogs_publish_no_checksum_so_they_stay_unpinned(tmp_path: Path) -> None:
    pins = {a.filename: a.published for a in SETS["dogs"]}
    data = _data(tmp_path, pins, ["dogs"])
    assert data.unpinned() == {
        "checksums.images.tar": "the sha256 of images.tar (no checksum is published)",
        "checksums.lists.tar": "the sha256 of lists.tar (no checksum is published)",
    }
    with pytest.raises(DownloadError, match="no checksum pinned"):
        fetch_sets(data, tmp_path / "dl", tmp_path / "prep")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"sets": ["food101", "flowers"]}, "sets"),
        ({"checksums": {"food-101.tar.gz": "md5:xyz"}}, "checksums"),
        ({"resize_size": 100}, "resize_size"),
    ],
)
def test_bad_params_are_named(change: dict[str, object], field: str) -> None:
    raw: dict[str, object] = {
        "root": "data/fg",
        "sets": ["food101"],
        "checksums": {"food-101.tar.gz": SETS["food101"][0].published},
        "image_size": 224,
        "resize_size": 256,
        **change,
    }
    with pytest.raises(ParamsError, match=field):
        build(FineGrainedData, raw, "ulsam.full.data.finegrained")


def test_unknown_set_or_split_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown fine-grained set"):
        split_files(tmp_path, "flowers", "train")
    with pytest.raises(ValueError, match="split must be"):
        split_files(tmp_path, "food101", "val")
