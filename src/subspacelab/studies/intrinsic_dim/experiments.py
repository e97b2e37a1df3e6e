"""The runs of one seed of the intrinsic-dimension sweep (Li et al., arXiv:1804.08838).

:func:`plan` turns the config into jobs (one dataset and label variant each) of model specs
(a baseline and one subspace model per ``d``); :func:`build` turns a spec into the module. The fit
and evaluate steps both call them, so a model is rebuilt exactly from its seeds: θ₀ from the
init seed, ``P`` from the projection seed. Only ``θ_d`` (and the baselines' weights) are saved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from subspacelab.geometry import SubspaceModel
from subspacelab.studies.intrinsic_dim.config import (
    ArchCompare,
    ConvConfig,
    FcConfig,
    WidthFamily,
)
from subspacelab.studies.intrinsic_dim.core import MLP, ConvNet, derive_seed, seeded

NUM_CLASSES = 10


@dataclass(frozen=True)
class ModelSpec:
    """One trained model: its group (one curve), arch, ``d`` (None: full-space baseline), seeds."""

    group: str
    arch: FcConfig | ConvConfig
    d: int | None
    init_seed: int
    proj_seed: int

    @property
    def name(self) -> str:
        """``<group>/base`` or ``<group>/d<d>``."""
        return f"{self.group}/{'base' if self.d is None else f'd{self.d}'}"


@dataclass(frozen=True)
class Job:
    """Models trained on the same batches: one dataset, real or shuffled training labels."""

    name: str
    dataset: str
    shuffled: bool
    specs: tuple[ModelSpec, ...]


def _group(
    group: str, arch: FcConfig | ConvConfig, grid: Sequence[int], seed: int, dataset: str
) -> list[ModelSpec]:
    """Baseline plus one subspace model per d, sharing θ₀; P depends on (seed, group, d).

    The shuffled twin of a group shares its θ₀ and, for a ``d`` on both grids, its ``P``.
    """
    key = group.removesuffix("_shuffled")
    init = derive_seed(seed, "init", dataset, key)
    specs = [ModelSpec(group, arch, None, init, -1)]
    specs += [
        ModelSpec(group, arch, d, init, derive_seed(seed, "proj", dataset, key, d)) for d in grid
    ]
    return specs


def plan(family: WidthFamily, compare: Sequence[ArchCompare], seed: int) -> list[Job]:
    """All jobs of one seed: the width family (real and shuffled labels) and the comparisons."""
    real: list[ModelSpec] = []
    shuffled: list[ModelSpec] = []
    for width in family.widths:
        fc = FcConfig(depth=family.depth, width=width)
        real += _group(f"fc_w{width}", fc, family.d_grid, seed, family.dataset)
        if width in family.shuffled_widths:
            shuffled += _group(
                f"fc_w{width}_shuffled", fc, family.shuffled_d_grid, seed, family.dataset
            )
    jobs = [
        Job(f"{family.dataset}_real", family.dataset, False, tuple(real)),
        Job(f"{family.dataset}_shuffled", family.dataset, True, tuple(shuffled)),
    ]
    for cmp in compare:
        specs = _group(f"{cmp.dataset}_mlp", cmp.mlp, cmp.d_grid, seed, cmp.dataset)
        specs += _group(f"{cmp.dataset}_cnn", cmp.cnn, cmp.d_grid, seed, cmp.dataset)
        if cmp.dataset == family.dataset:
            jobs[0] = Job(jobs[0].name, jobs[0].dataset, False, jobs[0].specs + tuple(specs))
        else:
            jobs.append(Job(f"{cmp.dataset}_real", cmp.dataset, False, tuple(specs)))
    return jobs


def base_net(arch: FcConfig | ConvConfig, input_shape: Sequence[int], init_seed: int) -> nn.Module:
    """The network at its initialisation θ₀ (PyTorch's default init, seeded)."""
    with seeded(init_seed):
        if isinstance(arch, FcConfig):
            features = 1
            for s in input_shape:
                features *= s
            return MLP(features, arch.width, arch.depth, NUM_CLASSES)
        return ConvNet(input_shape, arch.channels, arch.kernel_size, arch.hidden, NUM_CLASSES)


def build(spec: ModelSpec, input_shape: Sequence[int], projection: str) -> nn.Module:
    """The module of a spec: the net itself (baseline) or its random-subspace wrapper."""
    net = base_net(spec.arch, input_shape, spec.init_seed)
    if spec.d is None:
        return net
    return SubspaceModel(net, d=spec.d, kind=projection, seed=spec.proj_seed)
