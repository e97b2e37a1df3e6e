"""Typed schema of the ``geo_sae`` section of params.yaml (values live only there).

geo_sae: Nagar et al., Advances in Space Research 2024, doi:10.1016/j.asr.2024.09.013.
"""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param


@dataclass
class DataConfig:
    """Procedural scenes per mixing regime (mini) or a real scene export (full)."""

    source: str = param(choices=("procedural", "scene"))
    regimes: list[str] = param(choices=("nonlinear", "linear"))
    size: int = param(ge=16)
    n_units: int = param(ge=2)
    n_bands: int = param(ge=3)
    noise: float = param(ge=0)
    # scene: an .npz export (bands H×W×B, units H×W) or a GeoTIFF pair, with SHA-256 pins
    scene_url: str = param()
    scene_file: str = param()
    scene_sha256: str = param()
    units_file: str = param()
    units_sha256: str = param()
    scene_dir: str = param()

    def check(self) -> dict[str, str]:
        """Procedural scenes need regimes; a real scene needs its file (an empty pin validates,
        and the download then refuses to run until the file is pinned)."""
        if self.source == "procedural" and not self.regimes:
            return {"regimes": "at least one of nonlinear, linear"}
        if self.source == "scene" and not self.scene_file:
            return {"scene_file": "the scene export to fetch"}
        return {}

    def unpinned(self) -> dict[str, str]:
        """A real scene (and its ground truth, when named) is fetched only against its SHA-256."""
        if self.source != "scene":
            return {}
        missing = {}
        if not self.scene_sha256:
            missing["scene_sha256"] = f"the SHA-256 of {self.scene_file}"
        if self.units_file and not self.units_sha256:
            missing["units_sha256"] = f"the SHA-256 of {self.units_file}"
        return missing


@dataclass
class ModelConfig:
    """Encoders (§3) and clustering. PCA keeps as many components as the autoencoders' codes
    have dimensions (the last width of ``ae_widths``; ``sae3_widths`` must end the same)."""

    ae_widths: list[int] = param(ge=1, min_len=2)
    ae_epochs: int = param(ge=1)
    ae_batch: int = param(ge=1)
    sae2_widths: list[int] = param(ge=1, min_len=2)  # first width is replaced by 2·B
    sae3_widths: list[int] = param(ge=1, min_len=2)  # first width is replaced by the input
    sae_epochs: int = param(ge=1)
    sae_batch: int = param(ge=1)
    lr: float = param(gt=0)
    l1: float = param(ge=0)
    max_train_pixels: int = param(ge=0)  # 0: every pixel (a full scene may need a subsample)
    k: int = param(ge=2)
    filter_size: int = param(ge=1)

    def check(self) -> dict[str, str]:
        """The encoders are compared at one code dimension."""
        if self.ae_widths[-1] != self.sae3_widths[-1]:
            return {"sae3_widths": f"must end at the AE's code dimension {self.ae_widths[-1]}"}
        return {}


@dataclass
class GeoSAEConfig:
    """The geo_sae study."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    model: ModelConfig = param()
