"""Typed schema of the ``clustering_compare`` section of params.yaml.

The method sections reuse the studies' own schemas, so a method runs here exactly as there.
"""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param
from subspacelab.studies.geo_sae.config import ModelConfig as SAEConfig
from subspacelab.studies.lihf_dsc.config import ModelConfig as LIHFModelConfig
from subspacelab.studies.mlc.config import TrainConfig as MLCTrainConfig


@dataclass
class DataConfig:
    """The shared inputs: digits (60 per class) and a union of subspaces in R^64."""

    data_seed: int = param(ge=0)
    digits_per_class: int = param(ge=2)
    syn_per_subspace: int = param(ge=2)
    syn_subspaces: int = param(ge=2)
    syn_dim: int = param(ge=1)
    syn_noise: float = param(ge=0)


@dataclass
class BackboneConfig:
    """The lab backbone for digits: an MLP autoencoder trained without labels; its code (a
    square number of dimensions, so LIHF's conv AE can read it as an image) is the input."""

    hidden: int = param(ge=1)
    code_dim: int = param(choices=(4, 16, 64))
    epochs: int = param(ge=1)
    lr: float = param(gt=0)


@dataclass
class BaselineConfig:
    """Fixed (not label-tuned) settings of the linear baselines and of the graph methods."""

    lsr_lambda: float = param(gt=0)
    ssc_alpha: float = param(gt=0)
    lrr_tau: float = param(gt=0)
    knn: int = param(ge=1)
    s2cag_steps: int = param(ge=0)
    s2cag_alpha: float = param(gt=0)
    s2cag_power_iters: int = param(ge=0)


@dataclass
class MLCModel:
    """MLC trunk widths and head dimension."""

    hidden: list[int] = param(ge=1)
    z_dim: int = param(ge=2)


@dataclass
class CompareConfig:
    """The clustering_compare study."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    backbone: BackboneConfig = param()
    baselines: BaselineConfig = param()
    mlc_model: MLCModel = param()
    mlc: MLCTrainConfig = param()
    lihf: LIHFModelConfig = param()
    sae: SAEConfig = param()
