"""Typed params of mhs_vm (arXiv 2406.05992); values live in params.yaml only."""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param
from subspacelab.studies.mhs_vm.core import ARMS


@dataclass
class DataConfig:
    """Mini: procedural lesions (``subspacelab.modules.lesions``: irregular brown blobs, hair,
    vignetting) of side ``size``, ``blobs`` per image, drawn per seed. Full (``source: isic``):
    VM-UNet's prepared ISIC split (``train/images|masks``, ``val/images|masks``) from the archive
    ``url`` pinned by ``sha256``, cached under ``root``, resized to ``size``."""

    source: str = param(choices=("lesions", "isic"))
    n_train: int = param(ge=1)
    n_test: int = param(ge=1)
    size: int = param(ge=16)
    blobs: list[int] = param(ge=1, min_len=2)
    root: str = param()
    url: str = param()
    filename: str = param()
    sha256: str = param()

    def check(self) -> dict[str, str]:
        """A blob range 1 <= lo <= hi; the full profile names its archive."""
        bad: dict[str, str] = {}
        if len(self.blobs) != 2 or self.blobs[0] > self.blobs[1]:
            bad["blobs"] = "a range [lo, hi] with 1 <= lo <= hi"
        if self.source == "isic" and not self.filename:
            bad["filename"] = "the ISIC archive's file name (source: isic)"
        return bad

    def unpinned(self) -> dict[str, str]:
        """The ISIC archive is fetched only from a named url and against its SHA-256 (VM-UNet's
        README links a prepared archive on a file host; no checksum is published)."""
        missing: dict[str, str] = {}
        if self.source == "isic" and not self.url:
            missing["url"] = f"where {self.filename} (VM-UNet's prepared split) is downloaded from"
        if self.source == "isic" and not self.sha256:
            missing["sha256"] = f"the SHA-256 of {self.filename}"
        return missing


@dataclass
class ModelConfig:
    """VM-UNet: patch size, widths per level, encoder and decoder depths per level (decoder
    listed from the bottleneck up), d_state N, SS2D's expand, MHS heads and GFU threshold t,
    the top drop-path rate, and the arms trained."""

    patch: int = param(ge=1)
    dims: list[int] = param(min_len=1)
    enc_depths: list[int] = param(min_len=1)
    dec_depths: list[int] = param(min_len=1)
    d_state: int = param(ge=1)
    expand: int = param(ge=1)
    heads: int = param(ge=1, le=4)
    gfu_t: float = param(ge=0.0)
    drop_path: float = param(ge=0.0, lt=1.0)
    arms: list[str] = param(choices=ARMS, min_len=1)

    def check(self) -> dict[str, str]:
        """One depth per level; heads divide every width; d1 divisible by 4 (final expand)."""
        bad: dict[str, str] = {}
        if len(self.enc_depths) != len(self.dims) or len(self.dec_depths) != len(self.dims):
            bad["enc_depths"] = f"one encoder and one decoder depth per level ({len(self.dims)})"
        if any(d % self.heads or d % 4 for d in self.dims):
            bad["dims"] = f"widths divisible by heads={self.heads} and by 4"
        if any(d < 1 for d in self.enc_depths + self.dec_depths):
            bad["dec_depths"] = "depths >= 1"
        return bad


@dataclass
class TrainConfig:
    """AdamW (decoupled weight decay, as the paper), constant lr, per-member seeded
    mini-batches, flips + rotation augmentation."""

    epochs: int = param(ge=1)
    batch: int = param(ge=1)
    lr: float = param(gt=0.0)
    weight_decay: float = param(ge=0.0)


@dataclass
class EvalConfig:
    """Threshold on the sigmoid output (VM-UNet's 0.5)."""

    threshold: float = param(gt=0.0, lt=1.0)


@dataclass
class MhsVmConfig:
    """One profile of mhs_vm's section in params.yaml."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    model: ModelConfig = param()
    train: TrainConfig = param()
    eval: EvalConfig = param()

    def check(self) -> dict[str, str]:
        """The image side must split into the token grid of every level."""
        need = self.model.patch * 2 ** (len(self.model.dims) - 1)
        if self.data.size % need:
            return {"data": f"size divisible by patch·2^(levels−1) = {need}"}
        return {}
