"""shapesplat (arXiv 2408.10906): the method's maths against known answers."""

from __future__ import annotations

import numpy as np

from subspacelab.studies.shapesplat import core


def test_pca_recovers_a_noiseless_planted_subspace() -> None:
    x, basis = core.planted(200, 6, 2, 0.0, np.random.default_rng(0))
    assert core.sine_distance(basis, core.pca_basis(x, 2)) < 1e-6


def test_sine_distance_of_orthogonal_subspaces_is_one() -> None:
    e = np.eye(4)
    assert core.sine_distance(e[:, :2], e[:, 2:]) == 1.0
