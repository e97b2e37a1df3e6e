"""Typed schema of the ``eigenstructures`` section of params.yaml (values live only there).

eigenstructures: Velich et al., CVPR 2026, arXiv:2512.01103.
"""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param
from subspacelab.recsys.datasets import PinnedFile

MANIFOLDS = ("sphere", "torus", "bumps", "shapenet")


@dataclass
class DataConfig:
    """The worlds: a tilted-density sphere (the claims), a flat torus, a circle of bumps; in
    the full profile also ``shapenet`` (meshes of section ``shapenet``, eigenstructures/full.py)."""

    manifolds: list[str] = param(choices=MANIFOLDS, min_len=1)
    n_points: int = param(ge=20)
    sphere_tilt: float = param(gt=-1, lt=1)
    bumps_dim: int = param(ge=3)
    bumps_width: float = param(gt=0)
    bumps_noise: float = param(ge=0)
    data_seed: int = param(ge=0)  # world of seed s: drawn with data_seed + s

    def check(self) -> dict[str, str]:
        """The claims are decided on the sphere."""
        if "sphere" not in self.manifolds:
            return {"manifolds": "must include sphere (the claims are decided on it)"}
        return {}


@dataclass
class ProbeConfig:
    """kNN Gaussian-kernel heat smoothing of uniform noise; σ ~ U[sigma_min, sigma_max] per set."""

    knn: int = param(ge=1)
    n_probes: int = param(ge=1)
    iters: int = param(ge=1)
    sigma_min: float = param(gt=0)
    sigma_max: float = param(gt=0)
    paper_sigma_min: float = param(gt=0)  # the paper's range, closed-form comparison only
    paper_sigma_max: float = param(gt=0)
    regen_every: int = param(ge=1)

    def check(self) -> dict[str, str]:
        """Ordered ranges."""
        if self.sigma_min > self.sigma_max:
            return {"sigma_min": f"at most sigma_max ({self.sigma_max})"}
        if self.paper_sigma_min > self.paper_sigma_max:
            return {"paper_sigma_min": f"at most paper_sigma_max ({self.paper_sigma_max})"}
        return {}


@dataclass
class ModelConfig:
    """Per-point MLP widths (input and output added) and the basis size k."""

    hidden: list[int] = param(ge=1, min_len=1)
    k: int = param(ge=2)


@dataclass
class TrainConfig:
    """Adam for a fixed number of full-batch steps."""

    steps: int = param(ge=1)
    lr: float = param(gt=0)


@dataclass
class EvalConfig:
    """How many eigenspaces are scored, the evaluation probe sets."""

    groups: int = param(ge=1)
    eval_sets: int = param(ge=1)


@dataclass
class ShapeNetConfig:
    """The ``shapenet`` world (full profile, spec §7): one mesh of ``synset`` per seed from the
    user-downloaded ShapeNetCore.v2 zip ``archive`` (SHA-256-pinned), sampled by area; the
    oracle: the ``functions`` smallest eigenpairs of the samples' ``oracle_knn``-NN Laplacian."""

    archive: PinnedFile = param()
    synset: str = param()
    oracle_knn: int = param(ge=2)
    functions: int = param(ge=2)

    def check(self) -> dict[str, str]:
        """A ShapeNet synset id."""
        if not (len(self.synset) == 8 and self.synset.isdigit()):
            return {"synset": "an 8-digit ShapeNet synset id, e.g. 02691156 (airplane)"}
        return {}


@dataclass
class EigenstructuresConfig:
    """The eigenstructures study."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    probes: ProbeConfig = param()
    model: ModelConfig = param()
    train: TrainConfig = param()
    eval: EvalConfig = param()
    shapenet: ShapeNetConfig | None = param()  # full profile only (null in mini)

    def check(self) -> dict[str, str]:
        """The shapenet world needs its section."""
        if "shapenet" in self.data.manifolds and self.shapenet is None:
            return {"shapenet": "a section (data.manifolds lists shapenet)"}
        return {}
