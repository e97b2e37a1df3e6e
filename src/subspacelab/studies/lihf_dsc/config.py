"""Typed schema of the ``lihf_dsc`` section of params.yaml (values live only there).

LIHF-DSC: Sindičić & Kopriva, 2025, arXiv:2504.18179.
"""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param

DATASETS = ("digits", "synthetic", "coil20", "orl")


@dataclass
class DataConfig:
    """Mini: 600 digits and a warped union of affine subspaces; full: COIL20 / ORL .mat files."""

    datasets: list[str] = param(choices=DATASETS, min_len=1)
    data_seed: int = param(ge=0)  # the data are fixed; seeds vary network init and k-means
    digits_per_class: int = param(ge=2)
    syn_per_subspace: int = param(ge=2)
    syn_subspaces: int = param(ge=2)
    syn_dim: int = param(ge=1)
    syn_offset: float = param(ge=0)  # norm of each subspace's centre (k-means' handle)
    syn_noise: float = param(ge=0)
    mat_url: str = param()
    mat_dir: str = param()
    mat_files: dict[str, str] = param()  # dataset -> file name
    mat_sha256: dict[str, str] = param()  # file name -> pinned SHA-256
    image_side: int = param(ge=4)


@dataclass
class ModelConfig:
    """Autoencoder and the fixed schedule of the self-stopping stages."""

    channels: list[int] = param(ge=1, min_len=2)
    kernel: int = param(ge=1)
    lr: float = param(gt=0)
    pretrain_epochs: int = param(ge=0)
    max_epochs: int = param(ge=1)  # cap of stage 1 + stage 2 together (the script's 700)
    stage2_weight: float = param(ge=0)
    eps: float = param(gt=0)  # self-stop threshold on the relative change of the smoothed loss
    ema: float = param(ge=0, lt=1)  # smoothing of the loss before the stopping rule
    check_every: int = param(ge=1)
    labels_every: int = param(ge=1)  # stage 2 recomputes the spectral labels every m epochs
    top_k: int = param(ge=0)  # subspace-dimension prior; 0: from the data (see the study)


@dataclass
class BaselineConfig:
    """The label-oracle grids of the linear baselines."""

    lsr_lambdas: list[float] = param(gt=0, min_len=1)
    ssc_alphas: list[float] = param(gt=0, min_len=1)
    lrr_taus: list[float] = param(gt=0, min_len=1)


@dataclass
class LIHFConfig:
    """The lihf_dsc study."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    model: ModelConfig = param()
    baselines: BaselineConfig = param()
