"""State-dict algebra and merges against hand-computed answers."""

from __future__ import annotations

import math

import pytest
import torch

from subspacelab.merging import (
    add,
    apply_task_vector,
    dc_keep_count,
    dc_merge,
    directional_consistency,
    flatten,
    lincomb,
    polar_factor,
    scale,
    simple_average,
    sub,
    task_arithmetic,
    task_vectors,
    ties_merge,
    tsv_merge,
    unflatten,
)
from subspacelab.merging.merges import smooth_spectrum


def _sd(w: list[float], b: list[float]) -> dict[str, torch.Tensor]:
    return {"w": torch.tensor(w), "b": torch.tensor(b)}


def test_algebra_exact() -> None:
    a, b = _sd([1.0, 2.0], [3.0]), _sd([0.5, -1.0], [1.0])
    assert torch.equal(add(a, b)["w"], torch.tensor([1.5, 1.0]))
    assert torch.equal(sub(a, b)["b"], torch.tensor([2.0]))
    assert torch.equal(scale(a, 2.0)["w"], torch.tensor([2.0, 4.0]))
    assert torch.equal(lincomb([a, b], [1.0, 2.0])["w"], torch.tensor([2.0, 0.0]))
    assert torch.equal(task_vectors(b, [a])[0]["w"], torch.tensor([0.5, 3.0]))
    assert torch.equal(apply_task_vector(b, a, 0.5)["b"], torch.tensor([2.5]))
    assert torch.equal(simple_average([a, b])["w"], torch.tensor([0.75, 0.5]))
    assert torch.equal(task_arithmetic([a, b])["b"], torch.tensor([4.0]))


def test_flatten_roundtrip_and_errors() -> None:
    sd = {"b": torch.arange(3.0), "a": torch.arange(4.0).reshape(2, 2)}
    vec, spec = flatten(sd)
    assert torch.equal(vec, torch.tensor([0.0, 1, 2, 3, 0, 1, 2]))  # sorted keys: a then b
    back = unflatten(vec, spec)
    assert all(torch.equal(back[k], sd[k]) for k in sd)
    with pytest.raises(ValueError, match="spec needs"):
        unflatten(vec[:-1], spec)
    with pytest.raises(KeyError, match="differ in keys"):
        add(sd, {"a": sd["a"]})
    with pytest.raises(ValueError, match="shapes differ"):
        sub({"a": torch.zeros(2)}, {"a": torch.zeros(3)})


def test_ties_by_hand() -> None:
    t1, t2 = {"w": torch.tensor([3.0, -1.0, 0.5, 2.0])}, {"w": torch.tensor([-4.0, 2.0, 1.0, 1.0])}
    # trimmed: [3,0,0,2] and [-4,2,0,0]; signs of the sum [-1,2,0,2]; disjoint mean
    assert torch.equal(ties_merge([t1, t2], density=0.5)["w"], torch.tensor([-4.0, 2.0, 0.0, 2.0]))
    # agreeing entries are averaged over the count of agreeing tasks, not T
    a, b = {"w": torch.tensor([2.0, 1.0])}, {"w": torch.tensor([4.0, -3.0])}
    assert torch.equal(ties_merge([a, b], density=1.0)["w"], torch.tensor([3.0, -3.0]))
    with pytest.raises(ValueError, match="density"):
        ties_merge([a], density=0.0)


def test_polar_factor() -> None:
    a = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    q = polar_factor(a)
    assert torch.allclose(q.T @ q, torch.eye(3), atol=1e-6)
    assert torch.allclose(polar_factor(q), q, atol=1e-6)


def _orthogonal_tasks() -> list[dict[str, torch.Tensor]]:
    e = torch.eye(4)
    return [
        {"w": 2.0 * torch.outer(e[0], e[1]), "b": torch.tensor([1.0])},
        {"w": 3.0 * torch.outer(e[2], e[3]), "b": torch.tensor([3.0])},
    ]


def test_tsv_and_dc_on_orthogonal_tasks_equal_the_sum() -> None:
    tvs = _orthogonal_tasks()
    expected = tvs[0]["w"] + tvs[1]["w"]
    assert torch.allclose(tsv_merge(tvs, r=1)["w"], expected, atol=1e-6)
    assert torch.equal(tsv_merge(tvs)["b"], torch.tensor([2.0]))  # non-matrix: averaged
    for smoothing in ("none", "avg", "linear"):
        merged, stats = dc_merge(tvs, r=1, smoothing=smoothing)
        assert torch.allclose(merged["w"], expected, atol=1e-6)
        assert stats.kept["w"] == 1 and stats.own_diagonal_kept["w"] == 1.0
    with pytest.raises(ValueError, match="cannot hold"):
        tsv_merge([{"w": torch.ones(1, 3)}] * 2)


def test_dc_block_mask_and_sign_election() -> None:
    e = torch.eye(4)
    # two tasks sharing one direction with opposite signs: the elected sign keeps the larger
    t1 = {"w": 2.0 * torch.outer(e[0], e[0]) + 1.0 * torch.outer(e[1], e[1])}
    t2 = {"w": -1.0 * torch.outer(e[0], e[0]) + 5.0 * torch.outer(e[2], e[2])}
    merged, _ = dc_merge([t1, t2], r=1, smoothing="none")
    # r=1 keeps each task's top direction only: e0 (σ=2) for t1, e2 (σ=5) for t2
    assert torch.allclose(merged["w"], 2.0 * torch.outer(e[0], e[0]) + 5 * torch.outer(e[2], e[2]))


def test_smoothing_and_keep_count() -> None:
    s = torch.tensor([3.0, 1.0], dtype=torch.float64)
    assert torch.allclose(smooth_spectrum(s, "avg"), torch.tensor([2.0, 2.0], dtype=torch.float64))
    assert torch.equal(smooth_spectrum(s, "none"), s)
    big = torch.tensor([10.0, 1.0], dtype=torch.float64)  # ρ' = min(5, 10) = 5
    lin = smooth_spectrum(big, "linear", rho=5.0)
    assert torch.allclose(lin, torch.tensor([55 / 6, 11 / 6], dtype=torch.float64))
    assert dc_keep_count(8, 16, None) == 16
    assert dc_keep_count(8, 16, 1e-3) == 16
    assert dc_keep_count(8, 32, 1e-3) == 65
    assert dc_keep_count(8, 96, 1e-3) == 589
    assert dc_keep_count(8, 1, 1e-3) == 1


def test_directional_consistency() -> None:
    tvs = _orthogonal_tasks()
    merged = task_arithmetic(tvs)
    diag = directional_consistency(merged, tvs, r=1)
    energy, cosine = diag["w"]
    assert math.isclose(energy, 1.0, abs_tol=1e-9)  # each task's direction fully retained
    assert 0.0 <= cosine <= 1.0 + 1e-9
