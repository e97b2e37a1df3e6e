"""Typed schema of the ``intrinsic_dim`` section of params.yaml (Li et al., arXiv:1804.08838).

Both profiles share it. ``mini`` trains FC nets on sklearn digits (the width family, with a
shuffled-label variant) and an MLP against a 1-D CNN on MNIST-1D; ``full`` trains the paper's
FC 784-W-W-10 family on MNIST and FC against LeNet on MNIST and CIFAR-10.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from subspacelab.api import param

DATASETS = ("digits", "mnist1d", "mnist", "cifar10")
PROJECTIONS = ("dense", "sparse", "fastfood")
SCHEDULES = ("constant", "cosine")


def _increasing(values: list[int]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))


@dataclass
class DigitsData:
    """sklearn's bundled 8x8 digits, stratified split (0.2 gives 1437 train / 360 test)."""

    test_size: float = param(gt=0, lt=1)
    seed: int = param(ge=0)


@dataclass
class Mnist1dData:
    """MNIST-1D generated locally (Greydanus & Kobak, arXiv 2011.14439)."""

    num_samples: int = param(ge=20)
    seed: int = param(ge=0)
    train_split: float = param(gt=0, lt=1)


@dataclass
class DataConfig:
    """Generated datasets. MNIST and CIFAR-10 need no settings: they are fetched (MD5-pinned)
    when the width family or a comparison names them."""

    digits: DigitsData | None = param()
    mnist1d: Mnist1dData | None = param()


@dataclass
class ToyConfig:
    """The toy problem of paper §2 (D = 1000, 10 block-sum constraints, so d_int = 10)."""

    d_grid: list[int] = param(ge=1, min_len=2)
    steps: int = param(ge=1)
    lr: float = param(gt=0)
    schedule: str = param(choices=SCHEDULES)
    init_std: float = param(ge=0)  # θ₀ ~ N(0, init_std²)
    log_every: int = param(ge=1)  # steps per epoch (one progress line each)

    def check(self) -> dict[str, str]:
        """The grid must increase strictly; the run is whole epochs of ``log_every`` steps."""
        if not _increasing(self.d_grid):
            return {"d_grid": "strictly increasing values"}
        if self.steps % self.log_every:
            return {"log_every": f"a divisor of steps ({self.steps}): the run is whole epochs"}
        return {}


@dataclass
class FcConfig:
    """A fully connected ReLU net in-W-...-W-classes (``depth`` hidden layers of ``width``)."""

    depth: int = param(ge=1)
    width: int = param(ge=1)


@dataclass
class ConvConfig:
    """Valid convolutions, each followed by ReLU and 2x max-pooling, then ReLU FC layers.

    1-D for signals, 2-D for images; LeNet is ``channels [6, 16], kernel_size 5,
    hidden [120, 84]``.
    """

    channels: list[int] = param(ge=1, min_len=1)
    kernel_size: int = param(ge=1)
    hidden: list[int] = param(ge=1)


@dataclass
class WidthFamily:
    """FC nets of one depth and several widths (claims b, c) and their shuffled-label twins (d)."""

    dataset: str = param(choices=DATASETS)
    depth: int = param(ge=1)
    widths: list[int] = param(ge=1, min_len=2)
    d_grid: list[int] = param(ge=1, min_len=2)
    shuffled_widths: list[int] = param(ge=1, min_len=1)
    shuffled_d_grid: list[int] = param(ge=1, min_len=2)

    def check(self) -> dict[str, str]:
        """Distinct widths; shuffled widths among them; strictly increasing grids; a shuffled
        grid reaching 3x the real one (so a censored shuffled d_int90 can still decide (d))."""
        if len(set(self.widths)) != len(self.widths):
            return {"widths": "distinct widths"}
        if not set(self.shuffled_widths) <= set(self.widths):
            return {"shuffled_widths": f"a subset of widths {self.widths}"}
        if not _increasing(self.d_grid):
            return {"d_grid": "strictly increasing values"}
        if not _increasing(self.shuffled_d_grid):
            return {"shuffled_d_grid": "strictly increasing values"}
        if self.shuffled_d_grid[-1] < 3 * self.d_grid[-1]:
            # claim (d): a shuffled d_int90 above its grid must still be >= 3x any real one
            return {
                "shuffled_d_grid": f"a last value >= 3 x the last d_grid value ({self.d_grid[-1]})"
            }
        return {}


@dataclass
class ArchCompare:
    """An MLP against a CNN on one dataset (claim e; the paper's FC against LeNet)."""

    dataset: str = param(choices=DATASETS)
    mlp: FcConfig = param()
    cnn: ConvConfig = param()
    d_grid: list[int] = param(ge=1, min_len=2)

    def check(self) -> dict[str, str]:
        """The grid must increase strictly."""
        return {} if _increasing(self.d_grid) else {"d_grid": "strictly increasing values"}


@dataclass
class TrainConfig:
    """Adam for the baselines and every subspace run alike (identical hyperparameters)."""

    epochs: int = param(ge=1)
    batch_size: int | None = param(ge=1)  # null: full batch (one step per epoch)
    lr: float = param(gt=0)
    weight_decay: float = param(ge=0)
    schedule: str = param(choices=SCHEDULES)
    projection: str = param(choices=PROJECTIONS)
    max_joint: int = param(ge=1)  # models trained together in one Lightning run
    log_every: int = param(ge=1)  # epochs per progress line
    num_workers: int = param(ge=0)


@dataclass
class EvalConfig:
    """d_int90: the smallest d reaching ``fraction`` of the baseline's accuracy."""

    fraction: float = param(gt=0, le=1)
    batch_size: int = param(ge=1)


@dataclass
class IntrinsicDimConfig:
    """The ``intrinsic_dim`` study's configuration (one profile)."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    toy: ToyConfig = param()
    family: WidthFamily = param()
    compare: list[ArchCompare] = param()
    train: TrainConfig = param()
    eval: EvalConfig = param()

    def check(self) -> dict[str, str]:
        """Generated datasets that an experiment names must be configured."""
        used = {self.family.dataset} | {c.dataset for c in self.compare}
        if "digits" in used and self.data.digits is None:
            return {"data": "a digits section: an experiment uses the digits dataset"}
        if "mnist1d" in used and self.data.mnist1d is None:
            return {"data": "an mnist1d section: an experiment uses the mnist1d dataset"}
        if len({c.dataset for c in self.compare}) != len(self.compare):
            return {"compare": "at most one comparison per dataset"}
        return {}


def used_datasets(family: WidthFamily, compare: list[ArchCompare]) -> list[str]:
    """The datasets the experiments need, in a fixed order."""
    used = {family.dataset} | {c.dataset for c in compare}
    return [name for name in DATASETS if name in used]
