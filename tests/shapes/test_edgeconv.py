"""DGCNN-lite (subspacelab.shapes.edgeconv): k-NN, EdgeConv against the per-edge reference."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from subspacelab.shapes.edgeconv import EdgeConv, EdgeSegNet, Graph, knn


def _net(dynamic: bool = False) -> EdgeSegNet:
    torch.manual_seed(0)
    return EdgeSegNet(
        3, 4, k=5, widths=(8, 8), global_dim=6, head_dim=10, embed_dim=7, dynamic=dynamic
    )


def test_knn_on_a_line_is_the_adjacent_points() -> None:
    x = torch.arange(10.0).view(1, 10, 1)
    idx = knn(x, 3)
    for i in range(1, 9):
        assert sorted(idx[0, i].tolist()) == [i - 1, i, i + 1]
    assert sorted(idx[0, 0].tolist()) == [0, 1, 2]


def test_knn_chunks_do_not_change_the_graph() -> None:
    x = torch.randn(3, 70, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(knn(x, 6, chunk=16), knn(x, 6, chunk=1024))


def _reference(conv: EdgeConv, x: torch.Tensor, graph: Graph) -> torch.Tensor:
    """DGCNN's EdgeConv: the per-edge features [x_i, x_j − x_i], linear, BN, LeakyReLU, max."""
    b, n, c = x.shape
    k = graph.k
    xi = x.unsqueeze(2).expand(-1, -1, k, -1)
    xj = x.reshape(b * n, c)[graph.flat].reshape(b, n, k, c)
    e = conv.theta(torch.cat([xi, xj - xi], -1))
    e = conv.bn(e.reshape(-1, e.shape[-1])).reshape(b, n, k, -1)
    return F.leaky_relu(e, conv.slope).amax(2)


@pytest.mark.parametrize("train", [True, False])
def test_edgeconv_equals_the_per_edge_reference(train: bool) -> None:
    torch.manual_seed(0)
    conv = EdgeConv(5, 7)
    conv.bn.weight.data = torch.randn(7)  # negative scales take the min branch
    conv.bn.bias.data = torch.randn(7)
    ref = copy.deepcopy(conv)
    x = torch.randn(2, 40, 5)
    graph = Graph(knn(x, 6))
    conv.train(train)
    ref.train(train)
    torch.testing.assert_close(conv(x, graph), _reference(ref, x, graph), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(conv.bn.running_mean, ref.bn.running_mean)
    torch.testing.assert_close(conv.bn.running_var, ref.bn.running_var)
    # and the gradients agree too
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    conv(xa, graph).square().sum().backward()
    _reference(ref, xb, graph).square().sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(conv.theta.weight.grad, ref.theta.weight.grad, atol=1e-4, rtol=1e-4)


def test_net_shapes_unit_embeddings_and_the_graph_default() -> None:
    net = _net().eval()
    x = torch.randn(2, 30, 3)
    logits, emb = net(x)
    assert logits.shape == (2, 30, 4) and emb.shape == (2, 30, 7)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2, 30))
    logits2, _ = net(x, knn(x, 5))
    torch.testing.assert_close(logits, logits2)


def test_net_is_permutation_equivariant() -> None:
    net = _net().eval()
    x = torch.randn(1, 25, 3)
    perm = torch.randperm(25)
    logits, _ = net(x)
    permuted, _ = net(x[:, perm])
    torch.testing.assert_close(permuted, logits[:, perm], atol=1e-5, rtol=1e-5)


def test_dynamic_graph_changes_the_output() -> None:
    x = torch.randn(1, 30, 3)
    static, _ = _net(False).eval()(x)
    dynamic, _ = _net(True).eval()(x)
    assert not torch.allclose(static, dynamic)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="k must be"):
        knn(torch.randn(1, 4, 3), 5)
    with pytest.raises(ValueError, match="batch, points, channels"):
        knn(torch.randn(4, 3), 2)
    with pytest.raises(ValueError, match="width"):
        EdgeSegNet(3, 2, k=2, widths=(), global_dim=2, head_dim=2, embed_dim=2, dynamic=False)
