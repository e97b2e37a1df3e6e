"""Typed params of vsae (Baker & Li, arXiv 2509.22994); values live in params.yaml only."""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param

SETTINGS = ("iid", "correlated", "tokens")
BACKBONES = ("minilm", "pythia")


@dataclass
class DataConfig:
    """The worlds: superposition streams (``iid``; ``correlated``: groups of ``group_size``)
    of ``n_features`` true directions in R^``d``, and ``tokens``: one layer's token states of a
    language model over texts (mini: MiniLM on ``n_sentences`` templated sentences; full:
    Pythia on ``text_file``, a .jsonl with a "text" field or a .txt with one text a line)."""

    settings: list[str] = param(choices=SETTINGS, min_len=1)
    sweep: list[str] = param(choices=SETTINGS)  # settings that get every arm (§6 variants)
    n_features: int = param(ge=2)
    d: int = param(ge=2)
    p_active: float = param(gt=0, le=0.5)
    group_size: int = param(ge=2)
    noise: float = param(ge=0)
    backbone: str = param(choices=BACKBONES)
    model_id: str = param()
    revision: str = param()
    layer: int = param(ge=0)  # index into the model's hidden states (0: the embeddings)
    n_sentences: int = param(ge=1)
    text_url: str = param()
    text_file: str = param()
    text_sha256: str = param()
    text_dir: str = param()
    max_tokens: int = param(ge=100)
    context: int = param(ge=8)
    text_batch: int = param(ge=1)
    eval_fraction: float = param(gt=0, lt=1)

    def check(self) -> dict[str, str]:
        """A swept setting must be run; the full profile's backbone reads a text file."""
        if not set(self.sweep) <= set(self.settings):
            return {"sweep": f"a subset of settings {self.settings}"}
        if self.backbone == "pythia" and "tokens" in self.settings and not self.text_file:
            return {"text_file": "the text shard Pythia's token states come from"}
        return {}

    def unpinned(self) -> dict[str, str]:
        """A hub model is loaded at a pinned revision and a text shard against its SHA-256."""
        if "tokens" not in self.settings or self.backbone == "minilm":
            return {}
        missing = {}
        if not self.revision:
            missing["revision"] = f"the hub commit of {self.model_id}"
        if self.text_file and not self.text_sha256:
            missing["text_sha256"] = f"the SHA-256 of {self.text_file}"
        return missing


@dataclass
class ModelConfig:
    """The SAEs (§3): dictionary, k, AuxK (k_aux, α_aux, dead window in rows/tokens) and the
    KL weights of the arms; ``headline_c_kl`` is the paper's reported fixed-variance run."""

    dict_size: int = param(ge=2)
    token_dict_size: int = param(ge=2)
    k: int = param(ge=1)
    k_aux: int = param(ge=1)
    aux_alpha: float = param(gt=0)
    fixed_c_kl: list[float] = param(gt=0)
    learned_c_kl: list[float] = param(gt=0)
    headline_c_kl: float = param(gt=0)
    dead_window: int = param(ge=1)

    def check(self) -> dict[str, str]:
        """k and k_aux must fit in the dictionaries."""
        smallest = min(self.dict_size, self.token_dict_size)
        if self.k > smallest or self.k_aux > smallest:
            return {"k": f"k and k_aux must be <= the dictionary size {smallest}"}
        return {}


@dataclass
class TrainConfig:
    """Adam at ``lr``, ``steps`` batches of ``batch`` rows (token setting: its own), the KL
    weight ramped over the first ``kl_warmup`` fraction of the steps; evaluation on
    ``eval_batches`` fresh batches; the dead-latent trace every ``trace_every`` steps."""

    steps: int = param(ge=1)
    batch: int = param(ge=1)
    token_steps: int = param(ge=1)
    token_batch: int = param(ge=1)
    lr: float = param(gt=0)
    kl_warmup: float = param(ge=0, le=1)
    eval_batches: int = param(ge=1)
    trace_every: int = param(ge=1)


@dataclass
class VsaeConfig:
    """One profile of vsae's section in params.yaml."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    model: ModelConfig = param()
    train: TrainConfig = param()
