"""Shared clustering toolkit of the subspace-clustering group (mlc, lihf_dsc, s2cag, geo_sae).

Pure numpy/scipy/torch, no I/O. Submodules:

* :mod:`~subspacelab.clustering.metrics` — ACC with Hungarian matching, NMI, ARI, conductance,
  modularity.
* :mod:`~subspacelab.clustering.spectral` — spectral clustering of an affinity, the DSC
  post-processing of a coefficient matrix, k-means and spectral baselines.
* :mod:`~subspacelab.clustering.selfexpressive` — LSR and LRR (closed forms) and SSC (Lasso per
  sample), all followed by the same post-processing.
* :mod:`~subspacelab.clustering.coding_rate` — MCR² coding rates R(Z) and R_c(Z, Γ)
  (Ding et al., ICCV 2023, arXiv:2301.01805), and MLC's optimisation schedule.
* :mod:`~subspacelab.clustering.sinkhorn` — Sinkhorn projection to doubly stochastic matrices,
  iterated to a tolerance.
* :mod:`~subspacelab.clustering.dimension` — the TwoNN intrinsic-dimension estimate and the
  subspace-dimension prior taken from it where a dataset documents none.
* :mod:`~subspacelab.clustering.datasets` (imported by name: it reads files) — loaders of the
  full-profile data and the load_digits subset of the miniatures.
* :mod:`~subspacelab.clustering.synthetic` — a union of (warped) subspaces, a union of curved
  manifolds and contextual stochastic block models with bag-of-words attributes.
"""

from subspacelab.clustering.coding_rate import (
    MLCSchedule,
    coding_rate,
    membership_coding_rate,
    mlc_loss,
)
from subspacelab.clustering.dimension import dimension_prior, two_nn_dimension
from subspacelab.clustering.metrics import (
    cluster_accuracy,
    conductance,
    evaluate,
    modularity,
)
from subspacelab.clustering.selfexpressive import lrr, lsr, ssc
from subspacelab.clustering.sinkhorn import sinkhorn
from subspacelab.clustering.spectral import (
    kmeans_baseline,
    postprocess_coefficients,
    spectral_baseline,
    spectral_clustering,
)
from subspacelab.clustering.synthetic import (
    AttributedGraph,
    csbm,
    union_of_manifolds,
    union_of_subspaces,
)

__all__ = [
    "AttributedGraph",
    "MLCSchedule",
    "cluster_accuracy",
    "coding_rate",
    "conductance",
    "csbm",
    "dimension_prior",
    "evaluate",
    "kmeans_baseline",
    "lrr",
    "lsr",
    "membership_coding_rate",
    "mlc_loss",
    "modularity",
    "postprocess_coefficients",
    "sinkhorn",
    "spectral_baseline",
    "spectral_clustering",
    "ssc",
    "two_nn_dimension",
    "union_of_manifolds",
    "union_of_subspaces",
]
