"""The merge step's test-time adaptation (Concrete Task Arithmetic, layer-wise AdaMerging and
Concrete AdaMerging; Tang et al., arXiv:2312.06173) on one zoo seed, through Lightning.

Imported only by the merge step (``merging.concrete`` trains through Lightning), so importing the
study does not load it.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.func import functional_call

from subspacelab.api import TrainEnv, seed_all
from subspacelab.merging import scale, task_arithmetic, task_vectors
from subspacelab.merging.bench import (
    Zoo,
    head_logits,
    individual_accuracies,
    normalised,
    task_accuracies,
    tune_and_test,
)
from subspacelab.merging.concrete import (
    Objective,
    concrete_adamerging_mask,
    concrete_task_arithmetic,
    evaluation_mask,
    label_entropy,
    layerwise_adamerging,
    logit_spread,
    mask_task_vectors,
    merge_layerwise,
    prediction_entropy,
    shuffled_mask,
)
from subspacelab.studies.concrete_merge.config import TTAConfig

PAPER_INIT = 0.3  # the paper's initial (and inner-reset) λ: AdaMerging's λ are in this unit


def entropy_objective(zoo: Zoo, head: str, batch: int, seed: int) -> Objective:
    """Summed prediction entropy over tasks on unlabelled validation batches (seeded). Every
    task's batch goes through the merged backbone in one forward (the tasks share it), then
    through its own head."""
    net = zoo.backbone()
    gen = torch.Generator().manual_seed(seed)

    def objective(params: dict[str, Tensor], step: int) -> tuple[Tensor, float]:
        xs = [x[torch.randint(len(x), (batch,), generator=gen)] for x in zoo.x["val"]]
        feats = functional_call(net, params, (torch.cat(xs),)).split(batch)
        total, lowest = torch.zeros(()), math.inf
        for hd, f in zip(zoo.heads[head], feats, strict=True):
            logits = head_logits(f, hd)
            total = total + prediction_entropy(logits)
            lowest = min(lowest, label_entropy(logits.detach()))
        return total, lowest

    return objective


def _test(
    zoo: Zoo, head: str, params: dict[str, Tensor], individual: list[float]
) -> dict[str, Any]:
    accs = task_accuracies(zoo.backbone(), params, zoo.heads[head], zoo.x["test"], zoo.y["test"])
    return _scores(accs, individual)


def _scores(accs: list[float], individual: list[float]) -> dict[str, Any]:
    """Mean and per-task absolute and normalised test accuracy."""
    return {
        "abs": float(np.mean(accs)),
        "norm": normalised(accs, individual),
        "task_abs": [float(a) for a in accs],
        "task_norm": [a / max(i, 1e-12) for a, i in zip(accs, individual, strict=True)],
    }


def _spread(logits: dict[str, Tensor]) -> dict[str, float]:
    std, absmax = logit_spread(logits)
    return {"logit_std": std, "logit_absmax": absmax}


def run_concrete(env: TrainEnv, zoo: Zoo, head: str, t: TTAConfig, seed: int) -> dict[str, dict]:
    """TA, CTA (continuous/discrete mask), layer-wise and Concrete AdaMerging on one zoo seed,
    each masked arm also under a random mask of the same density (``*_random``)."""
    seed_all(seed)
    individual = individual_accuracies(zoo, head, t.regime)
    tvs = task_vectors(zoo.base, zoo.finetuned[(head, t.regime)])
    collapse = t.collapse_fraction * math.log(int(zoo.heads[head][0]["weight"].shape[0]))
    control = torch.Generator().manual_seed(seed + 3)  # the random masks' own stream
    out: dict[str, dict] = {}
    t0 = time.perf_counter()
    lam, accs = tune_and_test(zoo, head, task_arithmetic(tvs), t.lambda_grid)
    out["ta"] = _scores(accs, individual) | {"time_s": time.perf_counter() - t0, "lam": lam}

    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    cta = concrete_task_arithmetic(
        env,
        zoo.base,
        tvs,
        lam,
        entropy_objective(zoo, head, t.batch_size, seed),
        steps=t.cta_steps,
        lr=t.lr,
        temperature=t.temperature,
        generator=gen,
        collapse_below=collapse,
    )
    seconds = time.perf_counter() - t0
    summed = task_arithmetic(tvs)
    for name, kind in (("cta", "continuous"), ("cta_discrete", "discrete")):
        mask = evaluation_mask(cta.logits, kind, gen)
        for arm, m in ((name, mask), (f"{name}_random", shuffled_mask(mask, control))):
            (masked,) = mask_task_vectors([summed], m)
            params = {k: zoo.base[k] + lam * masked[k] for k in zoo.base}
            out[arm] = _test(zoo, head, params, individual)
            out[arm].update(
                time_s=seconds,
                lam=lam,
                collapsed=float(cta.collapsed),
                steps=float(cta.steps_run),
                **_spread(cta.logits),
            )
    out["cta"]["entropy_curve"] = list(cta.losses)

    # AdaMerging's λ in the paper's unit: init 0.3 = the TA-best λ on this bench
    unit = [scale(tv, lam / PAPER_INIT) for tv in tvs]

    def adamerging(vectors: list[dict[str, Tensor]]) -> tuple[dict[str, Any], bool, int]:
        """Layer-wise AdaMerging of ``vectors`` (the same entropy batches for every arm); the
        row holds its entropy per step (``entropy_curve``)."""
        ada = layerwise_adamerging(
            env,
            zoo.base,
            vectors,
            entropy_objective(zoo, head, t.batch_size, seed + 1),
            steps=t.ada_steps,
            lr=t.lr,
            init=PAPER_INIT,
            collapse_below=collapse,
        )
        params = merge_layerwise(zoo.base, vectors, ada.lambdas)
        row = _test(zoo, head, params, individual) | {"entropy_curve": list(ada.losses)}
        return row, ada.collapsed, ada.steps_run

    t0 = time.perf_counter()
    row, collapsed, steps = adamerging(unit)
    out["adamerging"] = row | {
        "time_s": time.perf_counter() - t0,
        "collapsed": float(collapsed),
        "steps": float(steps),
    }

    t0 = time.perf_counter()
    meta = concrete_adamerging_mask(
        env,
        zoo.base,
        unit,
        entropy_objective(zoo, head, t.batch_size, seed + 2),
        steps=t.meta_steps,
        lr=t.lr,
        inner_lr=t.inner_lr,
        init=PAPER_INIT,
        temperature=t.temperature,
        generator=gen,
        collapse_below=collapse,
    )
    meta_seconds = time.perf_counter() - t0
    mask = evaluation_mask(meta.logits, "continuous")
    for arm, m in (
        ("concrete_adamerging", mask),
        ("concrete_adamerging_random", shuffled_mask(mask, control)),
    ):
        t0 = time.perf_counter()
        row, collapsed, steps = adamerging(mask_task_vectors(unit, m))
        out[arm] = row | {
            "time_s": meta_seconds + time.perf_counter() - t0,
            "collapsed": float(meta.collapsed or collapsed),
            "steps": float(meta.steps_run + steps),
            "meta_steps": float(meta.steps_run),
            "meta_entropy_curve": list(meta.losses),
            **_spread(meta.logits),
        }
    return out
