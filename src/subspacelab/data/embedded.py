"""Datasets that need no network: sklearn's bundled digits and locally generated MNIST-1D.

MNIST-1D (Greydanus & Kobak, 2020, arXiv 2011.14439) is generated with ``make_dataset``; its
``get_dataset`` downloads and is never called here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Split:
    """Arrays of one labelled dataset split into train and test."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def mnist1d(num_samples: int, seed: int, train_split: float = 0.8) -> Split:
    """Generate MNIST-1D locally (length-40 signals, 10 classes)."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = seed
    args.train_split = train_split
    data = make_dataset(args)
    return Split(
        data["x"].astype(np.float32),
        data["y"].astype(np.int64),
        data["x_test"].astype(np.float32),
        data["y_test"].astype(np.int64),
    )


def digits(test_size: float, seed: int) -> Split:
    """sklearn's 8x8 digits (1797 images, bundled), stratified split, pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x / 16.0, y, test_size=test_size, random_state=seed, stratify=y
    )
    return Split(
        x_tr.astype(np.float32),
        y_tr.astype(np.int64),
        x_te.astype(np.float32),
        y_te.astype(np.int64),
    )
