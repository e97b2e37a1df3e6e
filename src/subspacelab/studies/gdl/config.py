"""Typed params of gdl (arXiv 2104.13478); values live in params.yaml only."""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param

SAMPLE_EFFICIENCY_SIZE = 100  # spec §6 (c): "with 100 training samples"
# gdb9.sdf.csv's target columns (after mol_id)
QM9_TARGETS = (
    "A", "B", "C", "mu", "alpha", "homo", "lumo", "gap", "r2", "zpve",
    "u0", "u298", "h298", "g298", "cv", "u0_atom", "u298_atom", "h298_atom", "g298_atom",
)  # fmt: skip


@dataclass
class MoleculesData:
    """Full profile only (spec §7): QM9 (torch_geometric's raw ``qm9.zip``) with the
    ``qm9_targets`` columns, split into ``qm9_split`` train / validation / test molecules per
    seed (EGNN: 100000 / 17748 / 13083), and ogbg-molhiv (OGB's ``hiv.zip``, its scaffold
    split); both archives SHA-256 pinned, fetched into ``download_dir``."""

    qm9_url: str = param()
    qm9_sha256: str = param()
    qm9_targets: list[str] = param(choices=QM9_TARGETS, min_len=1)
    qm9_split: list[int] = param(ge=1, min_len=3)
    molhiv_url: str = param()
    molhiv_sha256: str = param()

    def check(self) -> dict[str, str]:
        """Three split sizes; both URLs set."""
        bad: dict[str, str] = {}
        if len(self.qm9_split) != 3:
            bad["qm9_split"] = "[train, validation, test] molecule counts"
        for name in ("qm9_url", "molhiv_url"):
            if not getattr(self, name):
                bad[name] = "the archive's URL (file:// for a copy)"
        return bad

    def unpinned(self) -> dict[str, str]:
        """Neither archive publishes a SHA-256: both are fetched only against pins."""
        missing = {}
        if not self.qm9_sha256:
            missing["qm9_sha256"] = "the SHA-256 of qm9.zip (gdb9.sdf, gdb9.sdf.csv)"
        if not self.molhiv_sha256:
            missing["molhiv_sha256"] = "the SHA-256 of OGB's hiv.zip"
        return missing


@dataclass
class DataConfig:
    """The five worlds of the miniature (spec §6): digits for C4 (``sklearn``'s 8×8, split by
    ``digits_test_size``; or, full scale, MNIST-rot from ``mnist_rot_url`` into
    ``download_dir`` under the lab root), training subsets of ``digits_sizes`` plus the whole
    training split; MNIST-1D (translations); sets, graphs and point clouds
    (``synthetic_train``/``synthetic_test`` samples each). Full scale also: ``molecules``."""

    digits_source: str = param(choices=("sklearn", "mnist_rot"))
    digits_test_size: float = param(gt=0.0, lt=1.0)
    mnist_rot_url: str = param()
    mnist_rot_sha256: str = param()
    download_dir: str = param()
    digits_sizes: list[int] = param(min_len=1)
    mnist1d_samples: int = param(ge=100)
    synthetic_train: int = param(ge=10)
    synthetic_test: int = param(ge=10)
    set_size: int = param(ge=2)
    set_dim: int = param(ge=1)
    graph_nodes: int = param(ge=3)
    graph_p: list[float] = param(ge=0.0, le=1.0, min_len=2)
    cloud_points: int = param(ge=3)
    cloud_noise: float = param(ge=0.0)
    molecules: MoleculesData | None = param()  # full profile only (null in mini)

    def check(self) -> dict[str, str]:
        """Subset sizes increase, include the claim's 100; edge probabilities in [0, 1]."""
        bad: dict[str, str] = {}
        sizes = self.digits_sizes
        if sorted(set(sizes)) != sizes or SAMPLE_EFFICIENCY_SIZE not in sizes or sizes[0] < 10:
            bad["digits_sizes"] = f"increasing sizes >= 10 that include {SAMPLE_EFFICIENCY_SIZE}"
        if len(self.graph_p) != 2 or self.graph_p[0] > self.graph_p[1] or self.graph_p[1] == 0:
            bad["graph_p"] = "[low, high] with low <= high, high > 0"
        parts = self.download_dir.replace("\\", "/").split("/")
        if self.download_dir.startswith(("/", "~")) or ".." in parts or not self.download_dir:
            bad["download_dir"] = "a relative path inside the lab, without '..'"
        return bad

    def unpinned(self) -> dict[str, str]:
        """MNIST-rot's archive is SHA-256 pinned when it is the C4 world's source."""
        if self.digits_source == "mnist_rot" and not self.mnist_rot_sha256:
            return {"mnist_rot_sha256": "the SHA-256 of mnist_rotation_new.zip"}
        return {}


