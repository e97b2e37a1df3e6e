"""Typed params of subspace_rerouting (arXiv 2503.06269); values live in params.yaml only.

The full profile (``model.hf`` set) measures directions and probes in an open chat model and
stops there: the config refuses ``suffix`` together with ``model.hf`` (issue 17), so no suffix
optimisation can be configured against a real model.
"""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param

SUFFIX_REFUSAL = (
    "null when model.hf is set: the suffix optimisation runs on the toy model only and the "
    "full profile measures directions and stops there (issue 17)"
)


@dataclass
class HfPrompts:
    """Full profile: a local JSONL of contrastive pairs ``{"id", "positive", "negative"}``
    (positive: an instruction the model refuses; negative: its minimally edited counterpart),
    kept outside the repository under access control and pinned by SHA-256 ("" refuses)."""

    path: str = param()
    sha256: str = param()

    def unpinned(self) -> dict[str, str]:
        """The prompts file is read only against its SHA-256."""
        return {} if self.sha256 else {"sha256": f"the SHA-256 of {self.path}"}


@dataclass
class DataConfig:
    """The synthetic token language (spec §6): vocabulary, abstract restricted tokens R1..Rk,
    instruction lengths; the training set (share of instructions carrying 1..max_restricted
    restricted tokens); contrastive pairs for directions and probes (train) and held-out pairs
    (test); the attack set (X+ short enough that the suffix keeps it within max_len)."""

    vocab: int = param(ge=16)
    n_restricted: int = param(ge=1)
    min_len: int = param(ge=1)
    max_len: int = param(ge=1)
    n_train: int = param(ge=1)
    p_restricted: float = param(gt=0.0, lt=1.0)
    max_restricted: int = param(ge=1)
    n_pairs: int = param(ge=2)
    n_test_pairs: int = param(ge=2)
    n_attack: int = param(ge=1)
    attack_max_len: int = param(ge=1)
    prompts: HfPrompts | None = param()  # full profile only (null in mini)

    def check(self) -> dict[str, str]:
        """Lengths ordered, benign tokens left, the attack set's lengths within the language's."""
        if self.min_len > self.max_len:
            return {"min_len": f"<= max_len ({self.max_len})"}
        if self.vocab - 6 - self.n_restricted < 2:
            return {"n_restricted": f"at most {self.vocab - 8} (6 specials, 2 benign tokens)"}
        if not self.min_len <= self.attack_max_len <= self.max_len:
            return {"attack_max_len": f"in [min_len, max_len] = [{self.min_len}, {self.max_len}]"}
        return {}


@dataclass
class HfModel:
    """Full profile: an open chat model from the Hugging Face hub at a pinned commit, its
    dtype, the batch size of the forward passes and whether the chat template wraps prompts."""

    name: str = param()
    revision: str = param()
    dtype: str = param(choices=("float32", "bfloat16", "float16"))
    batch_size: int = param(ge=1)
    chat_template: bool = param()

    def unpinned(self) -> dict[str, str]:
        """The weights are loaded only at a pinned commit."""
        return {} if self.revision else {"revision": f"a commit of {self.name} on the hub"}


@dataclass
class ModelConfig:
    """The toy decoder-only transformer (4 layers, d = 64, 4 heads; MLP width), or, in the full
    profile, the open chat model whose layers are measured."""

    layers: int = param(ge=1)
    d_model: int = param(ge=2)
    heads: int = param(ge=1)
    mlp: int = param(ge=1)
    hf: HfModel | None = param()  # full profile only (null in mini)

    def check(self) -> dict[str, str]:
        """Heads divide the width."""
        return {} if self.d_model % self.heads == 0 else {"heads": f"divides {self.d_model}"}


@dataclass
class TrainConfig:
    """Adam on the toy model's next-token loss (answer positions), constant learning rate."""

    epochs: int = param(ge=1)
    lr: float = param(gt=0.0)
    batch: int = param(ge=1)


@dataclass
class ProbeConfig:
    """Logistic probes per layer (BCE, Adam, full batch; the paper's grid: lr 1e-3/1e-2,
    10-200 epochs)."""

    epochs: int = param(ge=1)
    lr: float = param(gt=0.0)


@dataclass
class EvalConfig:
    """``middle_layer``: the residual point from which the probe relations are read (fixed in
    advance); ``n_random``: random unit directions per seed in the intervention control."""

    middle_layer: int = param(ge=0)
    n_random: int = param(ge=1)


@dataclass
class SuffixConfig:
    """Toy SSR (miniature only): suffix length, the probes' target residual points, the GCG
    search (the SSR repository's defaults) and random suffixes per prompt in the control."""

    length: int = param(ge=1)
    target_layers: list[int] = param(ge=0, min_len=1)
    search_width: int = param(ge=1)
    top_k: int = param(ge=1)
    buffer: int = param(ge=1)
    patience: int = param(ge=1)
    max_iters: int = param(ge=1)
    early_stop: float = param(ge=0.0)
    n_random: int = param(ge=1)


@dataclass
class SubspaceReroutingConfig:
    """One profile of subspace_rerouting's section in params.yaml."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    model: ModelConfig = param()
    train: TrainConfig = param()
    probe: ProbeConfig = param()
    eval: EvalConfig = param()
    suffix: SuffixConfig | None = param()  # toy SSR: mini only (refused with model.hf)

    def check(self) -> dict[str, str]:
        """No suffix step with a real model; the full profile's inputs together; layers and
        lengths within the toy model's."""
        hf = self.model.hf
        if hf is not None and self.suffix is not None:
            return {"suffix": SUFFIX_REFUSAL}
        if (hf is None) != (self.data.prompts is None):
            return {"model": "model.hf and data.prompts are set together (full profile)"}
        if hf is None and self.eval.middle_layer > self.model.layers:
            return {"eval": f"middle_layer <= model.layers ({self.model.layers})"}
        if self.suffix is not None:
            s = self.suffix
            if any(t < 1 or t > self.model.layers for t in s.target_layers):
                return {"suffix": f"target_layers in [1, {self.model.layers}]"}
            if self.data.attack_max_len + s.length > self.data.max_len:
                return {"suffix": "data.attack_max_len + length <= data.max_len"}
            if s.top_k > self.data.vocab - 6 - self.data.n_restricted:
                return {"suffix": "top_k <= the number of benign tokens"}
        return {}
