"""Lightning wrapper for xfactors (anonymous ICML 2026 submission, no arXiv id): AdamW.

The official trainer uses AdamW with its default learning rate 1e-3 (its ``--lr`` flag never
reaches the optimiser, §4); here the rate and the weight decay are explicit params.
"""

from __future__ import annotations

import torch

from subspacelab.api import LossModule


class AdamWLoss(LossModule):
    """:class:`~subspacelab.api.LossModule` with AdamW (decoupled weight decay)."""

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """AdamW over the network's trainable parameters."""
        params = [p for p in self.net.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
