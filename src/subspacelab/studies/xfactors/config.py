"""Typed schema of the ``xfactors`` section of params.yaml (values live only there).

xfactors: XFACTORS, anonymous ICML 2026 submission (no arXiv id).
"""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param

FACTORS = ("shape", "scale", "rotation", "pos_x", "pos_y")


@dataclass
class DataConfig:
    """Procedural dSprites-like factor images (mini, ``subspacelab.worlds.factors``) or the real
    dSprites npz (full: ``imgs`` (N, 64, 64) and ``latents_classes`` (N, 6), color dropped),
    fetched against its SHA-256. ``t_factors``: the factors given a T block (the rest stay in S)."""

    source: str = param(choices=("procedural", "dsprites"))
    size: int = param(choices=(16, 32, 64))
    n_scale: int = param(ge=1)
    n_rotation: int = param(ge=1)
    n_pos: int = param(ge=2)
    train_fraction: float = param(gt=0, lt=1)
    t_factors: list[str] = param(choices=FACTORS, min_len=1)
    max_images: int = param(ge=0)  # 0: every image (full dSprites: a seeded subsample)
    dsprites_url: str = param()
    dsprites_file: str = param()
    dsprites_sha256: str = param()
    dsprites_dir: str = param()

    def check(self) -> dict[str, str]:
        """T-factors are distinct and leave the residual S something; dSprites is 64×64."""
        if len(set(self.t_factors)) != len(self.t_factors) or len(self.t_factors) == len(FACTORS):
            return {"t_factors": "distinct factors, at most four (one stays in S)"}
        if self.source == "dsprites" and (self.size != 64 or not self.dsprites_file):
            return {"size": "dSprites images are 64x64 and need dsprites_file"}
        return {}

    def unpinned(self) -> dict[str, str]:
        """The dSprites npz is fetched only against its SHA-256."""
        if self.source == "dsprites" and not self.dsprites_sha256:
            return {"dsprites_sha256": f"the SHA-256 of {self.dsprites_file}"}
        return {}


@dataclass
class ModelConfig:
    """§3/§6: encoder widths, d_s, d_i, τ, w_KL, β_s, β_t, the total InfoNCE weight
    (λ_i = nce_weight / n_T) and the β-VAE's β."""

    widths: list[int] = param(ge=1, min_len=1)
    d_s: int = param(ge=1)
    d_i: int = param(ge=1)
    tau: float = param(gt=0)
    w_kl: float = param(ge=0)
    beta_s: float = param(ge=0)
    beta_t: float = param(ge=0)
    nce_weight: float = param(ge=0)
    bvae_beta: float = param(ge=0)


@dataclass
class TrainConfig:
    """AdamW (explicit lr, §4's pitfall), batch, epochs; the probe's epochs."""

    epochs: int = param(ge=1)
    batch: int = param(ge=2)
    lr: float = param(gt=0)
    weight_decay: float = param(ge=0)
    probe_epochs: int = param(ge=1)


@dataclass
class EvalConfig:
    """Metric settings, fixed once (§9): FactorVAE votes (train and eval each) and their
    batch, DCI's predictor and its train-code cap, MIG's bins, swap pairs."""

    fvae_votes: int = param(ge=1)
    fvae_batch: int = param(ge=2)
    dci_model: str = param(choices=("lasso", "gbt"))
    dci_max_train: int = param(ge=10)
    mig_bins: int = param(ge=2)
    n_swap: int = param(ge=1)


@dataclass
class XFactorsConfig:
    """The xfactors study."""

    seeds: list[int] = param(min_len=1)
    data: DataConfig = param()
    model: ModelConfig = param()
    train: TrainConfig = param()
    eval: EvalConfig = param()
