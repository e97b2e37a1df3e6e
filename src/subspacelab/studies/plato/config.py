"""Typed params of plato (arXiv 2503.05283); values live in params.yaml only."""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param


@dataclass
class DataConfig:
    """Procedural shapes with captions (spec §6): ``n_shapes`` point clouds of ``n_points``
    surface points, split by shape into train (``n_train``, of which the last ``n_val`` select
    k and the ridge) and test. Scales are log-uniform in ``small_scale`` / ``large_scale``;
    ``footprint`` stretches x so that the z-rotation is observable; ``jitter`` is the points'
    Gaussian noise. Full profile (plato/full.py): ``points_url`` (a zip of per-uid clouds),
    ``captions_url`` (Cap3D's ``uid,caption`` CSV), ``labels_url`` (Objaverse-LVIS
    annotations), each with its sha256, downloaded into ``cache_dir``."""

    n_shapes: int = param(ge=20)
    n_train: int = param(ge=10)
    n_val: int = param(ge=4)
    n_points: int = param(ge=16)
    small_scale: list[float] = param(min_len=2)
    large_scale: list[float] = param(min_len=2)
    footprint: float = param(ge=1.0)
    jitter: float = param(ge=0.0)
    text_batch: int = param(ge=1)
    points_url: str = param()
    points_sha256: str = param()
    captions_url: str = param()
    captions_sha256: str = param()
    labels_url: str = param()
    labels_sha256: str = param()
    cache_dir: str = param()

    def check(self) -> dict[str, str]:
        """Train, validation and test are non-empty; scale ranges are ordered and positive."""
        bad: dict[str, str] = {}
        if not self.n_val < self.n_train < self.n_shapes:
            bad["n_train"] = f"n_val ({self.n_val}) < n_train < n_shapes ({self.n_shapes})"
        for name in ("small_scale", "large_scale"):
            span = getattr(self, name)
            if len(span) != 2 or not 0 < span[0] <= span[1]:
                bad[name] = "[low, high] with 0 < low <= high"
        if not bad and self.small_scale[1] >= self.large_scale[0]:
            bad["large_scale"] = "above small_scale (sizes must not overlap)"
        return bad

    def unpinned(self) -> dict[str, str]:
        """The full profile's downloads need their checksums."""
        out: dict[str, str] = {}
        if self.points_url and not self.points_sha256:
            out["points_sha256"] = "sha256 of the point-cloud archive"
        if self.captions_url and not self.captions_sha256:
            out["captions_sha256"] = "sha256 of the captions CSV"
        if self.labels_url and not self.labels_sha256:
            out["labels_sha256"] = "sha256 of the LVIS annotations"
        return out


@dataclass
class EncoderConfig:
    """The uni-modal 3D encoder: a tiny PointNet (shared MLP 3→hidden→dim, max-pool) trained
    as a Chamfer autoencoder (decoder dim→decoder_hidden→n_points×3) without text."""

    hidden: int = param(ge=1)
    dim: int = param(ge=2)
    decoder_hidden: int = param(ge=1)
    epochs: int = param(ge=1)
    batch: int = param(ge=1)
    lr: float = param(gt=0.0)


@dataclass
class AlignConfig:
    """Subspace extraction and alignment: PCA pre-reduction to ``pca_dim`` per side, CCA ridge
    (relative to the mean eigenvalue), the k sweep (k* picked on validation), the ridge grid of
    the affine maps (picked on validation), test pool size N, the mutual-kNN k and the probes'
    ridge."""

    pca_dim: int = param(ge=2)
    cca_ridge: float = param(ge=0.0)
    ks: list[int] = param(min_len=2)
    affine_ridges: list[float] = param(min_len=1)
    pool: int = param(ge=2)
    knn: int = param(ge=1)
    probe_ridge: float = param(gt=0.0)

    def check(self) -> dict[str, str]:
        """The ks are increasing, positive and at most pca_dim; the ridges are >= 0."""
        bad: dict[str, str] = {}
        if sorted(set(self.ks)) != self.ks or self.ks[0] < 1 or self.ks[-1] > self.pca_dim:
            bad["ks"] = f"strictly increasing, in [1, pca_dim = {self.pca_dim}]"
        if any(r < 0 for r in self.affine_ridges):
            bad["affine_ridges"] = ">= 0"
        return bad


@dataclass
class TextConfig:
    """The text encoder: the offline MiniLM (mini) or a sentence-transformers model at a
    pinned hub revision (full)."""

    model: str = param()
    revision: str = param()

    def unpinned(self) -> dict[str, str]:
        """A hub model needs its revision (the bundled MiniLM does not)."""
        if self.model != "minilm" and not self.revision:
            return {"revision": f"hub revision (commit) of {self.model}"}
        return {}


@dataclass
class PlatoConfig:
    """One profile of plato's section in params.yaml."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    text: TextConfig = param()
    encoder: EncoderConfig = param()
    align: AlignConfig = param()

    def check(self) -> dict[str, str]:
        """Pools fit in the validation and test splits; pca_dim fits the encoders."""
        d, a = self.data, self.align
        bad: dict[str, str] = {}
        if a.pool > min(d.n_val, d.n_shapes - d.n_train):
            bad["align"] = f"pool ({a.pool}) <= n_val and the test split"
        if a.pca_dim > self.encoder.dim:
            bad["align"] = f"pca_dim ({a.pca_dim}) <= encoder.dim ({self.encoder.dim})"
        if a.knn >= a.pool:
            bad["align"] = f"knn ({a.knn}) < pool ({a.pool})"
        return bad
