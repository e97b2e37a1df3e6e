"""gdl's full profile: rotated MNIST (MNIST-rot, Larochelle et al. 2007; 12k train+valid /
50k test) in place of sklearn's digits for the C4 world (spec §7).

The archive holds two ``.amat`` text tables, one image per row: 784 pixel values in [0, 1]
followed by the label. The pixels of each row are stored column by column, so a row
reshaped to 28 × 28 is the transposed digit: :func:`load_amat` transposes it back.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from subspacelab.data.download import Resource, fetch, safe_extract

ARCHIVE = "mnist_rotation_new.zip"
TRAIN = "mnist_all_rotation_normalized_float_train_valid.amat"
TEST = "mnist_all_rotation_normalized_float_test.amat"
SIDE = 28


def load_amat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, 1, 28, 28)`` float32 and labels int64 of one MNIST-rot table."""
    table = np.loadtxt(path, dtype=np.float64, ndmin=2)
    if table.shape[1] != SIDE * SIDE + 1:
        raise ValueError(
            f"{path.name}: rows of {SIDE * SIDE + 1} numbers expected, got {table.shape[1]}"
        )
    labels = table[:, -1]
    if np.any(labels != np.round(labels)) or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{path.name}: the last column must hold labels 0..9")
    x = table[:, :-1].reshape(-1, 1, SIDE, SIDE).transpose(0, 1, 3, 2)
    return np.ascontiguousarray(x, dtype=np.float32), labels.astype(np.int64)


def mnist_rot(
    root: Path, url: str, sha256: str, progress: Callable[[str], None]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fetch (or verify a copy placed by hand in ``root``), extract and load MNIST-rot:
    ``x_train, y_train, x_test, y_test``."""
    archive = fetch(Resource(url, ARCHIVE, sha256=sha256), root, progress)
    folder = root / "mnist_rot"
    if not (folder / TRAIN).is_file():
        safe_extract(archive, folder)
    tables = {p.name: p for p in folder.rglob("*.amat")}
    missing = [name for name in (TRAIN, TEST) if name not in tables]
    if missing:
        raise ValueError(f"{archive.name}: missing {', '.join(missing)}")
    x_tr, y_tr = load_amat(tables[TRAIN])
    x_te, y_te = load_amat(tables[TEST])
    return x_tr, y_tr, x_te, y_te
