"""Representation toolkit of the language and modalities group (issue 17: plato, vsae,
subspace_rerouting, treesynth).

Pure maths on arrays and small ``nn.Module``s, no I/O. The offline MiniLM encoder it builds on is
:mod:`subspacelab.text.minilm` (pooled sentence embeddings and per-layer hidden states). Each
submodule names its paper; the tests in tests/representation/ check them on known answers.

* :mod:`~subspacelab.representation.alignment` — CCA in its SVD form, orthogonal Procrustes, a
  ridge affine map, retrieval / matching / mutual-k-NN scores (plato, arXiv:2503.05283).
* :mod:`~subspacelab.representation.sae` — TopK SAEs with AuxK and the variational SAE with fixed
  or learned variance, stacked so arms and seeds train at once (vsae, arXiv:2509.22994).
* :mod:`~subspacelab.representation.directions` — difference-in-means directions, per-layer
  probes, projection / ablation / steering, subspace overlap (subspace_rerouting,
  arXiv:2503.06269).
* :mod:`~subspacelab.representation.diversity` — coverage, entropy, duplication, mean pairwise
  distance and the Vendi score (treesynth, arXiv:2503.17195).
"""
