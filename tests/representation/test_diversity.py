"""Diversity metrics (representation toolkit) on known answers; Vendi cross-checked against the
vendi-score package (Friedman & Dieng, arXiv:2210.02410)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from subspacelab.representation import diversity as dv


def test_coverage_of_a_known_set() -> None:
    universe = [(a, b) for a in range(3) for b in range(4)]
    items = [(0, 0), (0, 0), (1, 2), (2, 3), (9, 9)]  # (9, 9) lies outside the universe
    assert dv.coverage(items, universe) == 3 / 12
    assert dv.coverage(universe, universe) == 1.0
    with pytest.raises(ValueError, match="universe is empty"):
        dv.coverage(items, [])


def test_entropy_and_duplicates() -> None:
    assert dv.entropy(["a"] * 5) == 0.0
    assert dv.entropy(list("abcd"), base=2) == pytest.approx(2.0)
    h = -(2 / 3) * math.log(2 / 3) - math.log(1 / 3) / 3
    assert dv.entropy(list("aab")) == pytest.approx(h)
    assert dv.duplicate_rate(list("aabc")) == 0.25
    assert dv.duplicate_rate(list("abc")) == 0.0


def test_vendi_of_identical_points_is_one_and_of_orthogonal_points_is_n() -> None:
    x = np.tile([[3.0, 4.0, 0.0]], (7, 1))
    for q in (0.5, 1.0, 2.0, math.inf):
        assert dv.vendi(x, q) == pytest.approx(1.0)
        assert dv.vendi(np.eye(5) * 2.0, q) == pytest.approx(5.0)  # n < d and n = d
        assert dv.vendi_kernel(np.eye(6), q) == pytest.approx(6.0)
        assert dv.vendi_kernel(np.ones((4, 4)), q) == pytest.approx(1.0)
    # two clusters of identical points, orthogonal, unequal sizes 3 and 1: exp(H(3/4, 1/4))
    x = np.array([[1.0, 0.0]] * 3 + [[0.0, 1.0]])
    assert dv.vendi(x) == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))


def test_vendi_matches_the_vendi_score_package() -> None:
    vs = pytest.importorskip("vendi_score.vendi")
    rng = np.random.default_rng(0)
    for n, d in ((40, 8), (6, 20)):
        x = rng.standard_normal((n, d)) + 0.5
        u = x / np.linalg.norm(x, axis=1, keepdims=True)
        k = u @ u.T
        # rel 1e-6: for q < 1 the package also counts round-off eigenvalues (~1e-17 > 0)
        for q in (0.5, 1.0, 2.0):
            assert dv.vendi(x, q) == pytest.approx(vs.score_K(k, q=q), rel=1e-6)
            assert dv.vendi_kernel(k, q) == pytest.approx(vs.score_K(k, q=q), rel=1e-6)
        assert dv.vendi(x) == pytest.approx(vs.score_dual(x), rel=1e-8)


def test_mean_pairwise_distance_by_hand() -> None:
    x = np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
    # cosines: (1,2) 0, (1,3) -1, (2,3) 0 -> distances 1, 2, 1
    assert dv.mean_pairwise_distance(x) == pytest.approx(4 / 3)
    # euclidean: sqrt(5), 4, sqrt(13)
    expected = (math.sqrt(5) + 4 + math.sqrt(13)) / 3
    assert dv.mean_pairwise_distance(x, "euclidean") == pytest.approx(expected)
    assert dv.mean_pairwise_distance(np.ones((4, 3))) == pytest.approx(0.0, abs=1e-12)


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="at least two rows"):
        dv.mean_pairwise_distance(np.ones((1, 3)))
    with pytest.raises(ValueError, match="zero row"):
        dv.vendi(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="unit diagonal"):
        dv.vendi_kernel(2 * np.eye(3))
    with pytest.raises(ValueError, match="unknown metric"):
        dv.mean_pairwise_distance(np.eye(3), "manhattan")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no items"):
        dv.entropy([])
