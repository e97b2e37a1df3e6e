"""Probes of trained networks' geometry: curvature, neural collapse, similarity, pruning.

Pure functions, no I/O. Submodules:

* :mod:`~subspacelab.probes.hessian` — HVPs, Lanczos top eigenvalues, Gauss-Newton split, the
  closed-form Hessian of a tanh MLP (Sagun et al., arXiv:1706.04454).
* :mod:`~subspacelab.probes.collapse` — NC1-NC4 and the deep-linear closed form (Dang et al.,
  arXiv:2301.00437; Tirer et al., arXiv:2210.16658).
* :mod:`~subspacelab.probes.similarity` — linear CKA, SVCCA, unit matching, sparse prediction
  (Li et al., arXiv:1511.07543).
* :mod:`~subspacelab.probes.pruning` and :mod:`~subspacelab.probes.robustness` — pruning
  methods, 1-D corruptions and the logit geometry (Li et al., arXiv:2206.07918).
* :mod:`~subspacelab.probes.stats` — a sign test as a verdict condition (over cells, not seeds).

Effective rank is :func:`subspacelab.geometry.effective_rank`.
"""
