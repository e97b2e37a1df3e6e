"""The epoch-end hook of dsl's joint runs (arXiv 2206.09068): imports Lightning, so only the
steps that train import it."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
from lightning.pytorch.callbacks import Callback

from subspacelab.modules.subspace_learners import SubspaceLearners


class LearnerEpochs(Callback):
    """After every epoch, each model's schedule re-clusters, records validation NMI and splits
    its last learner when the rule fires (resetting the optimiser's state of re-initialised rows);
    the members share no parameter, so one model's events never touch another's."""

    def __init__(self, learners: Sequence[SubspaceLearners]) -> None:
        self.learners = list(learners)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Run every schedule's end of epoch."""
        optimizer = trainer.optimizers[0]
        for learners in self.learners:
            learners.end_epoch(trainer.current_epoch, optimizer)
