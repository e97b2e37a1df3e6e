"""vsae's full profile (Baker & Li, arXiv 2509.22994): Pythia-70M-deduped's residual stream
over a text shard. Heavy imports (transformers) stay inside the functions."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SUFFIXES = (".jsonl.zst", ".jsonl", ".txt")


def _lines(path: Path) -> Iterator[str]:
    if path.name.endswith(".zst"):
        import zstandard

        with path.open("rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as zs:
            yield from io.TextIOWrapper(zs, encoding="utf-8")
    else:
        with path.open(encoding="utf-8") as fh:
            yield from fh


def read_texts(path: Path, limit: int) -> list[str]:
    """Up to ``limit`` non-empty texts from a .jsonl file (one object with a "text" field a
    line), the same compressed with zstd (.jsonl.zst, as the Pile shards are; the zstandard
    package of the ``full`` extra) or a .txt file (one text a line)."""
    if not path.name.endswith(SUFFIXES):
        raise ValueError(f"{path.name}: want one of {', '.join(SUFFIXES)}")
    texts: list[str] = []
    for number, line in enumerate(_lines(path), 1):
        if len(texts) >= limit:
            break
        if not line.strip():
            continue
        if path.suffix == ".txt":
            texts.append(line.strip())
            continue
        try:
            text = json.loads(line)["text"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{path.name} line {number}: no JSON object with 'text'") from err
        if not isinstance(text, str):
            raise ValueError(f"{path.name} line {number}: 'text' is not a string")
        if text.strip():
            texts.append(text)
    if not texts:
        raise ValueError(f"{path.name}: no text")
    return texts


def load_backbone(model_id: str, revision: str, device: str) -> tuple[Any, Any]:
    """A hub causal LM (tokenizer, model in eval mode) at a pinned ``revision``; a tokenizer
    without a padding token pads with its end-of-text token."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_id, revision=revision)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModel.from_pretrained(model_id, revision=revision).to(device).eval()
    return tokenizer, model
