"""Shared toolkit of the recommendation and CTR group (unified_embedding, optfs, cm3).

Pure numpy/torch, no I/O except the streaming log reader. Submodules:

* :mod:`~subspacelab.recsys.hashing` — stable salted splitmix64 hashing and collision rates.
* :mod:`~subspacelab.recsys.synthetic` — seeded CTR logs with a ground-truth FM (Zipf values,
  log-uniform vocabularies, noise fields, known signal values).
* :mod:`~subspacelab.recsys.tables` — per-field hashed, multiplexed and Unified Embedding tables
  on ``nn.EmbeddingBag`` (Coleman et al., NeurIPS 2023, arXiv:2305.12102).
* :mod:`~subspacelab.recsys.metrics` — AUC, log-loss, full-ranking Recall@K / NDCG@K with
  training items masked.
* :mod:`~subspacelab.recsys.logs` — a constant-memory reader of Criteo-format logs.
"""

from subspacelab.recsys.hashing import bucket, collision_rate, salted_hash
from subspacelab.recsys.metrics import auc, full_ranking, log_loss
from subspacelab.recsys.synthetic import CTRLog, ctr_log, iter_batches
from subspacelab.recsys.tables import Scheme, multiplexed, per_field, split_budget, unified

__all__ = [
    "CTRLog",
    "Scheme",
    "auc",
    "bucket",
    "collision_rate",
    "ctr_log",
    "full_ranking",
    "iter_batches",
    "log_loss",
    "multiplexed",
    "per_field",
    "salted_hash",
    "split_budget",
    "unified",
]
