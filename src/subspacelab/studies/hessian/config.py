"""Typed schema of the ``hessian`` section of params.yaml (Sagun et al., arXiv:1706.04454).

mini: Gaussian blobs and tanh MLPs with the exact Hessian; full: MNIST and a wide FC net with
the top of the spectrum by Lanczos.
"""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param

LOSSES = ("mse", "ce")


@dataclass
class BlobsData:
    """``sklearn.datasets.make_blobs`` with labels = clusters."""

    n: int = param(ge=10)
    dim: int = param(ge=1)
    cluster_std: float = param(gt=0)
    center_box: float = param(gt=0)  # centres drawn in (-box, box)
    seed: int = param(ge=0)  # the data's seed: the same data for every training seed


@dataclass
class MnistData:
    """MNIST IDX files from a mirror, checked by the published md5s."""

    url: str = param()  # base URL ending in '/'
    md5: dict[str, str] = param()  # file name -> md5
    n: int = param(ge=10)  # training subset for the full-batch Hessian


@dataclass
class DataConfig:
    """mini: ``blobs`` with ``clusters`` values of k; full: ``mnist`` (10 classes)."""

    blobs: BlobsData | None = param()
    mnist: MnistData | None = param()
    clusters: list[int] = param(ge=2, min_len=1)
    std_factor: float = param(gt=1)  # the less separable variant: cluster_std × factor

    def check(self) -> dict[str, str]:
        """Exactly one source."""
        if (self.blobs is None) == (self.mnist is None):
            return {"blobs": "exactly one of data.blobs (mini) and data.mnist (full) set"}
        return {}


@dataclass
class ModelConfig:
    """MLP in → W → W → k with tanh, float64."""

    widths: list[int] = param(ge=1, min_len=2)
    sep_width: int = param(ge=1)  # the width of the separability and SB/LB cells


@dataclass
class TrainConfig:
    """Adam full-batch to a matched training loss (spec: compare spectra at matched loss)."""

    losses: list[str] = param(choices=LOSSES, min_len=1)
    target: dict[str, float] = param()  # loss name -> matched training loss
    lr: float = param(gt=0)
    max_steps: int = param(ge=1)
    small_batch: int = param(ge=1)  # SB run
    sblb_loss: str = param(choices=LOSSES)

    def check(self) -> dict[str, str]:
        """Every loss has a target."""
        missing = [name for name in (*self.losses, self.sblb_loss) if name not in self.target]
        return {"target": f"a value for each of {missing}"} if missing else {}


@dataclass
class EvalConfig:
    """Spectrum summaries."""

    exact: bool = param()  # full Hessian (mini) or Lanczos top-m (full)
    top_m: int = param(ge=1)  # Lanczos eigenvalues when not exact
    bulk_rel: float = param(gt=0, lt=1)  # bulk: |λ| < bulk_rel · λ_max
    quantile: float = param(gt=0, lt=1)  # threshold rule: bulk edge = quantile of |λ|
    margin: float = param(gt=1)  # outlier: λ > margin · bulk edge
    alphas: list[float] = param(min_len=3)  # SB/LB line


@dataclass
class HessianConfig:
    """The ``hessian`` section."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    model: ModelConfig = param()
    train: TrainConfig = param()
    eval: EvalConfig = param()
