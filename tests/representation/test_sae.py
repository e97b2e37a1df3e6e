"""Sparse autoencoders (TopK + AuxK, Gao et al. arXiv 2406.04093; variational SAE, Baker & Li
arXiv 2509.22994) on known answers."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from subspacelab.representation import sae


def _stack(
    arms: list[sae.SAEArm], d: int = 8, n: int = 16, k: int = 3, **kw: int
) -> sae.StackedSAE:
    opts = {"k_aux": 4, "dead_window": 10**9} | kw
    return sae.StackedSAE(d, n, k, arms, list(range(len(arms))), **opts)


TOPK = sae.SAEArm("none", 0.0, 0.0)
FIXED = sae.SAEArm("fixed", 1.0, 0.0)
LEARNED = sae.SAEArm("learned", 0.1, 0.0)


def test_topk_keeps_exactly_k_largest_and_signs() -> None:
    z = torch.tensor([[0.5, -3.0, 1.0, 2.0, -0.1], [1.0, 2.0, 3.0, 4.0, 5.0]])
    got = sae.topk_sparse(z, 2)
    assert torch.equal(got, torch.tensor([[0, -3.0, 0, 2.0, 0], [0, 0, 0, 4.0, 5.0]]))
    x = torch.randn(2, 50, 8) + 3.0  # every pre-activation positive for most rows
    c = _stack([TOPK, FIXED])(x)
    assert c.idx.shape == (2, 50, 3)
    # the selected latents are the k largest of μ, and exactly k are selected per row
    top = c.mu.topk(3, dim=-1).values
    assert torch.allclose(c.vals.sort(-1).values, top.sort(-1).values)


def test_tied_sae_on_a_known_dictionary_reconstructs_exactly() -> None:
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=torch.Generator().manual_seed(1)))
    s = sae.StackedSAE(8, 8, 3, [TOPK], [0], k_aux=2, dead_window=10)
    with torch.no_grad():
        s.W_dec.copy_(q.T[None])  # atoms: the columns of q
        s.W_enc.copy_(q[None])
    g = torch.Generator().manual_seed(2)
    coef = torch.zeros(40, 8)
    for row in coef:
        row[torch.randperm(8, generator=g)[:3]] = torch.rand(3, generator=g) + 0.1
    x = coef @ q.T
    c = s(x[None])
    assert torch.allclose(c.x_hat[0], x, atol=1e-5)
    ev = sae.evaluate(s, [x[None]])
    assert ev.fvu[0] < 1e-9 and ev.l0[0] == pytest.approx(3.0)


def test_dead_latent_counters_on_constructed_activations() -> None:
    acts = torch.zeros(6, 5)
    acts[0, 0] = 1.0
    acts[3, 2] = -0.5
    acts[5, 4] = 2.0
    assert sae.dead_fraction(acts) == pytest.approx(2 / 5)
    idx = torch.tensor([[[0, 1], [2, 1]]])  # (members, rows, k)
    vals = torch.tensor([[[1.0, 0.0], [0.3, 0.0]]])  # latent 1 selected but never non-zero
    assert sae.fired_latents(idx, vals, 4).tolist() == [[True, False, True, False]]


def test_kl_of_a_known_gaussian() -> None:
    mu = torch.tensor([[1.0, 0.0, -2.0]])
    logvar = torch.tensor([[0.0, 0.0, 1.0]])
    # KL(N(1, 1)|N(0, 1)) = ½; KL(N(0, 1)|N(0, 1)) = 0; KL(N(−2, e)|N(0, 1)) = ½(4 + e − 1 − 1)
    want = 0.5 + 0.0 + 0.5 * (4 + torch.e - 2)
    assert float(sae.kl_standard_normal(mu, logvar)) == pytest.approx(want, rel=1e-6)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, (0.5 * logvar).exp()), torch.distributions.Normal(0.0, 1.0)
    ).sum()
    assert float(sae.kl_standard_normal(mu, logvar)) == pytest.approx(float(ref), rel=1e-6)


def test_reconstruction_metrics() -> None:
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 0.0]])
    assert sae.fvu(x, x) == 0.0
    assert sae.fvu(x, x.mean(0).expand_as(x)) == pytest.approx(1.0)
    assert sae.normalised_mse(x, torch.zeros_like(x)) == pytest.approx(1.0)
    assert sae.normalised_mse(x, 0.5 * x) == pytest.approx(0.25)


def test_independence_and_recovery() -> None:
    eye = torch.eye(4)
    assert sae.mean_abs_cos(eye) == pytest.approx(0.0)
    same = torch.tensor([[1.0, 0.0], [-2.0, 0.0], [0.0, 1.0]])
    alive = torch.tensor([True, True, False])
    assert sae.mean_abs_cos(same, alive) == pytest.approx(1.0)
    assert sae.mean_abs_cos(same) == pytest.approx(1 / 3)
    assert sae.max_cos_recovery(eye[:2], eye) == pytest.approx(1.0)
    assert sae.max_cos_recovery(eye[:2], -eye) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="two atoms"):
        sae.mean_abs_cos(eye, torch.tensor([True, False, False, False]))


def test_geometric_median_resists_an_outlier() -> None:
    pts = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [100.0, 100.0]])
    med = sae.geometric_median(pts, iters=1000, tol=1e-9)
    pull = torch.nn.functional.normalize(pts - med, dim=1).sum(0)  # its optimality condition
    assert pull.norm() < 1e-3 and med.norm() < 0.5  # the mean is (20, 20)
    square = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]]) + 3.0
    assert torch.allclose(sae.geometric_median(square), torch.tensor([3.0, 3.0]), atol=1e-5)


def test_decoder_gradient_drops_the_parallel_part_and_atoms_stay_unit() -> None:
    s = _stack([TOPK, FIXED])
    x = torch.randn(2, 32, 8)
    s.losses(x).sum().backward()
    assert s.W_dec.grad is not None
    along = (s.W_dec.grad * s.W_dec.detach()).sum(-1)
    assert along.abs().max() < 1e-5
    with torch.no_grad():
        s.W_dec.mul_(3.0)
    s.project()
    assert torch.allclose(s.W_dec.norm(dim=-1), torch.ones(2, 16), atol=1e-6)


def test_auxk_is_zero_without_dead_latents_and_normalised_by_the_residual() -> None:
    s = _stack([sae.SAEArm("none", 0.0, 1 / 32)])
    e = torch.randn(1, 20, 8)
    mu = torch.zeros(1, 20, 16)  # dead latents that do not activate: ê = 0
    none_dead = torch.zeros(1, 16, dtype=torch.bool)
    all_dead = torch.ones(1, 16, dtype=torch.bool)
    with torch.no_grad():
        assert float(s.auxk(e, mu, none_dead, s.W_dec)) == 0.0
        got = float(s.auxk(e, mu, all_dead, s.W_dec))
    want = e.pow(2).sum(-1).mean() / (e - e.mean(1, keepdim=True)).pow(2).sum(-1).mean()
    assert got == pytest.approx(float(want), rel=1e-5)


def test_losses_follow_the_arms() -> None:
    x = torch.randn(3, 16, 8)
    s = _stack([TOPK, FIXED, sae.SAEArm("fixed", 2.0, 0.0)])
    with torch.no_grad():
        c = s(x)
        mse = (x - c.x_hat).pow(2).sum(-1).mean(-1)
        kl = 0.5 * c.mu.pow(2).sum(-1).mean(-1)
        got = s.losses(x)
    assert torch.allclose(got, mse + torch.tensor([0.0, 1.0, 2.0]) * kl, rtol=1e-5)
    ramped = _stack([FIXED], kl_warmup=4)
    with torch.no_grad():
        c = ramped(x[:1])
        first = ramped.losses(x[:1])
    want = (x[:1] - c.x_hat).pow(2).sum(-1).mean(-1) + 0.25 * 0.5 * c.mu.pow(2).sum(-1).mean(-1)
    assert torch.allclose(first, want, rtol=1e-5)  # step 1 of 4: weight ¼


def test_learned_variance_samples_in_training_only() -> None:
    s = _stack([LEARNED, LEARNED])
    x = torch.randn(2, 10, 8)
    a, b = s(x), s(x)
    assert torch.equal(a.x_hat, b.x_hat)  # z = μ without sampling
    torch.manual_seed(0)
    noisy = s(x, sample=True)
    assert not torch.equal(noisy.x_hat, a.x_hat)
    assert noisy.logvar is not None and float(noisy.logvar.min()) >= sae.LOGVAR_MIN


def test_dead_rows_are_counted_in_training() -> None:
    s = _stack([TOPK], dead_window=20)
    x = torch.randn(1, 12, 8)
    s.losses(x)
    s.losses(x)  # the same rows twice, no update: the same latents fire
    c = s(x)
    fired = sae.fired_latents(c.idx, c.vals, 16)
    assert torch.equal(s.since_fired, torch.where(fired, 0, 24))
    assert not bool(fired.all())


def test_stacking_equals_training_each_alone() -> None:
    x = torch.randn(2, 32, 8, generator=torch.Generator().manual_seed(3))
    both = sae.StackedSAE(8, 16, 3, [TOPK, FIXED], [5, 6], k_aux=4, dead_window=10)
    alone = sae.StackedSAE(8, 16, 3, [FIXED], [6], k_aux=4, dead_window=10)
    for model, data in ((both, x), (alone, x[1:])):
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(5):
            opt.zero_grad()
            model.losses(data).sum().backward()
            opt.step()
            model.project()
    assert torch.allclose(both.W_dec[1], alone.W_dec[0], atol=1e-5)
    assert torch.allclose(both.b_enc[1], alone.b_enc[0], atol=1e-5)


def test_train_stacks_lowers_the_reconstruction_error() -> None:
    from subspacelab.nets.training import LocalEnv

    g = torch.Generator().manual_seed(0)
    atoms = torch.nn.functional.normalize(torch.randn(16, 8, generator=g), dim=1)
    coef = (torch.rand(40, 64, 16, generator=g) < 0.15) * torch.rand(40, 64, 16, generator=g)
    data = coef @ atoms  # 40 steps of 64 rows, one stream
    stacks = [_stack([TOPK, FIXED]), _stack([LEARNED])]
    before = [sae.evaluate(s, [data[-1:].expand(s.members, -1, -1)]).fvu for s in stacks]
    loader = DataLoader([(b[None],) for b in data], batch_size=None)
    hist = sae.train_stacks(
        LocalEnv(), stacks, [torch.tensor([0, 0]), torch.tensor([0])], loader, lr=1e-2
    )
    assert len(hist) == 2
    after = [sae.evaluate(s, [data[-1:].expand(s.members, -1, -1)]).fvu for s in stacks]
    for b, a in zip(before, after, strict=True):
        assert all(y < x for x, y in zip(b, a, strict=True))


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="variance"):
        sae.SAEArm("gaussian", 0.0, 0.0)
    with pytest.raises(ValueError, match="no KL"):
        sae.SAEArm("none", 1.0, 0.0)
    with pytest.raises(ValueError, match="learned-variance members only"):
        _stack([TOPK, LEARNED])
    with pytest.raises(ValueError, match="k_aux"):
        sae.StackedSAE(8, 4, 5, [TOPK], [0], k_aux=2, dead_window=1)
    with pytest.raises(ValueError, match="one seed per arm"):
        sae.StackedSAE(8, 16, 3, [TOPK], [0, 1], k_aux=2, dead_window=1)
    with pytest.raises(ValueError, match="x must be"):
        _stack([TOPK])(torch.randn(2, 4, 8))
    with pytest.raises(ValueError, match="source"):
        sae.train_stacks(None, [_stack([TOPK])], [torch.tensor([0, 1])], None, lr=0.1)  # type: ignore[arg-type]
