"""Lightning wrapper: many Koopman autoencoders of Cheng et al. (arXiv:2510.13025) at once.

One module trains M = seeds x variants models on the sum of their losses. Nothing couples them:
each model has its own parameters (a model axis in :class:`~.core.BatchedMLP`, or its own nets in
:class:`~.core.StackedNets`), its own closed-form K and its own loss; Adam and StepLR act per
element; the gradient clipping of §4 is applied per model (:func:`~.core.clip_per_model`), not
to the joint norm. The batch holds one window per seed (the loader serves each seed its own
permuted copy of its own windows), and model m reads its seed's slice.

Why not :func:`subspacelab.api.train_joint`: its members are separate modules with disjoint
parameters, while here the M models are one set of tensors with a model axis (the batched matmuls
that make the run fast); and the run needs what train_joint does not offer: StepLR per epoch,
gradient clipping per model (§4), and K, a by-product of each step's loss, averaged over the epoch
into a buffer.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from subspacelab.studies.koopman_ib import core


class JointKoopman(L.LightningModule):
    """Train M Koopman autoencoders (injected encoder/decoder with a leading model axis).

    ``seed_index[m]``: which seed slice of the batch model m reads; ``weights``: each model's α
    and signed entropy weight. The per-batch K of every model is averaged over the epoch,
    weighted by batch size (§3), into the ``koopman`` buffer used for rollouts.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        seed_index: Tensor,
        weights: core.LossWeights,
        latent_dim: int,
        *,
        id_weight: float,
        ridge: float,
        k: int,
        tau: float,
        lr: float,
        step_size: int,
        gamma: float,
        clip: float,
    ) -> None:
        super().__init__()
        m = len(seed_index)
        if len(weights.alpha) != m or len(weights.entropy) != m:
            raise ValueError(f"need loss weights for each of the {m} models")
        self.encoder, self.decoder = encoder, decoder
        self.register_buffer("seed_index", seed_index.long())
        self.register_buffer("alpha", weights.alpha.float())
        self.register_buffer("entropy_weight", weights.entropy.float())
        self.register_buffer("koopman", torch.zeros(m, latent_dim, latent_dim))
        self.register_buffer("_k_sum", torch.zeros(m, latent_dim, latent_dim))
        self._k_rows = 0
        self.id_weight, self.ridge, self.k, self.tau = id_weight, ridge, k, tau
        self.lr, self.step_size, self.gamma, self.clip = lr, step_size, gamma, clip
        self.need_mi = bool((weights.alpha != 0).any())
        self.need_entropy = bool((weights.entropy != 0).any())

    def model_windows(self, x: Tensor) -> Tensor:
        """(B, S, T + 1, *obs) -> (M, B, T + 1, *obs): each model's seed slice."""
        return x[:, self.seed_index].movedim(1, 0)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Σ_m loss_m of this batch (each term logged as its mean over models)."""
        (x,) = batch
        terms, kmat = core.koopman_losses(
            self.encoder,
            self.decoder,
            self.model_windows(x),
            ridge=self.ridge,
            k=self.k,
            tau=self.tau,
            need_mi=self.need_mi,
            need_entropy=self.need_entropy,
        )
        weights = core.LossWeights(self.alpha, self.entropy_weight)
        per_model = core.total_loss(terms, self.id_weight, weights)
        rows = x.shape[0]
        self._k_sum += kmat.detach() * rows
        self._k_rows += rows
        for name, value in terms.items():
            self.log(name, value.detach().mean(), on_step=False, on_epoch=True, batch_size=rows)
        self.log("loss", per_model.detach().mean(), on_step=False, on_epoch=True, batch_size=rows)
        return per_model.sum()

    def on_train_epoch_start(self) -> None:
        """Reset the epoch's K average."""
        self._k_sum.zero_()
        self._k_rows = 0

    def on_train_epoch_end(self) -> None:
        """K for rollouts: this epoch's batch-size-weighted mean of the per-batch K."""
        if self._k_rows:
            self.koopman.copy_(self._k_sum / self._k_rows)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clip each model's gradient norm on its own (§4: grad-clip 1.0)."""
        if isinstance(self.encoder, core.StackedNets) and isinstance(
            self.decoder, core.StackedNets
        ):
            for enc, dec in zip(self.encoder.nets, self.decoder.nets, strict=True):
                nn.utils.clip_grad_norm_([*enc.parameters(), *dec.parameters()], self.clip)
        else:
            core.clip_per_model([*self.encoder.parameters(), *self.decoder.parameters()], self.clip)

    def configure_optimizers(self) -> dict[str, Any]:
        """Adam with StepLR (per epoch)."""
        opt = torch.optim.Adam(self.parameters(), lr=self.lr)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=self.step_size, gamma=self.gamma)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
