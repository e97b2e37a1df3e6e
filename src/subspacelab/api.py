"""Everything a study imports from the lab, in one place.

A study's modules import the framework from here and nothing else of it (toolkits such as
``subspacelab.clustering`` or ``subspacelab.merging`` are imported directly)::

    from subspacelab.api import Claim, Report, Step, StepContext, Study, decide, gap, param

The training names (``fit``, ``train_joint``, ``Member``, ``LossModule``, the loaders) load
Lightning, whose import costs seconds: they resolve on first use, so import them inside the
function that trains (``from subspacelab.api import train_joint`` in the step's body) and a
stage that does not train never imports Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from subspacelab.config import ParamsError, param
from subspacelab.io import (
    DownloadError,
    ModelFileError,
    load_tensors,
    read_json,
    save_tensors,
    sha256_file,
    write_json,
    write_text,
)
from subspacelab.nets.eval import accuracy, predict
from subspacelab.registry import (
    Claim,
    Curve,
    Metrics,
    Report,
    SeedMetrics,
    Step,
    StepContext,
    StepOutput,
    Study,
    seed_all,
)
from subspacelab.verdicts import (
    ClaimResult,
    Condition,
    Op,
    Stat,
    combine,
    decide,
    every,
    gap,
    on_mean,
    ratio,
)

if TYPE_CHECKING:
    from subspacelab.nets.joint import JointResult, Member, train_joint, train_one
    from subspacelab.nets.training import (
        Batch,
        LossModule,
        TrainEnv,
        fit,
        full_batch_loader,
        make_trainer,
        state_dict_cpu,
        tensor_loader,
    )

_LAZY = {
    "JointResult": "subspacelab.nets.joint",
    "Member": "subspacelab.nets.joint",
    "train_joint": "subspacelab.nets.joint",
    "train_one": "subspacelab.nets.joint",
    "Batch": "subspacelab.nets.training",
    "LossModule": "subspacelab.nets.training",
    "TrainEnv": "subspacelab.nets.training",
    "fit": "subspacelab.nets.training",
    "full_batch_loader": "subspacelab.nets.training",
    "make_trainer": "subspacelab.nets.training",
    "state_dict_cpu": "subspacelab.nets.training",
    "tensor_loader": "subspacelab.nets.training",
}

__all__ = [
    "Batch",
    "Claim",
    "ClaimResult",
    "Condition",
    "Curve",
    "DownloadError",
    "JointResult",
    "LossModule",
    "Member",
    "Metrics",
    "ModelFileError",
    "Op",
    "ParamsError",
    "Report",
    "SeedMetrics",
    "Stat",
    "Step",
    "StepContext",
    "StepOutput",
    "Study",
    "TrainEnv",
    "accuracy",
    "combine",
    "decide",
    "every",
    "fit",
    "full_batch_loader",
    "gap",
    "load_tensors",
    "make_trainer",
    "on_mean",
    "param",
    "predict",
    "ratio",
    "read_json",
    "save_tensors",
    "seed_all",
    "sha256_file",
    "state_dict_cpu",
    "tensor_loader",
    "train_joint",
    "train_one",
    "write_json",
    "write_text",
]


def __getattr__(name: str) -> Any:
    """The training names, imported (with Lightning) on first use."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
