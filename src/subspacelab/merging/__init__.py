"""Model merging as pure functions over state dicts.

* :mod:`~subspacelab.merging.algebra` — add/sub/scale/flatten, task vectors.
* :mod:`~subspacelab.merging.merges` — simple average, Task Arithmetic (Ilharco et al., ICLR 2023,
  arXiv:2212.04089), TIES (Yadav et al., NeurIPS 2023, arXiv:2306.01708), TSV-M (Gargiulo et al.,
  CVPR 2025, arXiv:2412.00081) and DC-Merge (Zhang et al., CVPR 2026, arXiv:2603.06242).
* :mod:`~subspacelab.merging.concrete` — Concrete Task Arithmetic and Concrete AdaMerging (Tang
  et al., arXiv:2312.06173), with layer-wise AdaMerging (Yang et al., ICLR 2024,
  arXiv:2310.02575) as the baseline.
* :mod:`~subspacelab.merging.bench` — the task zoo (the merge-bench the ``task_zoo`` study
  writes) read back, task accuracies and α tuning; :mod:`~subspacelab.merging.clip_zoo` its full
  profile (CLIP ViT-B/32 on 8 vision tasks).
"""

from subspacelab.merging.algebra import (
    StateDict,
    add,
    apply_task_vector,
    flatten,
    lincomb,
    scale,
    sub,
    task_vectors,
    unflatten,
)
from subspacelab.merging.merges import (
    dc_keep_count,
    dc_merge,
    directional_consistency,
    polar_factor,
    simple_average,
    task_arithmetic,
    ties_merge,
    tsv_merge,
)

__all__ = [
    "StateDict",
    "add",
    "apply_task_vector",
    "dc_keep_count",
    "dc_merge",
    "directional_consistency",
    "flatten",
    "lincomb",
    "polar_factor",
    "scale",
    "simple_average",
    "sub",
    "task_arithmetic",
    "task_vectors",
    "ties_merge",
    "tsv_merge",
    "unflatten",
]
