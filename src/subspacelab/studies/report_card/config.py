"""Typed schema of the ``report_card`` section of params.yaml."""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.config import param


@dataclass
class GcrModels:
    """How to rebuild the gcr study's networks: its model files record the head, task and class
    count but not the trunk's stride, which does not change any parameter's shape."""

    stride: int = param(ge=1)
    gamma: float = param(gt=0)


@dataclass
class ProbeConfig:
    """Probe sizes."""

    n_samples: int = param(ge=10)  # training examples per model (features, NC, Hessian)
    class_rank: int = param(ge=1)  # dimension of each class's feature subspace
    top_k: int = param(ge=1)  # Hessian eigenvalues by Lanczos


@dataclass
class ReportCardConfig:
    """The ``report_card`` section."""

    seeds: list[int] = param(min_len=1)  # unused by the probes (they read the models' seeds)
    gcr: GcrModels = param()
    probe: ProbeConfig = param()
