"""The image-guided neighbourhood-attention upsampler (subspacelab.modules.upsample; DiveUp,
arXiv 2603.13571) against known answers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from subspacelab.modules.upsample import (
    GuidanceEncoder,
    NeighbourhoodUpsampler,
    bilinear_upsample,
    rope_2d,
    window_index,
)


def _up(kernel: int = 5) -> NeighbourhoodUpsampler:
    torch.manual_seed(0)
    return NeighbourhoodUpsampler(64, kernel, 4, 2, 100.0, 2.0)


def test_attention_weights_are_distributions_over_the_window() -> None:
    up = _up()
    att = up.attention(torch.rand(2, 3, 64, 64), (8, 8), (64, 64))
    assert att.shape == (2, 4, 25, 64, 64)
    assert (att >= 0).all()
    torch.testing.assert_close(att.sum(dim=2), torch.ones(2, 4, 64, 64))


def test_windows_shift_inwards_at_the_border_as_natten() -> None:
    idx = window_index(8, 5)
    assert idx[0].tolist() == [0, 1, 2, 3, 4] and idx[2].tolist() == [0, 1, 2, 3, 4]
    assert idx[4].tolist() == [2, 3, 4, 5, 6] and idx[7].tolist() == [3, 4, 5, 6, 7]
    assert window_index(3, 5).tolist() == [[0, 1, 2]] * 3  # a small grid is attended whole
    # the upsampler gathers exactly these tokens: a corner pixel reads token (4, 4) at offset 24
    up = _up()
    image = torch.rand(1, 3, 64, 64)
    feats = torch.zeros(1, 4, 8, 8)
    feats[0, :, 4, 4] = 1.0
    att = up.attention(image, (8, 8), (64, 64))
    torch.testing.assert_close(up(image, feats)[0, :, 0, 0], att[0, :, 24, 0, 0])


def test_a_constant_feature_map_upsamples_to_the_constant() -> None:
    up = _up()
    feats = torch.full((2, 8, 8, 8), 3.5)
    out = up(torch.rand(2, 3, 64, 64), feats)
    torch.testing.assert_close(out, torch.full((2, 8, 64, 64), 3.5))
    torch.testing.assert_close(bilinear_upsample(feats, (64, 64)), torch.full((2, 8, 64, 64), 3.5))


def test_the_output_is_a_convex_combination_of_the_window() -> None:
    """One-hot tokens: each output pixel reads its attention weight on that token."""
    up = _up(kernel=3)
    image = torch.rand(1, 3, 64, 64)
    feats = torch.zeros(1, 4, 8, 8)
    feats[0, :, 1, 2] = 1.0  # one token, every head's channel
    out = up(image, feats)
    att = up.attention(image, (8, 8), (64, 64))
    # pixel (12, 20) lies in token (1, 2): the centre offset (index 4 of the 3×3 window)
    torch.testing.assert_close(out[0, :, 12, 20], att[0, :, 4, 12, 20])
    # a pixel of token (6, 6) cannot see it
    assert out[0, :, 52, 52].abs().max() == 0
    assert out.min() >= 0 and out.max() <= 1


def test_one_attention_serves_any_width() -> None:
    up = _up()
    image = torch.rand(2, 3, 64, 64)
    a, b = torch.randn(2, 32, 8, 8), torch.randn(2, 96, 8, 8)
    att = up.attention(image, (8, 8), (64, 64))
    torch.testing.assert_close(up.aggregate(att, a), up(image, a))
    assert up(image, b, (16, 16)).shape == (2, 96, 16, 16)


def test_rope_is_a_rotation_and_relative() -> None:
    x = torch.randn(1, 16, 4, 4)
    r = rope_2d(x, 1, 100.0, 2.0)
    torch.testing.assert_close(r.norm(dim=1), x.norm(dim=1))  # rotations keep norms
    # the same vector everywhere: <rope(q)_p, rope(k)_u> depends only on p - u
    v = torch.randn(16)
    q = rope_2d(v.view(1, 16, 1, 1).expand(1, 16, 4, 4).contiguous(), 1, 100.0, 2.0)[0]
    dot = torch.einsum("cij,ckl->ijkl", q, q)
    torch.testing.assert_close(dot[0, 0, 1, 2], dot[2, 1, 3, 3])


def test_bilinear_is_torchs() -> None:
    f = torch.randn(1, 3, 4, 4)
    want = F.interpolate(f, size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(bilinear_upsample(f, (32, 32)), want)


def test_guidance_encoder_pools_to_the_output_size() -> None:
    enc = GuidanceEncoder(8, 2)
    assert enc(torch.rand(1, 3, 32, 32), (8, 8)).shape == (1, 8, 8, 8)


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="odd"):
        NeighbourhoodUpsampler(64, 4, 4, 2, 100.0, 2.0)
    with pytest.raises(ValueError, match="divisible by 4"):
        NeighbourhoodUpsampler(36, 5, 4, 2, 100.0, 2.0)
    up = _up()
    with pytest.raises(ValueError, match="divisible by the heads"):
        up(torch.rand(1, 3, 64, 64), torch.randn(1, 30, 8, 8))
    with pytest.raises(ValueError, match="multiple of the token grid"):
        up(torch.rand(1, 3, 60, 60), torch.randn(1, 32, 8, 8))
