"""Typed schema of the ``eigenstructures`` section of params.yaml (values live only there).

eigenstructures: Velich et al., CVPR 2026, arXiv:2512.01103.
"""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param
from subspacelab.recsys.datasets import PinnedFile

MANIFOLDS = ("sphere", "torus", "bumps", "shapenet", "images")
IMAGE_SOURCES = ("cifar100", "stl10")


@dataclass
class DataConfig:
    """The worlds: a tilted-density sphere (the claims), a flat torus, a circle of bumps; in
    the full profile also ``shapenet`` (meshes of section ``shapenet``, eigenstructures/full.py)
    and ``images`` (section ``images``, eigenstructures/images.py)."""

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
class TransformerConfig:
    """The paper's Transformer encoder over the points (spec §4: 8 layers, d = the last hidden
    width, 8 heads, feed-forward 256, no dropout); the MLP before it gets LayerNorm and GELU."""

    layers: int = param(ge=1)
    heads: int = param(ge=1)
    ffn: int = param(ge=1)


@dataclass
class ModelConfig:
    """Per-point MLP widths (input and output added), the basis size k, and the Transformer
    encoder (full profile, spec §4; null: the miniature's plain per-point MLP, spec §6)."""

    hidden: list[int] = param(ge=1, min_len=1)
    k: int = param(ge=2)
    transformer: TransformerConfig | None = param()

    def check(self) -> dict[str, str]:
        """Attention heads split the model width."""
        t = self.transformer
        if t is not None and self.hidden[-1] % t.heads:
            return {"transformer": f"heads ({t.heads}) must divide hidden[-1] ({self.hidden[-1]})"}
        return {}


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
class ImagesConfig:
    """The ``images`` world (full profile, spec §3, §4, §7): per seed ``n_points`` images drawn
    from the test split of ``source`` (CIFAR-100's python tarball or STL-10's binary one, the
    user-downloaded ``archive``, SHA-256-pinned). Features: the images' pixels, standardised per
    image, or the rows of ``features_file`` (e.g. CLIP embeddings computed elsewhere, one row per
    test image in the archive's order; null: pixels); cosine kNN. Oracle: the ``functions``
    smallest eigenpairs of the samples' ``knn``-NN graph Laplacian. ``k``: the model's basis size
    on this world (the spec's 20 for image manifolds; ``model.k`` stays the other worlds')."""

    source: str = param(choices=IMAGE_SOURCES)
    archive: PinnedFile = param()
    n_points: int = param(ge=20)
    knn: int = param(ge=2)
    functions: int = param(ge=2)
    k: int = param(ge=2)
    features_file: PinnedFile | None = param()

    def check(self) -> dict[str, str]:
        """Files named; the kNN graph and the oracle fit in a sample."""
        if not self.archive.file:
            return {"archive": f"the {self.source} archive's file name"}
        if self.features_file is not None and not self.features_file.file:
            return {"features_file": "a .npy file name, or null for the images' pixels"}
        if self.knn >= self.n_points:
            return {"knn": f"below n_points ({self.n_points})"}
        if self.functions >= self.n_points:
            return {"functions": f"below n_points ({self.n_points})"}
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
    images: ImagesConfig | None = param()  # full profile only (null in mini)

    def check(self) -> dict[str, str]:
        """The shapenet and images worlds need their sections; the image oracle holds the
        eigenspaces scored."""
        for name in ("shapenet", "images"):
            if name in self.data.manifolds and getattr(self, name) is None:
                return {name: f"a section (data.manifolds lists {name})"}
        if self.images is not None and self.images.functions < self.eval.groups:
            return {"images": f"functions must be at least eval.groups ({self.eval.groups})"}
        return {}

    def sample_size(self, manifold: str) -> int:
        """Points per sample of ``manifold``: ``images.n_points`` on the image world, else
        ``data.n_points``."""
        if manifold == "images" and self.images is not None:
            return self.images.n_points
        return self.data.n_points

    def basis_size(self, manifold: str) -> int:
        """The model's k on ``manifold``: ``images.k`` on the image world, else ``model.k``."""
        if manifold == "images" and self.images is not None:
            return self.images.k
        return self.model.k
