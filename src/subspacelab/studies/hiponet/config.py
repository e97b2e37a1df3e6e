"""Typed params of hiponet (arXiv 2502.07746); values live in params.yaml only."""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param

COHORTS = ("melanoma", "pdo", "covid", "st", "custom")


@dataclass
class CohortData:
    """Full profile (spec §7): one of the paper's cohorts in the official repository's on-disk
    layout under ``root`` (the lab's files; not public: see the study's docstring), each of its
    files pinned by SHA-256 in ``checksums`` (file name -> ``sha256:<hex>``); ``st_dataset`` /
    ``st_label`` name the spatial-transcriptomics files (``<kind>_<dataset>_<label>.pt``)."""

    name: str = param(choices=COHORTS)
    root: str = param()
    checksums: dict[str, str] = param()
    st_dataset: str = param()
    st_label: str = param()

    def unpinned(self) -> dict[str, str]:
        """The cohort's files with no SHA-256 yet (the lab distributes none)."""
        from subspacelab.studies.hiponet.full import cohort_files

        files = cohort_files(self.name, self.st_dataset, self.st_label)
        return {
            f"checksums.{name}": f"the sha256 of {name} (clinical data: record it on receipt)"
            for name in files
            if not self.checksums.get(name)
        }


@dataclass
class DataConfig:
    """The synthetic cohort (spec §6; :mod:`subspacelab.shapes.cohorts`): patients, cells per
    cloud, markers, shape jitter, the patients' train share, and the cells of the K = 2 spot check;
    ``cohort`` (full profile) replaces it with a real cohort, cells subsampled to ``n_cells``."""

    n_patients: int = param(ge=6)
    n_cells: int = param(ge=8)
    n_markers: int = param(ge=10)
    jitter: float = param(ge=0.0)
    train_fraction: float = param(gt=0.0, lt=1.0)
    k2_cells: int = param(ge=4)
    cohort: CohortData | None = param()

    def check(self) -> dict[str, str]:
        """The spot check's clouds a subset of the cells."""
        bad: dict[str, str] = {}
        if self.k2_cells > self.n_cells:
            bad["k2_cells"] = f"<= n_cells ({self.n_cells})"
        return bad


@dataclass
class ModelConfig:
    """HiPoNet (spec §3-4): views V, Gaussian scale σ and edge threshold, dyadic scales J,
    head (BatchNorm + MLP: hidden width, linear layers), the triangle cap of K = 2; σ of the
    spec (0.5) for the edge-density diagnostic; the baselines' kNN degree, GCN width, PointNet
    and DeepSets widths."""

    views: int = param(ge=1)
    sigma: float = param(gt=0.0)
    spec_sigma: float = param(gt=0.0)
    threshold: float = param(ge=0.0, le=1.0)
    scales: int = param(ge=2)
    hidden: int = param(ge=1)
    layers: int = param(ge=2)
    max_triangles: int = param(ge=0)
    knn: int = param(ge=1)
    gcn_hidden: int = param(ge=1)
    pointnet_widths: list[int] = param(min_len=1)
    deepsets_widths: list[int] = param(min_len=1)


@dataclass
class TrainConfig:
    """AdamW for every arm (HiPoNet's lr and decoupled weight decay; the baselines' own lr, no
    decay), epochs and clouds per batch (spec §4)."""

    epochs: int = param(ge=1)
    batch: int = param(ge=1)
    lr: float = param(gt=0.0)
    weight_decay: float = param(ge=0.0)
    baseline_lr: float = param(gt=0.0)


@dataclass
class HiponetConfig:
    """One profile of hiponet's section in params.yaml."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    model: ModelConfig = param()
    train: TrainConfig = param()

    def check(self) -> dict[str, str]:
        """The kNN graph needs more cells than neighbours."""
        if self.model.knn >= self.data.n_cells:
            return {"model": f"knn < n_cells ({self.data.n_cells})"}
        return {}
