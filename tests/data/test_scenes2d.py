"""Procedural 2-D scenes (subspacelab.data.scenes2d; DiveUp's miniature, arXiv 2603.13571)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from subspacelab.data.scenes2d import (
    SceneSpec,
    ellipse_mask,
    polygon_mask,
    render_scene,
    render_scenes,
)

SPEC = SceneSpec(64, 6, 2, 5, 6.0, 18.0, 0.08, 0.04)


def test_polygon_mask_of_a_square_and_a_triangle() -> None:
    square = np.array([[2.0, 2.0], [10.0, 2.0], [10.0, 10.0], [2.0, 10.0]])
    m = polygon_mask(square, 16)
    assert m.sum() == 64 and m[2:10, 2:10].all()
    tri = np.array([[0.0, 0.0], [16.0, 0.0], [0.0, 16.0]])  # pixel centres with x + y < 16
    assert polygon_mask(tri, 16).sum() == sum(
        1 for i in range(16) for j in range(16) if i + j + 1 < 16
    )


def test_ellipse_mask_of_a_disc() -> None:
    m = ellipse_mask((16.0, 16.0), (8.0, 8.0), 0.3, 32)
    assert abs(int(m.sum()) - np.pi * 64) < 12
    wide = ellipse_mask((16.0, 16.0), (12.0, 3.0), 0.0, 32)
    tall = ellipse_mask((16.0, 16.0), (12.0, 3.0), np.pi / 2, 32)
    np.testing.assert_array_equal(wide, tall.T)


def test_label_maps_cover_the_shapes_drawn() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        image, labels, shapes = render_scene(SPEC, rng)
        assert image.shape == (3, 64, 64) and image.min() >= 0 and image.max() <= 1
        top = shapes[-1]  # nothing is drawn over the last shape
        assert top.mask.any() and (labels[top.mask] == top.cls).all()
        drawn = np.zeros_like(top.mask)
        for s in shapes:
            drawn |= s.mask
        assert (labels[~drawn] == 0).all() and (labels[drawn] > 0).all()
        assert {s.kind for s in shapes} <= {"polygon", "ellipse"}


def test_scenes_are_seeded_and_use_every_class() -> None:
    x, y = render_scenes(40, SPEC, seed=1)
    x2, y2 = render_scenes(40, SPEC, seed=1)
    assert x.shape == (40, 3, 64, 64) and y.shape == (40, 64, 64) and y.dtype == torch.int64
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(y, render_scenes(40, SPEC, seed=2)[1])
    assert set(y.unique().tolist()) == set(range(6))


def test_bad_specs_are_named() -> None:
    with pytest.raises(ValueError, match="classes"):
        SceneSpec(64, 12, 2, 5, 6.0, 18.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="min_shapes"):
        SceneSpec(64, 6, 4, 2, 6.0, 18.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="vertices"):
        polygon_mask(np.zeros((2, 2)), 8)
