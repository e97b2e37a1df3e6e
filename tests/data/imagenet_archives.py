"""Tiny ILSVRC2012 archives in the official layout, for the ImageNet preparation tests."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

from subspacelab.data.imagenet import IMAGENET_ARCHIVES


def tar(path: Path, members: dict[str, bytes]) -> Path:
    """A tar (``.gz``: gzipped) of ``members`` (name -> bytes) at ``path``."""
    with tarfile.open(path, "w:gz" if path.name.endswith(".gz") else "w") as tf:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    return path


def tiny_imagenet_archives(root: Path) -> None:
    """The three archives in ``root``: two leaf classes (and a non-leaf synset), three
    validation images, two training images per class."""
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    synsets = np.array(
        [(1, "n01440764", 0), (2, "n01443537", 0), (3, "n00001740", 2)],
        dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("num_children", "O")],
    )
    meta = io.BytesIO()
    savemat(meta, {"synsets": synsets})
    data = "ILSVRC2012_devkit_t12/data/"
    tar(
        root / IMAGENET_ARCHIVES[2],
        {
            data + "meta.mat": meta.getvalue(),
            data + "ILSVRC2012_validation_ground_truth.txt": b"2\n1\n2\n",
        },
    )
    tar(
        root / IMAGENET_ARCHIVES[1],
        {f"ILSVRC2012_val_0000000{i}.JPEG": f"val{i}".encode() for i in (1, 2, 3)},
    )
    inner = {}
    for wnid in ("n01440764", "n01443537"):
        buf = root / f"{wnid}.tar"
        tar(buf, {f"{wnid}_{j}.JPEG": b"jpeg" for j in range(2)})
        inner[f"{wnid}.tar"] = buf.read_bytes()
        buf.unlink()
    tar(root / IMAGENET_ARCHIVES[0], inner)
