"""Typed params of pointcloud_clustering (arXiv 2307.14605); values live in params.yaml only."""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param


@dataclass
class SensorConfig:
    """The virtual LiDAR (``subspacelab.shapes.lidar.Sensor``): rings, directions per ring,
    vertical field of view (degrees), mounting height and range (m), dropout, range noise (m)."""

    beams: int = param(ge=1)
    azimuths: int = param(ge=8)
    fov_up: float = param(ge=-90.0, le=90.0)
    fov_down: float = param(ge=-90.0, le=90.0)
    height: float = param(gt=0.0)
    max_range: float = param(gt=0.0)
    dropout: float = param(ge=0.0, lt=1.0)
    range_noise: float = param(ge=0.0)


@dataclass
class LayoutConfig:
    """Object counts per scene as inclusive [low, high] ranges, within ``radius`` metres."""

    radius: float = param(ge=10.0)
    buildings: list[int] = param(min_len=2)
    cars: list[int] = param(min_len=2)
    poles: list[int] = param(min_len=2)
    vegetation: list[int] = param(min_len=2)


@dataclass
class KittiData:
    """SemanticKITTI (full profile, spec §7): the user's archives (KITTI odometry velodyne and
    SemanticKITTI labels zips, licence-gated: placed by hand under ``root``) with their
    SHA-256 pins; scans every ``stride`` frames of the train / val sequences, each subsampled
    to the model's point count."""

    root: str = param()
    velodyne_zip: str = param()
    velodyne_sha256: str = param()
    labels_zip: str = param()
    labels_sha256: str = param()
    train_sequences: list[str] = param(min_len=1)
    val_sequences: list[str] = param(min_len=1)
    stride: int = param(ge=1)


@dataclass
class DataConfig:
    """Scenes (spec §6): train / test scans of ``n_points`` returns; the test split has its own
    sensor and layout (shifted density and occlusion); ``scale`` divides coordinates (m) before
    the network; ``kitti`` switches to SemanticKITTI (full profile)."""

    n_train: int = param(ge=1)
    n_test: int = param(ge=1)
    n_points: int = param(ge=16)
    knn: int = param(ge=2)
    scale: float = param(gt=0.0)
    sensor: SensorConfig = param()
    test_sensor: SensorConfig = param()
    layout: LayoutConfig = param()
    test_layout: LayoutConfig = param()
    kitti: KittiData | None = param()

    def check(self) -> dict[str, str]:
        """The graph fits in a scan; fields of view are ordered; ranges are [low, high]."""
        bad: dict[str, str] = {}
        if self.knn > self.n_points:
            bad["knn"] = f"at most n_points ({self.n_points})"
        for name in ("sensor", "test_sensor"):
            s = getattr(self, name)
            if s.fov_down >= s.fov_up:
                bad[name] = "fov_down below fov_up"
        for name in ("layout", "test_layout"):
            lay = getattr(self, name)
            for part in ("buildings", "cars", "poles", "vegetation"):
                r = getattr(lay, part)
                if len(r) != 2 or not 0 <= r[0] <= r[1]:
                    bad[name] = f"{part}: [low, high] with 0 <= low <= high"
        return bad

    def unpinned(self) -> dict[str, str]:
        """SemanticKITTI's archives need their checksums."""
        out: dict[str, str] = {}
        if self.kitti is not None and not self.kitti.velodyne_sha256:
            out["kitti.velodyne_sha256"] = "sha256 of data_odometry_velodyne.zip"
        if self.kitti is not None and not self.kitti.labels_sha256:
            out["kitti.labels_sha256"] = "sha256 of data_odometry_labels.zip"
        return out


@dataclass
class ModelConfig:
    """DGCNN-lite (``subspacelab.shapes.edgeconv.EdgeSegNet``): EdgeConv widths, k-NN size is
    ``data.knn``; ``dynamic`` rebuilds the graph in feature space after the first layer."""

    widths: list[int] = param(min_len=1)
    global_dim: int = param(ge=1)
    head_dim: int = param(ge=1)
    embed_dim: int = param(ge=1)
    dynamic: bool = param()


@dataclass
class ClusterConfig:
    """The cluster-contrast loss (spec §3-4): K sub-clusters per class, EMA momentum, τ, τ_base,
    Sinkhorn power λ / tolerance / iteration cap, anchors per batch and per class, memory queue
    per sub-class and how many enter per step, the loss weight."""

    k: int = param(ge=1)
    momentum: float = param(ge=0.0, lt=1.0)
    tau: float = param(gt=0.0)
    tau_base: float = param(gt=0.0)
    power: float = param(gt=0.0)
    sinkhorn_tol: float = param(gt=0.0)
    sinkhorn_iter: int = param(ge=1)
    max_samples: int = param(ge=2)
    max_views: int = param(ge=1)
    queue: int = param(ge=1)
    enqueue: int = param(ge=1)
    weight: float = param(gt=0.0)


@dataclass
class TrainConfig:
    """Shared by both arms (same seeds, batches, schedule): Adam, epochs, batch of scenes."""

    epochs: int = param(ge=1)
    batch: int = param(ge=1)
    lr: float = param(gt=0.0)
    weight_decay: float = param(ge=0.0)
    schedule: str = param(choices=("constant", "cosine"))
    cluster: ClusterConfig = param()


@dataclass
class PointcloudClusteringConfig:
    """One profile of pointcloud_clustering's section in params.yaml."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    model: ModelConfig = param()
    train: TrainConfig = param()
