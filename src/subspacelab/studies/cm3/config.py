"""Typed schema of the ``cm3`` section of params.yaml (values live only there).

cm3: Zhou, Wang, Shen 2025, arXiv:2508.01226.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from subspacelab.api import param
from subspacelab.recsys.datasets import MMREC_DATASETS, MMRecData, PinnedFile, load_mmrec


@dataclass
class MMRecFiles:
    """One of MMRec's Amazon sets as the MMRec README's data link ships it: ``<dir>/<dataset>/``
    holds ``<dataset>.inter``, ``image_feat.npy`` (4096-d) and ``text_feat.npy`` (384-d), each
    pinned by SHA-256 (Google Drive publishes none: pin your copy's)."""

    dataset: str = param(choices=MMREC_DATASETS)
    dir: str = param()
    inter_sha256: str = param()
    image_sha256: str = param()
    text_sha256: str = param()

    def files(self) -> dict[str, PinnedFile]:
        """The three pinned files, keyed inter, image, text."""
        where = PurePosixPath(self.dir, self.dataset).as_posix()
        return {
            "inter": PinnedFile(where, f"{self.dataset}.inter", self.inter_sha256),
            "image": PinnedFile(where, "image_feat.npy", self.image_sha256),
            "text": PinnedFile(where, "text_feat.npy", self.text_sha256),
        }

    def check(self) -> dict[str, str]:
        """A relative directory without '..', pins of 64 hex digits (or empty while unpinned)."""
        for name, pinned in self.files().items():
            for key, allowed in pinned.check().items():
                return {"dir" if key == "dir" else f"{name}_sha256": allowed}
        return {}

    def unpinned(self) -> dict[str, str]:
        """The files whose SHA-256 is not pinned."""
        return {
            f"{name}_sha256": what
            for name, pinned in self.files().items()
            for what in pinned.unpinned().values()
        }

    def load(self, root: Path) -> MMRecData:
        """The dataset, every file verified against its pin first."""
        paths = {name: pinned.path(root) for name, pinned in self.files().items()}
        return load_mmrec(paths["inter"], paths["image"], paths["text"])


@dataclass
class DataConfig:
    """The synthetic multimodal catalogue (§6), item texts encoded with MiniLM; or (``mmrec``,
    full profile) an MMRec Amazon set with its own image and text features."""

    n_items: int = param(ge=50)
    n_users: int = param(ge=10)
    n_per_user: int = param(ge=10)
    latent_dim: int = param(ge=2)
    image_dim: int = param(ge=2)
    image_noise: float = param(ge=0)
    sharpness: float = param(gt=0)
    data_seed: int = param(ge=0)
    text_batch: int = param(ge=1)
    mmrec: MMRecFiles | None = param()  # null: the synthetic catalogue (mini); full names its set


@dataclass
class ModelConfig:
    """Backbone and CM³ settings (the official configs' grids)."""

    dim: int = param(ge=1)
    layers: int = param(ge=1)
    knn_k: int = param(ge=1)
    image_weight: float = param(ge=0, le=1)
    beta_alpha: float = param(gt=0)
    gamma: float = param(gt=0)
    min_sim: float = param(ge=-1, le=1)
    max_sim: float = param(ge=-1, le=1)
    similar_threshold: float = param(gt=-1, lt=1)


@dataclass
class TrainConfig:
    """Adam, fixed epochs (§6)."""

    epochs: int = param(ge=1)
    batch: int = param(ge=1)
    lr: float = param(gt=0)
    weight_decay: float = param(ge=0)


@dataclass
class CM3Config:
    """The cm3 study."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    model: ModelConfig = param()
    train: TrainConfig = param()
