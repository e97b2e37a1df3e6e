"""Cluttered digits (subspacelab.modules.clutter): sizes, seeding, source-disjoint splits."""

from __future__ import annotations

import numpy as np
import pytest

from subspacelab.modules.clutter import ClutterSpec, cluttered_digits, render, split_sources

SPEC = ClutterSpec(canvas=40, scale=2, n_clutter=4, fragment=6, noise=0.05, test_fraction=0.3)


def test_shapes_labels_and_seeding() -> None:
    a = cluttered_digits(50, 20, SPEC, seed=3)
    b = cluttered_digits(50, 20, SPEC, seed=3)
    c = cluttered_digits(50, 20, SPEC, seed=4)
    assert a["x_train"].shape == (50, 1, 40, 40) and a["x_test"].shape == (20, 1, 40, 40)
    assert a["x_train"].dtype == np.float32
    assert set(np.unique(a["y_train"])) <= set(range(10))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["x_train"], c["x_train"])


def test_source_splits_are_disjoint_and_cover_everything() -> None:
    tr, te = split_sources(1797, 0.3, np.random.default_rng(0))
    assert len(te) == round(0.3 * 1797)
    assert not set(tr) & set(te) and len(tr) + len(te) == 1797


def test_a_noiseless_unclutered_canvas_holds_exactly_the_upsampled_glyph() -> None:
    glyph = np.arange(64, dtype=np.float32).reshape(1, 8, 8) / 64 + 0.01
    other = np.zeros((1, 8, 8), dtype=np.float32)
    spec = ClutterSpec(canvas=20, scale=2, n_clutter=0, fragment=4, noise=0.0, test_fraction=0.5)
    x, y = render(
        np.concatenate([glyph, other]), np.array([7, 1]), 30, spec, np.random.default_rng(0)
    )
    for img, label in zip(x, y, strict=True):
        if label != 7:
            assert img.sum() == 0
            continue
        rows, cols = np.nonzero(img[0])
        patch = img[0, rows.min() : rows.min() + 16, cols.min() : cols.min() + 16]
        np.testing.assert_array_equal(patch, np.kron(glyph[0], np.ones((2, 2))))


def test_clutter_adds_ink_outside_the_glyph() -> None:
    plain = ClutterSpec(40, 2, 0, 6, 0.0, 0.3)
    busy = ClutterSpec(40, 2, 4, 6, 0.0, 0.3)
    a = cluttered_digits(40, 10, plain, seed=0)["x_train"]
    b = cluttered_digits(40, 10, busy, seed=0)["x_train"]
    assert (b > 0).sum() > (a > 0).sum()


@pytest.mark.parametrize(
    ("spec", "word"),
    [
        (ClutterSpec(12, 2, 4, 6, 0.0, 0.3), "canvas"),
        (ClutterSpec(40, 2, 4, 17, 0.0, 0.3), "fragment"),
        (ClutterSpec(40, 2, 4, 6, 0.0, 1.0), "test_fraction"),
    ],
)
def test_bad_sizes_are_refused_by_name(spec: ClutterSpec, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        cluttered_digits(5, 5, spec, seed=0)
