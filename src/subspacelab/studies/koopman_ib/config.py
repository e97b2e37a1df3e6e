"""Typed schema of the ``koopman_ib`` section of params.yaml (values live only there).

koopman_ib: Cheng et al., "Information Shapes Koopman Representation", arXiv:2510.13025.
"""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param

SYSTEMS = ("slow_manifold", "pendulum", "cylinder")
REQUIRED_SYSTEMS = ("slow_manifold", "pendulum")  # the claims are decided on these two


@dataclass
class DataConfig:
    """The worlds of §6 (slow manifold, damped pendulum through a random lift) and, in the full
    profile, CFDBench's cylinder flow (§7) as an .npz export with key ``fields`` of shape
    (n_traj, n_steps, C, 64, 64), fetched against its SHA-256."""

    systems: list[str] = param(choices=SYSTEMS, min_len=2)
    slow_traj: int = param(ge=4)
    pendulum_traj: int = param(ge=4)
    n_steps: int = param(ge=8)
    dt: float = param(gt=0)
    mu: float = param(lt=0)
    lam: float = param(lt=0)
    damping: float = param(gt=0, lt=2)
    obs_dim: int = param(ge=3)
    max_angle: float = param(gt=0, lt=3.14)
    train_fraction: float = param(gt=0, lt=1)
    window: int = param(ge=2)  # T: a window holds T + 1 consecutive samples
    windows_per_traj: int = param(ge=1)  # training windows at seeded random starts
    cylinder_url: str = param()
    cylinder_file: str = param()
    cylinder_sha256: str = param()
    cylinder_dir: str = param()

    def check(self) -> dict[str, str]:
        """The claims need both synthetic systems; a window and the rollout fit the simulation."""
        missing = [s for s in REQUIRED_SYSTEMS if s not in self.systems]
        if missing:
            return {"systems": f"must include {', '.join(REQUIRED_SYSTEMS)} (missing {missing})"}
        if len(set(self.systems)) != len(self.systems):
            return {"systems": "no repeats"}
        if self.window + 1 > self.n_steps:
            return {"window": f"T + 1 must fit in n_steps = {self.n_steps}"}
        if "cylinder" in self.systems and not self.cylinder_file:
            return {"cylinder_file": "the CFDBench cylinder export to fetch"}
        return {}

    def unpinned(self) -> dict[str, str]:
        """The cylinder export is fetched only against its SHA-256."""
        if "cylinder" in self.systems and not self.cylinder_sha256:
            return {"cylinder_sha256": f"the SHA-256 of {self.cylinder_file}"}
        return {}


@dataclass
class ModelConfig:
    """MLP encoder/decoder widths (obs -> hidden -> H, mirrored) for the synthetic systems, the
    main latent size H (claims R1, R2), the small one (R3's eigenvalue diagnostic) and the
    cylinder's conv latent size (§4: 512)."""

    hidden: list[int] = param(ge=1, min_len=1)
    activation: str = param(choices=("tanh", "relu"))  # the spec names none
    latent_dim: int = param(ge=1)
    small_latent_dim: int = param(ge=1)
    conv_latent_dim: int = param(ge=1)


@dataclass
class TrainConfig:
    """§4's loss weights and optimiser (Adam, StepLR per epoch, gradient clipping per model)."""

    epochs: int = param(ge=1)
    batch: int = param(ge=1)
    lr: float = param(gt=0)
    step_size: int = param(ge=1)
    gamma: float = param(gt=0, le=1)
    clip: float = param(gt=0)
    ridge: float = param(gt=0)  # ε of the closed-form K
    id_weight: float = param(ge=0)  # λ
    alpha: float = param(ge=0)  # InfoNCE weight
    beta: float = param(ge=0)  # entropy weight (signed per variant)
    k: int = param(ge=1)
    tau: float = param(gt=0)


@dataclass
class EvalConfig:
    """Rollout horizon (§6: 50 steps)."""

    horizon: int = param(ge=1)


@dataclass
class KoopmanIBConfig:
    """The koopman_ib study."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    model: ModelConfig = param()
    train: TrainConfig = param()
    eval: EvalConfig = param()

    def check(self) -> dict[str, str]:
        """The temporal InfoNCE needs an anchor: a window of T > 2k steps; the rollout must stay
        inside the simulated range (§9)."""
        if self.data.window <= 2 * self.train.k:
            return {"train": f"k = {self.train.k} needs window T > 2k (T = {self.data.window})"}
        if self.eval.horizon + 1 > self.data.n_steps:
            return {"eval": f"horizon + 1 must fit in n_steps = {self.data.n_steps}"}
        return {}
