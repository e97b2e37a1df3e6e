"""Typed params of diffumatch (arXiv 2507.23715); values live in params.yaml only."""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param


@dataclass
class FamilyConfig:
    """A blob family (:class:`subspacelab.shapes.blobs.BlobFamily`): harmonic amplitude and
    per-degree decay up to ``l_max``, per-axis ``scale`` range, extra x ``stretch`` range, bend
    curvature range (``[low, high]`` each)."""

    amplitude: float = param(ge=0.0)
    decay: float = param(gt=0.0)
    l_max: int = param(ge=1, le=8)
    scale: list[float] = param(gt=0.0, min_len=2)
    stretch: list[float] = param(gt=0.0, min_len=2)
    bend: list[float] = param(ge=0.0, min_len=2)

    def check(self) -> dict[str, str]:
        """Each range is ``[low, high]`` with low <= high."""
        return {
            name: "[low, high] with low <= high"
            for name in ("scale", "stretch", "bend")
            if len(getattr(self, name)) != 2 or getattr(self, name)[0] > getattr(self, name)[1]
        }


@dataclass
class DataConfig:
    """Shapes and spectra. Mini (spec §6): ``n_train`` blobs of ``train_family`` on the icosphere
    of ``subdivisions``, of which ``n_prior_maps`` random ordered pairs give ground-truth |C|
    (k×k) for the prior; ``n_pairs`` test pairs of ``test_family`` (the "new category"), drawn
    once from ``world_seed``; every shape rescaled to unit area, ``basis`` eigenpairs each.
    Full (spec §7, diffumatch/full.py): the prior's maps from the DFAUST registrations file
    ``dfaust_path`` (downloaded by the user: MPI non-commercial licence), the test pairs from the
    Hugging Face dataset ``hf_repo`` at commit ``hf_revision`` (``test_dataset``'s folder)."""

    subdivisions: int = param(ge=1, le=5)
    n_train: int = param(ge=2)
    n_prior_maps: int = param(ge=1)
    n_pairs: int = param(ge=1)
    world_seed: int = param(ge=0)
    k: int = param(ge=2)
    basis: int = param(ge=3)
    train_family: FamilyConfig = param()
    test_family: FamilyConfig = param()
    dfaust_path: str = param()
    hf_repo: str = param()
    hf_revision: str = param()
    test_dataset: str = param()
    cache_dir: str = param()

    def check(self) -> dict[str, str]:
        """The basis holds the map size and ZoomOut's growth."""
        return {"basis": f"> k ({self.k})"} if self.basis <= self.k else {}

    def unpinned(self) -> dict[str, str]:
        """The Hugging Face dataset needs its commit."""
        if self.hf_repo and not self.hf_revision:
            return {"hf_revision": f"commit of the dataset {self.hf_repo}"}
        return {}


@dataclass
class PriorConfig:
    """The spectral diffusion prior: an MLP denoiser (``width`` × ``depth``) with EDM's VP
    preconditioning (``beta_d``, ``beta_min``), trained with the VP loss (Adam, ``lr``,
    ``batch``) for ``epochs`` passes over the ground-truth |C|."""

    width: int = param(ge=1)
    depth: int = param(ge=1)
    beta_d: float = param(gt=0.0)
    beta_min: float = param(gt=0.0)
    lr: float = param(gt=0.0)
    batch: int = param(ge=1)
    epochs: int = param(ge=1)


@dataclass
class MatchConfig:
    """Per-pair zero-shot matching: the feature net (``width``, ``out_dim``, diffusion
    ``rounds``), ``steps`` of Adam at ``lr``, solver ``lam``, SDS (``sds_draws`` noise draws,
    σ ~ 0.01 + U·``sds_scale``), the proper-map target's ZoomOut (to ``zoomout_to`` in steps of
    ``zoomout_step``, on ``zoomout_points`` farthest vertices; 0: all), the loss weights, and
    the output's ZoomOut refinement ``refine_to`` (on all vertices)."""

    width: int = param(ge=1)
    out_dim: int = param(ge=1)
    rounds: int = param(ge=1)
    steps: int = param(ge=1)
    lr: float = param(gt=0.0)
    lam: float = param(ge=0.0)
    sds_draws: int = param(ge=1)
    sds_scale: float = param(gt=0.0)
    zoomout_to: int = param(ge=2)
    zoomout_step: int = param(ge=1)
    zoomout_points: int = param(ge=0)
    refine_to: int = param(ge=2)
    w_proper: float = param(ge=0.0)
    w_sds: float = param(ge=0.0)
    w_ortho: float = param(ge=0.0)
    w_bij: float = param(ge=0.0)
    w_lap: float = param(ge=0.0)


@dataclass
class EvalConfig:
    """Geodesics on the k-NN graph of each target's vertices (``knn`` neighbours)."""

    knn: int = param(ge=2)


@dataclass
class DiffumatchConfig:
    """One profile of diffumatch's section in params.yaml."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    prior: PriorConfig = param()
    match: MatchConfig = param()
    eval: EvalConfig = param()

    def check(self) -> dict[str, str]:
        """ZoomOut sizes fit between k and the basis."""
        d, m = self.data, self.match
        if all(d.k <= size <= d.basis for size in (m.zoomout_to, m.refine_to)):
            return {}
        return {"match": f"zoomout_to and refine_to in [data.k ({d.k}), data.basis ({d.basis})]"}
