"""Representation toolkit of the language and modalities group (issue 17: plato, vsae,
subspace_rerouting, treesynth).

Pure maths on arrays and small ``nn.Module``s, no I/O. The offline MiniLM encoder it builds on is
:mod:`subspacelab.text.minilm` (pooled sentence embeddings and per-layer hidden states). Each
submodule names its paper; the tests in tests/representation/ check them on known answers.
"""
