"""Typed params of shapesplat (arXiv 2408.10906); values live in params.yaml only."""

from __future__ import annotations

import re
from dataclasses import dataclass

from subspacelab.api import param
from subspacelab.shapes.splats import PARTS


@dataclass
class DataConfig:
    """The miniature's objects (spec §6): ``per_class_train`` / ``per_class_test`` objects of
    each of ``shapes`` (random dimensions, a random rotation, centred and scaled into the unit
    ball, Gaussian ``jitter``), ``surface_points`` surface samples each with a random colour per
    part, a ``components``-Gaussian mixture fitted by ``em_iters`` EM iterations (the splats),
    and as many uniform surface points for the Point-MAE baseline. ``data_seed`` draws the
    objects once; the training seeds vary models, masks, batches and the uniform resamples of
    the distribution check.

    Full profile (full.py): ``splats_dir`` holds ModelNet-Splats / ShapeSplat 3DGS ``.ply``
    files as ``<class>/<train|test>/<object>.ply`` (from the HF dataset ``hf_repo`` at the
    pinned ``hf_revision``, unzipped by the user: the datasets are gated), ``uniform_dir`` the
    matching uniform point clouds as ``<class>/<train|test>/<object>.txt`` (ModelNet40's
    resampled ``x,y,z,nx,ny,nz`` lines); each object is cut to ``components`` Gaussians /
    points by FPS (``npoints_fps``)."""

    shapes: list[str] = param(min_len=2)
    per_class_train: int = param(ge=1)
    per_class_test: int = param(ge=1)
    surface_points: int = param(ge=16)
    components: int = param(ge=4)
    em_iters: int = param(ge=0)
    jitter: float = param(ge=0.0)
    data_seed: int = param(ge=0)
    hf_repo: str = param()
    hf_revision: str = param()
    splats_dir: str = param()
    uniform_dir: str = param()

    def check(self) -> dict[str, str]:
        """Known primitives, no repeats; fewer components than surface points."""
        bad: dict[str, str] = {}
        if any(s not in PARTS for s in self.shapes) or len(set(self.shapes)) != len(self.shapes):
            bad["shapes"] = f"distinct names among {tuple(PARTS)}"
        if self.components > self.surface_points:
            bad["components"] = f"<= surface_points ({self.surface_points})"
        return bad

    def unpinned(self) -> dict[str, str]:
        """Reading the hub's splats needs its revision pinned."""
        if self.hf_repo and not re.fullmatch(r"[0-9a-f]{40}", self.hf_revision):
            return {"hf_revision": f"the 40-hex commit of the HF dataset {self.hf_repo}"}
        return {}


@dataclass
class ModelConfig:
    """Gaussian-MAE-mini (spec §6): ``groups`` × ``group_size`` (FPS + kNN), token width
    ``dim``, encoder ``depth`` with ``heads``, ``decoder_depth``, ``mask_ratio`` of the tokens
    masked at random."""

    groups: int = param(ge=2)
    group_size: int = param(ge=2)
    dim: int = param(ge=8)
    depth: int = param(ge=1)
    heads: int = param(ge=1)
    decoder_depth: int = param(ge=1)
    mask_ratio: float = param(gt=0.0, lt=1.0)

    def check(self) -> dict[str, str]:
        """The width splits into the heads."""
        return {} if self.dim % self.heads == 0 else {"dim": f"a multiple of heads ({self.heads})"}


@dataclass
class TrainConfig:
    """Pretraining and finetuning (AdamW, linear warm-up over the first ``warmup`` fraction of
    the steps, then cosine to 0): epochs, batch, learning rates and the decoupled weight decay."""

    pretrain_epochs: int = param(ge=1)
    finetune_epochs: int = param(ge=1)
    batch: int = param(ge=1)
    pretrain_lr: float = param(gt=0.0)
    finetune_lr: float = param(gt=0.0)
    weight_decay: float = param(ge=0.0)
    warmup: float = param(ge=0.0, lt=1.0)


@dataclass
class ShapesplatConfig:
    """One profile of shapesplat's section in params.yaml."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    model: ModelConfig = param()
    train: TrainConfig = param()

    def check(self) -> dict[str, str]:
        """The groups fit in an object's Gaussians."""
        m, d = self.model, self.data
        if m.groups > d.components or m.group_size > d.components:
            return {"model": f"groups and group_size <= data.components ({d.components})"}
        return {}