@dataclass
class ModelConfig:
    """Widths of every arm: the p4 G-CNN and the plain CNN (2-D, odd kernel), the 1-D CNNs
    (stride 1 and ``strides``), DeepSets, the MPNN, the EGNN and the MLP baselines."""

    kernel: int = param(ge=1)
    gcnn_widths: list[int] = param(min_len=1)
    cnn_widths: list[int] = param(min_len=1)
    cnn1d_widths: list[int] = param(min_len=1)
    cnn1d_kernel: int = param(ge=1)
    strides: list[int] = param(min_len=1)
    set_width: int = param(ge=1)
    graph_width: int = param(ge=1)
    graph_layers: int = param(ge=1)
    egnn_width: int = param(ge=1)
    egnn_layers: int = param(ge=1)
    mlp_width: int = param(ge=1)

    def check(self) -> dict[str, str]:
        """Odd kernels; one stride per 1-D width, the total stride > 1 (the failure to show)."""
        bad: dict[str, str] = {}
        for name in ("kernel", "cnn1d_kernel"):
            if getattr(self, name) % 2 == 0:
                bad[name] = "odd (a centred filter)"
        if len(self.strides) != len(self.cnn1d_widths) or min(self.strides) < 1:
            bad["strides"] = f"{len(self.cnn1d_widths)} strides >= 1, one per cnn1d width"
        elif max(self.strides) < 2:
            bad["strides"] = "at least one stride >= 2 (the strided arm)"
        return bad


@dataclass
class TrainConfig:
    """Adam at a constant learning rate, per-member seeded mini-batches; epochs per world."""

    lr: float = param(gt=0.0)
    batch: int = param(ge=1)
    digits_epochs: int = param(ge=1)
    mnist1d_epochs: int = param(ge=1)
    sets_epochs: int = param(ge=1)
    graphs_epochs: int = param(ge=1)
    points_epochs: int = param(ge=1)


@dataclass
class EvalConfig:
    """The probe: test inputs per e_eq, random permutations / E(3) elements, 1-D shifts."""

    probe_samples: int = param(ge=1)
    elements: int = param(ge=1)
    shifts: list[int] = param(min_len=2)


@dataclass
class Qm9Fit:
    """The EGNN (Satorras et al. 2021, arXiv 2102.09844) and its MLP baseline on QM9: one
    model per seed and target group (``groups``: target names joined by ``+``, e.g.
    ``homo+lumo+gap``; each target in one group at most), L1 loss on standardised targets,
    Adam with ``schedule`` over ``epochs`` of ``batch`` molecules."""

    groups: list[str] = param(min_len=1)
    layers: int = param(ge=1)
    width: int = param(ge=1)
    lr: float = param(gt=0.0)
    weight_decay: float = param(ge=0.0)
    schedule: str = param(choices=("constant", "cosine"))
    batch: int = param(ge=1)
    epochs: int = param(ge=1)
    mlp_width: int = param(ge=1)
    mlp_lr: float = param(gt=0.0)


@dataclass
class MolhivFit:
    """GIN with bond features (Xu et al. 2019, arXiv 1810.00826; OGB's GIN) and an MLP on the
    summed atom embeddings on ogbg-molhiv: binary cross-entropy, Adam, constant lr."""

    layers: int = param(ge=1)
    width: int = param(ge=1)
    dropout: float = param(ge=0.0, lt=1.0)
    lr: float = param(gt=0.0)
    batch: int = param(ge=1)
    epochs: int = param(ge=1)
    mlp_width: int = param(ge=1)
    mlp_lr: float = param(gt=0.0)


@dataclass
class MoleculeFit:
    """Full profile only (spec §7): the molecule arms on ``data.molecules``."""

    qm9: Qm9Fit = param()
    molhiv: MolhivFit = param()


@dataclass
class GdlConfig:
    """One profile of gdl's section in params.yaml."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    model: ModelConfig = param()
    train: TrainConfig = param()
    eval: EvalConfig = param()
    molecule_fit: MoleculeFit | None = param()  # full profile only (null in mini)

    def check(self) -> dict[str, str]:
        """The shifts must include multiples and non-multiples of the total 1-D stride; the
        molecule arms need the molecules, and their target groups name loaded targets."""
        bad: dict[str, str] = {}
        total = 1
        for s in self.model.strides:
            total *= s
        multiples = [t for t in self.eval.shifts if t % total == 0]
        if not multiples or len(multiples) == len(self.eval.shifts) or 0 in self.eval.shifts:
            bad["eval.shifts"] = f"non-zero shifts, some multiples of {total}, some not"
        if self.molecule_fit is not None:
            if self.data.molecules is None:
                bad["molecule_fit"] = "needs data.molecules (QM9 and ogbg-molhiv)"
                return bad
            loaded = self.data.molecules.qm9_targets
            named = [t for g in self.molecule_fit.qm9.groups for t in g.split("+")]
            if any(t not in loaded for t in named) or len(set(named)) != len(named):
                bad["molecule_fit.qm9.groups"] = (
                    f"'+'-joined targets of data.molecules.qm9_targets {loaded}, each once"
                )
        return bad
