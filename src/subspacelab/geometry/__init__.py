"""Shared geometry toolkit: bases, Grassmann optimisation, streaming PCA, random subspaces.

Pure torch, no I/O. Submodules:

* :mod:`~subspacelab.geometry.bases` — orthonormal bases, projections, principal angles,
  effective rank (Roy & Vetterli 2007).
* :mod:`~subspacelab.geometry.grassmann` — Grassmann Class Representation (Wang, Li & Zhang,
  ICCV 2023, arXiv:2308.01547): subspace logits, geodesic steps, :class:`RiemannianSGD`.
* :mod:`~subspacelab.geometry.pca` — streaming float64 moments (Chan et al.) and PCA with the
  explained-variance rank rule of SubspaceAD (Lendering et al., CVPR 2026, arXiv:2602.23013).
* :mod:`~subspacelab.geometry.random_subspace` — random projections and subspace training for
  intrinsic dimension (Li et al., ICLR 2018, arXiv:1804.08838).
"""

from subspacelab.geometry.bases import (
    effective_rank,
    grassmann_distance,
    is_orthonormal,
    orthonormality_error,
    orthonormalize,
    principal_angles,
    project,
    projection_residual,
)
from subspacelab.geometry.grassmann import (
    RiemannianSGD,
    bases_to_weight,
    geodesic_step,
    horizontal_projection,
    init_class_subspaces,
    reorthonormalize,
    subspace_logits,
    weight_to_bases,
)
from subspacelab.geometry.pca import (
    PCAResult,
    StreamingMoments,
    explained_variance_rank,
    fit_pca,
    pca_from_moments,
)
from subspacelab.geometry.random_subspace import (
    DenseProjection,
    FastfoodProjection,
    RandomProjection,
    SparseProjection,
    SubspaceModel,
    fwht,
    make_projection,
    toy_min_loss,
    toy_objective,
)

__all__ = [
    "DenseProjection",
    "FastfoodProjection",
    "PCAResult",
    "RandomProjection",
    "RiemannianSGD",
    "SparseProjection",
    "StreamingMoments",
    "SubspaceModel",
    "bases_to_weight",
    "effective_rank",
    "explained_variance_rank",
    "fit_pca",
    "fwht",
    "geodesic_step",
    "grassmann_distance",
    "horizontal_projection",
    "init_class_subspaces",
    "is_orthonormal",
    "make_projection",
    "orthonormality_error",
    "orthonormalize",
    "pca_from_moments",
    "principal_angles",
    "project",
    "projection_residual",
    "reorthonormalize",
    "subspace_logits",
    "toy_min_loss",
    "toy_objective",
    "weight_to_bases",
]
