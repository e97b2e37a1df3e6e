"""Adapters that change a trained network through a subspace.

* :mod:`~subspacelab.adapters.lora` — LoRA (Hu et al., arXiv:2106.09685) on any linear or conv
  layer (conv kernels reshaped to ``out × in/groups·k_h·k_w``).
* :mod:`~subspacelab.adapters.flora` — FLoRA (Si et al., arXiv:2405.14739): a Tucker core and
  one factor per weight mode.
* :mod:`~subspacelab.adapters.budget` — LoRA and FLoRA ranks at matched parameter budgets (within
  10 %), built with the same scale convention.
* :mod:`~subspacelab.adapters.oca` — OCA's orthogonal layer and losses (Ricci et al.,
  arXiv:2408.08793), with BCT (Shen et al., CVPR 2020, arXiv:2003.11942) as a baseline.
* :mod:`~subspacelab.adapters.stacked` — many adapted convs of one shape as a few grouped convs
  (for training many arms at once with :func:`subspacelab.nets.joint.train_joint`).
"""

from subspacelab.adapters.budget import BudgetMatch, make_adapter, match_budgets
from subspacelab.adapters.flora import FLoRA, flora_param_count, tucker_delta
from subspacelab.adapters.lora import LoRA, lora_param_count, trainable_count, wrap_layers
from subspacelab.adapters.oca import OrthogonalLayer, bct_loss, oca_loss

__all__ = [
    "BudgetMatch",
    "FLoRA",
    "LoRA",
    "OrthogonalLayer",
    "bct_loss",
    "flora_param_count",
    "lora_param_count",
    "make_adapter",
    "match_budgets",
    "oca_loss",
    "trainable_count",
    "tucker_delta",
    "wrap_layers",
]
