"""Point-MAE / Gaussian-MAE-mini (arXiv 2203.06604, 2408.10906) on known answers: farthest
points of a line, nearest neighbours, groups in xyz or feature space, the reconstruction loss
of a perfect prediction, seeded masks, pooling invariant to member order, the heads' shapes."""

from __future__ import annotations

import pytest
import torch

from subspacelab.shapes import pointmae as pm


def test_fps_picks_the_extremes_of_a_line_first() -> None:
    x = torch.linspace(0, 1, 11)[None, :, None].expand(2, -1, 3).contiguous()
    np_idx = pm.fps(x, 3)
    assert np_idx[0].tolist() == [0, 10, 5]
    assert pm.fps(x, 2, torch.tensor([5, 3]))[:, 1].tolist() == [0, 10]  # farthest from start
    assert len(set(pm.fps(torch.randn(1, 50, 3), 50)[0].tolist())) == 50  # all distinct
    with pytest.raises(ValueError, match="fps needs"):
        pm.fps(x, 12)


def test_knn_is_nearest_first_and_includes_the_query_point() -> None:
    x = torch.tensor([[[0.0], [1.0], [3.0], [6.0]]])
    assert pm.knn(x[:, :1], x, 3)[0, 0].tolist() == [0, 1, 2]
    assert pm.knn(x[:, 3:], x, 2)[0, 0].tolist() == [3, 2]
    with pytest.raises(ValueError, match="knn needs"):
        pm.knn(x, x, 5)


def test_groups_are_relative_to_their_centre_and_follow_the_grouping_space() -> None:
    torch.manual_seed(0)
    xyz = torch.rand(1, 64, 3)
    colour = (torch.arange(64) % 2).float()[None, :, None] * 10  # two colour classes
    x = torch.cat([xyz, colour], -1)
    centres, members, idx = pm.group(x, 4, 8, "xyz")
    assert centres.shape == (1, 4, 3) and members.shape == (1, 4, 8, 4) and idx.shape == (1, 4, 8)
    torch.testing.assert_close(members[0, :, 0, :3], torch.zeros(4, 3))  # the centre itself
    torch.testing.assert_close(members[..., :3] + centres[:, :, None], pm.gather(x, idx)[..., :3])
    _, fmembers, _ = pm.group(x, 4, 8, "feature")
    assert (fmembers[..., 3].std(-1) == 0).all()  # a feature-space group keeps one colour
    assert (members[..., 3].std(-1) > 0).any()  # xyz groups mix them
    with pytest.raises(ValueError, match="grouping space"):
        pm.group(x, 4, 8, "colour")


def test_reconstruction_loss_is_zero_for_a_permuted_perfect_prediction() -> None:
    target = torch.randn(5, 8, 6)
    pred = target[:, torch.randperm(8)]
    assert float(pm.reconstruction_loss(pred, target)) == pytest.approx(0.0, abs=1e-10)
    off = pred.clone()
    off[..., 4] += 1.0  # an attribute wrong by 1 everywhere: 1 each way
    assert float(pm.reconstruction_loss(off, target)) == pytest.approx(2.0, abs=1e-5)
    xyz_only = pm.reconstruction_loss(pred[..., :3] + 0.5, target[..., :3])
    assert float(xyz_only) > 0


@pytest.mark.parametrize("pooling", pm.POOLINGS)
def test_token_embedding_ignores_member_order(pooling: str) -> None:
    torch.manual_seed(1)
    embed = pm.TokenEmbed(6, 16, pooling)
    members = torch.randn(2, 3, 5, 6)
    out = embed(members)
    assert out.shape == (2, 3, 16)
    torch.testing.assert_close(embed(members[:, :, torch.randperm(5)]), out)
    with pytest.raises(ValueError, match="pooling"):
        pm.TokenEmbed(6, 16, "mean")


def _mae(seed: int = 0, space: str = "xyz", pooling: str = "max") -> pm.GaussianMAE:
    torch.manual_seed(seed)
    return pm.GaussianMAE(7, 8, 4, 16, 1, 2, 1, 0.6, pooling, space, seed)


def test_mae_loss_is_seeded_trainable_and_checks_its_input() -> None:
    x = torch.randn(4, 32, 7)
    a, b = _mae(3), _mae(3)
    la, lb = a.loss(x), b.loss(x)
    assert torch.isfinite(la) and float(la.detach()) == float(lb.detach())  # same init, masks
    assert float(a.loss(x).detach()) != float(la.detach())  # the next mask differs
    la.backward()
    assert a.mask_token.grad is not None and a.embed.first[0].weight.grad is not None
    centres, tokens = _mae(space="feature", pooling="splats").encode(x)
    assert centres.shape == (4, 8, 3) and tokens.shape == (4, 8, 16)
    with pytest.raises(ValueError, match=r"\(B, N, 7\)"):
        a.loss(torch.randn(4, 32, 3))
    with pytest.raises(ValueError, match="mask_ratio"):
        pm.GaussianMAE(7, 8, 4, 16, 1, 2, 1, 1.0, "max", "xyz", 0)


def test_heads_give_logits_and_learn_a_separable_task() -> None:
    torch.manual_seed(2)
    mae = _mae(2)
    cls, seg = pm.Classifier(mae, 3), pm.Segmenter(_mae(2), 5, 3)
    x, y = torch.randn(6, 32, 7), torch.tensor([0, 1, 2, 0, 1, 2])
    assert cls(x).shape == (6, 3) and seg(x, y).shape == (6, 32, 5)
    x = x + 3 * y[:, None, None].float()  # classes shifted apart in every column
    opt = torch.optim.Adam(cls.parameters(), lr=3e-3)
    first = float(cls.loss(x, y))
    for _ in range(60):
        opt.zero_grad()
        cls.loss(x, y).backward()
        opt.step()
    assert float(cls.loss(x, y)) < 0.2 * first
    assert (cls(x).argmax(1) == y).all()
