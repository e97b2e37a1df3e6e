"""Concrete masks and entropy-based adaptation on toy objectives."""

from __future__ import annotations

import math

import pytest
import torch

from subspacelab.merging.concrete import (
    ConcreteAdaMergingMask,
    concrete_adamerging_mask,
    concrete_sample,
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
from subspacelab.nets.training import LocalEnv, fit, full_batch_loader


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
    assert logit_spread(logits) == (0.0, 0.0)  # untrained: uniform mask
    assert logit_spread({"a": torch.tensor([-1.0, 1.0]), "b": torch.tensor([3.0, -3.0])}) == (
        pytest.approx(5**0.5),
        3.0,
    )
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


def test_shuffled_mask_keeps_each_tensors_values_not_their_places() -> None:
    mask = {"w": torch.arange(100.0).reshape(10, 10), "b": torch.tensor([1.0, 0.0, 0.0, 1.0])}
    out = shuffled_mask(mask, _gen())
    for k, m in mask.items():
        assert out[k].shape == m.shape
        assert torch.equal(out[k].reshape(-1).sort().values, m.reshape(-1).sort().values)
    assert not torch.equal(out["w"], mask["w"])  # moved (a 1-in-100! chance of not moving)
    again = shuffled_mask(mask, _gen())
    assert all(torch.equal(out[k], again[k]) for k in mask)  # seeded


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
        LocalEnv(), base, tvs, _toy(0.5), steps=50, lr=0.05, init=0.3, collapse_below=0.5
    )
    assert res.steps_run == 50 and res.losses[-1] < res.losses[0]
    assert res.lambdas is not None and torch.all((res.lambdas >= 0) & (res.lambdas <= 1))
    # θ = λ₁ − λ₂ → 0.5: the first λ rises, the second falls
    assert res.lambdas[0, 0] > 0.3 > res.lambdas[1, 0]
    cta = concrete_task_arithmetic(
        LocalEnv(),
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
    assert cta.steps_run == 30 and logit_spread(cta.logits)[0] > 0  # the logits moved
    meta = concrete_adamerging_mask(
        LocalEnv(),
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
    assert meta.steps_run == 5 and not meta.collapsed and logit_spread(meta.logits)[0] > 0


def test_adamerging_clamps_lambda_to_the_unit_interval() -> None:
    # the loss pulls θ = λ τ to 5: λ runs into the clamp at 1 and stays there
    res = layerwise_adamerging(
        LocalEnv(),
        {"w": torch.zeros(2)},
        [{"w": torch.ones(2)}],
        _toy(5.0),
        steps=40,
        lr=0.1,
        init=0.3,
        collapse_below=0.5,
    )
    assert res.lambdas is not None and torch.equal(res.lambdas, torch.ones(1, 1))


def test_concrete_adamerging_inner_step_resets_and_keeps_adam_state() -> None:
    """Every outer step starts λ at init and takes one inner Adam step (the first one moves λ by
    exactly inner_lr); the inner Adam is created once, so its state persists; the meta-step
    moves the logits."""
    seen: list[float] = []

    def objective(params: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, float]:
        seen.append(float(params["w"].detach().mean()))
        return ((params["w"] - 5.0) ** 2).sum(), 1.0

    def module() -> ConcreteAdaMergingMask:
        return ConcreteAdaMergingMask(
            {"w": torch.zeros(4)},
            [{"w": torch.ones(4)}],
            objective,
            lr=0.01,
            inner_lr=0.1,
            init=0.3,
            temperature=0.5,
            generator=_gen(),
            collapse_below=0.5,
        )

    one = module()
    fit(LocalEnv(), one, full_batch_loader(steps=1), epochs=1)
    assert float(one.lambdas.detach()[0, 0]) == pytest.approx(0.4, abs=1e-6)
    # the inner loss sees θ = 0.3 τ̃ (mean τ̃ = 1), the meta-loss the adapted 0.4 τ̃
    assert seen == pytest.approx([0.3, 0.4], abs=1e-6)
    three = module()
    seen.clear()
    fit(LocalEnv(), three, full_batch_loader(steps=3), epochs=1)
    assert seen[0::2] == pytest.approx([0.3] * 3, abs=1e-6)  # reset before every inner step
    state = three.optimizers()[1].optimizer.state[three.lambdas]
    assert three.steps_run == 3 and int(state["step"]) == 3
    assert all(float(x.detach().abs().max()) > 0 for x in three.mask.logits)


def test_collapse_monitor_stops() -> None:
    def collapsing(params: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, float]:
        return params["w"].sum(), 0.0

    res = layerwise_adamerging(
        LocalEnv(),
        {"w": torch.zeros(2)},
        [{"w": torch.ones(2)}],
        collapsing,
        steps=10,
        lr=0.1,
        init=0.3,
        collapse_below=0.5,
    )
    assert res.collapsed and res.steps_run == 0
