"""Attention/gating modules' shared toolkit (issue 14: ulsam, hydra, dsl, mhs_vm, gdl; diveup).

Pure functions and ``nn.Module`` helpers, no I/O. Submodules:

* :mod:`~subspacelab.modules.clutter` — procedural cluttered digits: sklearn's 8×8 glyphs
  upsampled and placed on a larger canvas among fragments of other digits (the miniature of
  ULSAM, Saini et al., arXiv:2006.15102).
* :mod:`~subspacelab.modules.lesions` — procedural skin lesions with ground-truth masks: shape ×
  hue classes for dsl (arXiv:2206.09068), irregular blobs to segment for mhs_vm
  (arXiv:2406.05992).
* :mod:`~subspacelab.modules.count` — parameters and multiply-accumulates (MACs) of an
  ``nn.Module`` on an example input, per leaf module, cross-checked against ``thop`` in tests.
* :mod:`~subspacelab.modules.equivariance` — the equivariance error e_eq(f, x, g) of any model
  under a group action (the blueprint of Bronstein et al., arXiv:2104.13478).
* :mod:`~subspacelab.modules.gates` — feature gates: hydra's class-pair gate (arXiv:2410.18200),
  squeeze-and-excitation and a CBAM-style spatial attention.
* :mod:`~subspacelab.modules.equivariant` — equivariant layers of the geometric-deep-learning
  blueprint (arXiv:2104.13478) for gdl.
* :mod:`~subspacelab.modules.scan` — selective scans for vision Mamba on CPU (S6, 2D scan routes,
  SS2D, multi-head scans; mhs_vm, arXiv:2406.05992).
* :mod:`~subspacelab.modules.subspace_learners` — DSL's attention-based dynamic subspace learners
  and their fixed-K parent DivConq (arXiv:2206.09068).
* :mod:`~subspacelab.modules.upsample` — an NAF-style image-guided neighbourhood-attention
  feature upsampler and the bilinear baseline (diveup).
"""
