"""The lesion generator of dsl and mhs_vm: known answers on shapes, classes, masks and seeds."""

from __future__ import annotations

import numpy as np
import pytest

from subspacelab.modules.lesions import HUES, LesionSpec, blob_mask, lesions

DSL = LesionSpec(size=48, shapes=("ellipse", "rectangle", "star"), hues=("brown", "red"))
SEG = LesionSpec(size=64, shapes=("irregular",), hues=("brown",), blobs=(1, 2))


def test_shapes_dtypes_and_ranges() -> None:
    out = lesions(12, DSL, seed=0)
    assert out.images.shape == (12, 3, 48, 48) and out.images.dtype == np.float32
    assert out.masks.shape == (12, 48, 48) and out.masks.dtype == bool
    assert out.images.min() >= 0 and out.images.max() <= 1
    assert set(out.labels) <= set(range(DSL.n_classes)) and DSL.n_classes == 6


def test_label_is_shape_times_hues_plus_hue() -> None:
    out = lesions(40, DSL, seed=1)
    expected = out.attributes["shape"] * 2 + out.attributes["hue"]
    np.testing.assert_array_equal(out.labels, expected.astype(np.int64))
    assert len(set(out.labels)) == 6  # 40 draws cover the 6 classes


def test_same_seed_same_arrays_other_seed_differs() -> None:
    a, b, c = lesions(5, SEG, 3), lesions(5, SEG, 3), lesions(5, SEG, 4)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert not np.array_equal(a.images, c.images)


def test_every_mask_holds_a_blob_and_its_pixels_take_the_lesion_hue() -> None:
    out = lesions(
        20,
        LesionSpec(size=48, shapes=("ellipse",), hues=("red",), max_hairs=0, vignette=0.0),
        seed=2,
    )
    assert (out.masks.reshape(20, -1).sum(1) > 20).all()
    inside = out.images.transpose(0, 2, 3, 1)[out.masks].mean(0)
    outside = out.images.transpose(0, 2, 3, 1)[~out.masks].mean(0)
    assert np.abs(inside - np.asarray(HUES["red"])).max() < 0.06
    assert outside[1] > inside[1] + 0.3  # skin is much greener than a red lesion


def test_two_blob_range_is_respected() -> None:
    out = lesions(30, SEG, seed=5)
    assert set(out.attributes["blobs"]) == {1.0, 2.0}


def test_blob_masks_have_their_geometric_areas() -> None:
    rng = np.random.default_rng(0)
    r = 12.0
    ellipse = blob_mask("ellipse", 64, (32, 32), r, 0.0, rng).sum()
    rect = blob_mask("rectangle", 64, (32, 32), r, 0.0, rng).sum()
    assert ellipse == pytest.approx(np.pi * r * 0.65 * r, rel=0.05)
    assert rect == pytest.approx(2 * r * 2 * 0.65 * r, rel=0.1)
    quarter = blob_mask("rectangle", 64, (32, 32), r, np.pi / 2, rng)
    np.testing.assert_array_equal(quarter, blob_mask("rectangle", 64, (32, 32), r, 0.0, rng).T)


@pytest.mark.parametrize(
    ("spec", "word"),
    [
        (LesionSpec(size=8, shapes=("star",), hues=("red",)), "size"),
        (LesionSpec(size=32, shapes=("hexagon",), hues=("red",)), "shapes"),
        (LesionSpec(size=32, shapes=("star",), hues=("blue",)), "hues"),
        (LesionSpec(size=32, shapes=("star",), hues=("red",), blobs=(2, 1)), "blobs"),
        (LesionSpec(size=32, shapes=("star",), hues=("red",), radius=(0.3, 0.9)), "radius"),
    ],
)
def test_bad_spec_is_named(spec: LesionSpec, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        lesions(1, spec, seed=0)
