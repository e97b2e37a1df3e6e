"""Concrete masks and entropy-based adaptation on toy objectives."""

from __future__ import annotations

import math

import pytest
import torch

from subspacelab.merging.concrete import (
    concrete_adamerging_mask,
    concrete_sample,
    concrete_task_arithmetic,
    evaluation_mask,
    label_entropy,
    layerwise_adamerging,
    mask_density,
    mask_task_vectors,
    merge_layerwise,
    prediction_entropy,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_concrete_sample_is_seeded_and_saturates() -> None:
    x = torch.zeros(50)
    assert torch.equal(concrete_sample(x, 0.5, _gen()), concrete_sample(x, 0.5, _gen()))
    assert torch.all(concrete_sample(torch.full((50,), 100.0), 0.5, _gen()) > 0.999)
    assert torch.all(concrete_sample(torch.full((50,), -100.0), 0.5, _gen()) < 0.001)


def test_masks_and_rescaling() -> None:
    logits = {"w": torch.zeros(2, 2)}
    assert torch.equal(evaluation_mask(logits, "continuous")["w"], torch.full((2, 2), 0.5))
    assert mask_density(logits) == 0.5
    discrete = evaluation_mask({"w": torch.full((100,), 50.0)}, "discrete", _gen())["w"]
    assert torch.equal(discrete, torch.ones(100))
    with pytest.raises(ValueError, match="generator"):
        evaluation_mask(logits, "discrete")
    tv = {"w": torch.tensor([1.0, 2.0, 3.0, 4.0])}
    (same,) = mask_task_vectors([tv], {"w": torch.full((4,), 0.5)})
    assert torch.equal(same["w"], tv["w"])  # m / mean(m) = 1
    (half,) = mask_task_vectors([tv], {"w": torch.tensor([1.0, 0.0, 1.0, 0.0])})
    assert torch.equal(half["w"], torch.tensor([2.0, 0.0, 6.0, 0.0]))
    (empty,) = mask_task_vectors([tv], {"w": torch.zeros(4)})  # clamp: no division by zero
    assert torch.equal(empty["w"], torch.zeros(4))


def test_merge_layerwise_exact() -> None:
    base = {"a": torch.tensor([1.0]), "b": torch.tensor([0.0])}
    tvs = [{"a": torch.tensor([1.0]), "b": torch.tensor([2.0])}] * 2
    lam = torch.tensor([[0.5, 1.0], [0.25, 0.0]])
    out = merge_layerwise(base, tvs, lam)
    assert torch.equal(out["a"], torch.tensor([1.75])) and torch.equal(
        out["b"], torch.tensor([2.0])
    )
    with pytest.raises(ValueError, match="lambdas"):
        merge_layerwise(base, tvs, torch.zeros(3, 2))


def test_entropies() -> None:
    uniform = torch.zeros(4, 3)
    assert math.isclose(float(prediction_entropy(uniform)), math.log(3), rel_tol=1e-6)
    assert label_entropy(torch.eye(4)) == pytest.approx(math.log(4))
    assert label_entropy(torch.tensor([[1.0, 0.0]] * 5)) == 0.0


def _toy(target: float):
    def objective(params: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, float]:
        return ((params["w"] - target) ** 2).sum(), 1.0

    return objective


def test_adaptation_loops_decrease_a_toy_loss() -> None:
    base, tvs = {"w": torch.zeros(3)}, [{"w": torch.ones(3)}, {"w": -torch.ones(3)}]
    res = layerwise_adamerging(
        base, tvs, _toy(1.0), steps=50, lr=0.05, init=0.3, collapse_below=0.5
    )
    assert res.steps_run == 50 and res.losses[-1] < res.losses[0]
    cta = concrete_task_arithmetic(
        base,
        [tvs[0]],
        1.0,
        _toy(3.0),
        steps=30,
        lr=0.1,
        temperature=0.5,
        generator=_gen(),
        collapse_below=0.5,
    )
    assert mask_density(cta.logits) != 0.5  # the logits moved
    meta = concrete_adamerging_mask(
        base,
        tvs,
        _toy(1.0),
        steps=5,
        lr=0.1,
        inner_lr=1.0,
        init=0.3,
        temperature=0.5,
        generator=_gen(),
        collapse_below=0.5,
    )
    assert meta.steps_run == 5 and not meta.collapsed


def test_collapse_monitor_stops() -> None:
    def collapsing(params: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, float]:
        return params["w"].sum(), 0.0

    res = layerwise_adamerging(
        {"w": torch.zeros(2)},
        [{"w": torch.ones(2)}],
        collapsing,
        steps=10,
        lr=0.1,
        init=0.3,
        collapse_below=0.5,
    )
    assert res.collapsed and res.steps_run == 0
