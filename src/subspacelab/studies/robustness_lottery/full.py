"""The full profile of ``robustness_lottery`` (Li et al., arXiv:2206.07918): CIFAR-10, its
corrupted test set CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019) and the Conv-8 network of the
paper's pruning comparison (Diffenderfer et al. 2021).

CIFAR-10-C is one tar archive on Zenodo (record 2535967) holding, per corruption, an
``<name>.npy`` of shape (50000, 32, 32, 3) uint8 — the 10,000 CIFAR-10 test images at severity
1, then 2, ..., 5 — and ``labels.npy`` (50000,). The record publishes the archive's MD5, pinned
in :data:`CIFAR10C`; ``download.fetch`` checks it before :func:`extract_cifar10c` unpacks it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from subspacelab.data.download import DownloadError, Resource, safe_extract

# MD5 as listed on https://zenodo.org/records/2535967 (file CIFAR-10-C.tar, 2,918,471,680 bytes).
CIFAR10C = Resource(
    url="https://zenodo.org/records/2535967/files/CIFAR-10-C.tar?download=1",
    filename="CIFAR-10-C.tar",
    md5="56bf5dcef84df0e2308c6dcbcbbd8499",
)
CIFAR10C_CORRUPTIONS = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "speckle_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "gaussian_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
    "spatter",
    "saturate",
)
PER_SEVERITY = 10_000  # CIFAR-10's test set, repeated once per severity


def extract_cifar10c(archive: Path, dest: Path) -> Path:
    """Safely extract a verified ``CIFAR-10-C.tar`` into ``dest``; returns ``dest/CIFAR-10-C``."""
    safe_extract(archive, dest)
    folder = dest / "CIFAR-10-C"
    if not (folder / "labels.npy").is_file():
        raise DownloadError(f"{archive}: no CIFAR-10-C/labels.npy inside")
    return folder


def _as_nchw(images: np.ndarray) -> Tensor:
    """uint8 (n, 32, 32, 3) → float32 (n, 3, 32, 32) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float() / 255.0


def load_cifar10c(
    folder: Path, corruption: str, severity: int, n: int, labels: np.ndarray
) -> Tensor:
    """The first ``n`` test images of one corruption at one severity, as float NCHW in [0, 1].

    ``labels`` are CIFAR-10's test labels: the file's labels must repeat them (a check that the
    archive is the one the clean test set belongs to).
    """
    if corruption not in CIFAR10C_CORRUPTIONS:
        raise ValueError(f"unknown CIFAR-10-C corruption {corruption!r}")
    path = folder / f"{corruption}.npy"
    if not path.is_file():
        raise DownloadError(f"{path}: missing; extract CIFAR-10-C.tar here")
    data = np.load(path, mmap_mode="r", allow_pickle=False)
    file_labels = np.load(folder / "labels.npy", mmap_mode="r", allow_pickle=False)
    if data.ndim != 4 or data.shape[1:] != (32, 32, 3) or data.dtype != np.uint8:
        raise DownloadError(f"{path}: expected (5·n, 32, 32, 3) uint8, got {data.shape}")
    if len(data) % 5 or file_labels.shape != (len(data),):
        raise DownloadError(f"{path}: {len(data)} images, {file_labels.shape} labels")
    per_severity = len(data) // 5  # 10,000 in the release
    if not 1 <= severity <= 5 or not 1 <= n <= per_severity:
        raise ValueError(f"severity {severity} (1-5) or n {n} (1-{per_severity}) out of range")
    start = (severity - 1) * per_severity
    if not np.array_equal(file_labels[start : start + n], labels[:n]):
        raise DownloadError(f"{folder / 'labels.npy'}: labels differ from CIFAR-10's test set")
    return _as_nchw(np.asarray(data[start : start + n]))


class Conv8(nn.Module):
    """Conv-8 (Frankle & Carbin 2019; Diffenderfer et al. 2021): four blocks of two 3×3 convs
    (widths c, 2c, 4c, 8c) each followed by 2×2 max pooling, then FC(hidden) → FC(hidden)
    (= h) → FC(classes). ``features`` returns h, ``fc2`` is the final layer (as SmallCNN)."""

    def __init__(self, channels: int, hidden: int, classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = 3
        for mult in (1, 2, 4, 8):
            for _ in range(2):
                layers += [nn.Conv2d(width, channels * mult, 3, padding=1), nn.ReLU()]
                width = channels * mult
            layers.append(nn.MaxPool2d(2))
        self.body = nn.Sequential(*layers)
        self.fc0: nn.Module = nn.Linear(width * 2 * 2, hidden)
        self.fc1: nn.Module = nn.Linear(hidden, hidden)
        self.fc2: nn.Module = nn.Linear(hidden, classes)

    def features(self, x: Tensor) -> Tensor:
        """The last hidden layer h (n, hidden) of images (n, 3, 32, 32)."""
        a = self.body(x).flatten(1)
        return torch.relu(self.fc1(torch.relu(self.fc0(a))))

    def forward(self, x: Tensor) -> Tensor:
        """Logits."""
        return self.fc2(self.features(x))
