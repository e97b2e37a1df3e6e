"""Full profile of subspace_rerouting (arXiv 2503.06269): refusal directions and per-layer probes
in an open chat model, measurement only (issue 17).

* :func:`data_step` verifies the contrastive prompt file (JSONL ``{"id", "positive",
  "negative"}``, kept outside the repository under access control, pinned by SHA-256) and writes
  per-seed train/test splits of its pair indices — never the texts;
* :func:`model_step` resolves the chat model's config at its pinned hub revision (no training);
* :func:`features_step` runs the model (``transformers``, chat template applied identically to
  every prompt, left padding with explicit position ids) and keeps the last token's hidden state
  at every residual point (embeddings and each layer's output), saved per seed in the
  miniature's layout so the shared ``fit`` step computes r̂ and the probes;
* :func:`no_intervention_step` and :func:`no_suffix_step` run nothing: the profile stops at
  measurement. There is no intervention or suffix-optimisation code for a real model, and the
  config refuses the ``suffix`` section together with ``model.hf``.

``transformers`` is imported inside the functions that use it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from subspacelab.api import StepContext, StepOutput, read_json, write_json
from subspacelab.studies.subspace_rerouting.config import (
    SUFFIX_REFUSAL,
    HfModel,
    HfPrompts,
    SubspaceReroutingConfig,
)

Ctx = StepContext[SubspaceReroutingConfig]
MEASUREMENT_ONLY = "measurement-only profile: no intervention or optimisation on a real model"


def read_pairs(prompts: HfPrompts) -> list[tuple[str, str]]:
    """The (positive, negative) pairs of the prompt file, after checking its SHA-256."""
    path = Path(prompts.path).expanduser()
    if not prompts.sha256:
        raise ValueError(f"data.prompts.sha256: pin the SHA-256 of {path} before reading it")
    if not path.is_file():
        raise FileNotFoundError(f"data.prompts.path: no file at {path}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != prompts.sha256:
        raise ValueError(f"{path}: SHA-256 {digest} does not match the pin {prompts.sha256}")
    pairs = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not isinstance(row.get("positive"), str) or not isinstance(row.get("negative"), str):
            raise ValueError(f"{path}:{n}: want string fields 'positive' and 'negative'")
        pairs.append((row["positive"], row["negative"]))
    return pairs


def split_pairs(n: int, n_train: int, n_test: int, seed: int) -> tuple[list[int], list[int]]:
    """Disjoint train/test pair indices, a seeded permutation of ``range(n)``."""
    if n_train + n_test > n:
        raise ValueError(f"{n_train} train + {n_test} test pairs requested, the file has {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return perm[:n_train], perm[n_train : n_train + n_test]


def _cfg(ctx: Ctx) -> tuple[HfModel, HfPrompts]:
    hf, prompts = ctx.cfg.model.hf, ctx.cfg.data.prompts
    if hf is None or prompts is None:
        raise ValueError("subspace_rerouting.full: model.hf and data.prompts must be set")
    return hf, prompts


def data_step(ctx: Ctx) -> StepOutput:
    """Verify the pinned prompt file; per seed, the train/test pair indices (no texts)."""
    prompts = ctx.cfg.data.prompts
    if prompts is None:
        raise ValueError("subspace_rerouting.full: data.prompts must be set")
    pairs = read_pairs(prompts)
    d = ctx.cfg.data
    splits = {}
    for seed in ctx.seeds:
        train, test = split_pairs(len(pairs), d.n_pairs, d.n_test_pairs, seed)
        splits[f"seed{seed}"] = {"train": train, "test": test}
    write_json(ctx.out / "splits.json", {"sha256": prompts.sha256, **splits})
    return StepOutput(metrics={"pairs": float(len(pairs))})


def model_step(ctx: Ctx) -> StepOutput:
    """The model's config at its pinned revision (layers, width): nothing is trained."""
    from transformers import AutoConfig

    hf, _ = _cfg(ctx)
    if not hf.revision:
        raise ValueError(f"model.hf.revision: pin a commit of {hf.name}")
    conf = AutoConfig.from_pretrained(hf.name, revision=hf.revision)
    info = {
        "name": hf.name,
        "revision": hf.revision,
        "layers": int(conf.num_hidden_layers),
        "d_model": int(conf.hidden_size),
    }
    write_json(ctx.out / "model.json", info)
    return StepOutput(metrics={"layers": float(info["layers"])})


