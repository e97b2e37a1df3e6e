"""Typed params of treesynth (Wang et al. 2025, arXiv:2503.17195); values live in params.yaml
only."""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param


@dataclass
class WorldConfig:
    """The simulated generator over the arithmetic word-problem space (§6)."""

    zipf_exponent: float = param(ge=0)
    repeat: float = param(ge=0, lt=1)
    select_noise: float = param(ge=0)
    fail_prob: float = param(ge=0, lt=1)
    data_seed: int = param(ge=0)


@dataclass
class TreeConfig:
    """TreeSynth's hyperparameters (the official config.py)."""

    max_depth: int = param(ge=1)
    samples_per_node: int = param(ge=2)
    infinite_threshold: int = param(ge=1)
    infinite_path_samples: int = param(ge=1)
    max_leaf_batches: int = param(ge=1)
    retries: int = param(ge=1)


@dataclass
class DataConfig:
    """Equal-size comparison and the uniform held-out set."""

    n: int = param(ge=10)
    n_test: int = param(ge=10)
    sizes: list[int] = param(min_len=1)
    text_batch: int = param(ge=1)


@dataclass
class ProbeConfig:
    """The downstream classifier: a linear softmax on MiniLM embeddings predicting the operation."""

    epochs: int = param(ge=1)
    batch: int = param(ge=1)
    lr: float = param(gt=0)
    weight_decay: float = param(ge=0)


@dataclass
class GeneratorConfig:
    """The full profile's LLM server (OpenAI-compatible); null in mini."""

    endpoint: str = param()
    model: str = param()
    revision: str = param()
    gen_temperature: float = param(ge=0)
    select_temperature: float = param(ge=0)
    expand_temperature: float = param(ge=0)
    timeout_s: float = param(gt=0)


@dataclass
class TreesynthConfig:
    """One profile of treesynth's section in params.yaml."""

    seeds: list[int] = param(min_len=1)
    world: WorldConfig = param()
    tree: TreeConfig = param()
    data: DataConfig = param()
    probe: ProbeConfig = param()
    generator: GeneratorConfig | None = param()

    def check(self) -> dict[str, str]:
        """Cross-field rules."""
        bad = {}
        if any(s < 2 or s > self.data.n for s in self.data.sizes):
            bad["data.sizes"] = f"each size in [2, data.n = {self.data.n}]"
        if self.data.sizes != sorted(set(self.data.sizes)):
            bad["data.sizes"] = "strictly increasing"
        return bad

    def unpinned(self) -> dict[str, str]:
        """The full profile's LLM revision must be pinned."""
        if self.generator is not None and not self.generator.revision:
            return {"generator.revision": "the served model's hub revision (commit sha)"}
        return {}
