"""Typed schema of the ``report_card`` section of params.yaml.

The gcr networks' architecture (backbone, CNN stride and kernel, heads' gamma) is read from the
metadata of gcr's model files, so it is not repeated here."""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param


@dataclass
class ProbeConfig:
    """Probe sizes."""

    n_samples: int = param(ge=10)  # training examples per model (features, NC, Hessian)
    class_rank: int = param(ge=1)  # dimension of each class's feature subspace
    top_k: int = param(ge=1)  # Hessian eigenvalues by Lanczos


@dataclass
class ReportCardConfig:
    """The ``report_card`` section. ``seeds``: which of gcr's seeds to probe (a model of a
    seed gcr did not train is simply absent)."""

    seeds: list[int] = param(min_len=1)
    probe: ProbeConfig = param()