def load_model(hf: HfModel, device: torch.device) -> tuple[Any, Any]:
    """Tokenizer and causal LM at the pinned revision, in eval mode (safetensors weights)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf.name, revision=hf.revision)
    model = AutoModelForCausalLM.from_pretrained(
        hf.name, revision=hf.revision, dtype=getattr(torch, hf.dtype), use_safetensors=True
    )
    return tok, model.to(device).eval()


def format_prompt(tok: Any, text: str, chat_template: bool) -> str:
    """The prompt as the model sees it: the chat template with the generation prompt, the same
    at probe-fitting and test time (spec §9)."""
    if not chat_template:
        return text
    return tok.apply_chat_template(
        [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
    )


@torch.no_grad()
def last_token_states(
    model: Any, tok: Any, texts: list[str], batch_size: int, chat_template: bool
) -> torch.Tensor:
    """Hidden states of the last prompt token at every residual point, ``(layers + 1, n, d)``
    in float32. Left padding with position ids from the attention mask, so a padded prompt gives
    the numbers it gives alone."""
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    device = next(model.parameters()).device
    chunks = []
    for i in range(0, len(texts), batch_size):
        batch = [format_prompt(tok, t, chat_template) for t in texts[i : i + batch_size]]
        enc = tok(batch, return_tensors="pt", padding=True, add_special_tokens=not chat_template)
        mask = enc["attention_mask"].to(device)
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        out = model(
            input_ids=enc["input_ids"].to(device),
            attention_mask=mask,
            position_ids=positions,
            output_hidden_states=True,
        )
        chunks.append(torch.stack([h[:, -1].float().cpu() for h in out.hidden_states]))
    return torch.cat(chunks, 1)


def features_step(ctx: Ctx) -> StepOutput:
    """Last-token states of every pair once; per seed, its train/test split in the miniature's
    layout (``pos``, ``neg``, ``test_pos``, ``test_neg``)."""
    hf, prompts = _cfg(ctx)
    splits = read_json(ctx.inputs["data"] / "splits.json")
    if splits["sha256"] != prompts.sha256:
        raise ValueError("data.prompts changed since the data step: rerun it")
    pairs = read_pairs(prompts)
    tok, model = load_model(hf, ctx.device)
    pos = last_token_states(model, tok, [p for p, _ in pairs], hf.batch_size, hf.chat_template)
    neg = last_token_states(model, tok, [n for _, n in pairs], hf.batch_size, hf.chat_template)
    for seed in ctx.seeds:
        s = splits[f"seed{seed}"]
        train, test = torch.tensor(s["train"]), torch.tensor(s["test"])
        ctx.save(
            f"seed{seed}",
            {
                "pos": pos[:, train],
                "neg": neg[:, train],
                "test_pos": pos[:, test],
                "test_neg": neg[:, test],
            },
        )
    return StepOutput(metrics={"residual_points": float(pos.shape[0])})


def no_intervention_step(ctx: Ctx) -> StepOutput:
    """Nothing to run: the full profile does not intervene on a real model."""
    write_json(ctx.out / "skipped.json", {"reason": MEASUREMENT_ONLY})
    return StepOutput()


def no_suffix_step(ctx: Ctx) -> StepOutput:
    """Nothing to run: no suffix optimisation against a real model (the config refuses it)."""
    if ctx.cfg.suffix is not None:
        raise ValueError(f"subspace_rerouting.suffix: {SUFFIX_REFUSAL}")
    write_json(ctx.out / "skipped.json", {"reason": MEASUREMENT_ONLY})
    return StepOutput()
