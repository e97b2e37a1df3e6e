"""The one joint trainer (subspacelab.nets.joint): members trained together end exactly where
their own runs end, in every way a study feeds it batches."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from subspacelab.nets.eval import accuracy, predict
from subspacelab.nets.joint import Member, train_joint, train_one, zipped_loader
from subspacelab.nets.training import (
    LocalEnv,
    LossModule,
    fit,
    full_batch_loader,
    tensor_loader,
)


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def _ce(net: nn.Module):
    return lambda a, b: F.cross_entropy(net(a), b)


def _same(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_streams_equal_separate_runs_bit_for_bit() -> None:
    """Members with their own data, seeds, learning rates and weight decays end exactly where
    their own LossModule runs over tensor_loader end; the global RNG is left alone."""
    torch.manual_seed(0)
    data = [(torch.randn(50, 4), torch.randint(0, 3, (50,))) for _ in range(2)]
    specs = [(0, 0.01, 0.0, 3), (1, 0.05, 1e-3, 4), (0, 0.02, 0.0, 3)]  # data, lr, wd, seed
    nets = [_mlp() for _ in specs]
    refs = [copy.deepcopy(n) for n in nets]
    for net, (d, lr, wd, seed) in zip(refs, specs, strict=True):
        module = LossModule(
            net, lambda n, b: F.cross_entropy(n(b[0]), b[1]), lr=lr, weight_decay=wd
        )
        fit(LocalEnv(), module, tensor_loader(*data[d], batch_size=16, seed=seed), epochs=3)
    members = [
        Member(net, _ce(net), lr, wd, data[d], seed)
        for net, (d, lr, wd, seed) in zip(nets, specs, strict=True)
    ]
    state = torch.get_rng_state()
    result = train_joint(LocalEnv(), members, epochs=3, batch_size=16)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(len(h) == 3 and h[-1] < h[0] for h in result.history)
    assert all(_same(n, r) for n, r in zip(nets, refs, strict=True))
    assert not any(n.training for n in nets), "models are left in eval mode"


def test_shared_batches_with_sgd_and_a_cosine_schedule_equal_separate_runs() -> None:
    """SGD with momentum on one shared loader: together as LossModule runs alone; with the
    cosine schedule, together as each member's own one-member run."""
    torch.manual_seed(1)
    x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))
    lrs = [0.05, 0.1, 0.02]
    for schedule in ("constant", "cosine"):
        nets = [_mlp() for _ in lrs]
        refs = [copy.deepcopy(n) for n in nets]
        for ref, lr in zip(refs, lrs, strict=True):
            if schedule == "constant":
                module = LossModule(
                    ref,
                    lambda n, b: F.cross_entropy(n(b[0]), b[1]),
                    lr=lr,
                    optimizer="sgd",
                    momentum=0.9,
                )
                fit(LocalEnv(), module, tensor_loader(x, y, batch_size=10, seed=5), epochs=2)
            else:
                train_joint(
                    LocalEnv(),
                    [Member(ref, _ce(ref), lr)],
                    epochs=2,
                    loader=tensor_loader(x, y, batch_size=10, seed=5),
                    optimizer="sgd",
                    momentum=0.9,
                    schedule=schedule,
                )
        members = [Member(n, _ce(n), lr) for n, lr in zip(nets, lrs, strict=True)]
        train_joint(
            LocalEnv(),
            members,
            epochs=2,
            loader=tensor_loader(x, y, batch_size=10, seed=5),
            optimizer="sgd",
            momentum=0.9,
            schedule=schedule,
        )
        assert all(_same(n, r) for n, r in zip(nets, refs, strict=True)), schedule


def test_adamw_with_warmup_and_cosine_equals_a_plain_torch_loop() -> None:
    """AdamW (decoupled decay) under linear warm-up then cosine, per member, is exactly a plain
    torch AdamW + LambdaLR loop over the same full batches; Adam (L2 decay) ends elsewhere."""
    torch.manual_seed(3)
    x, y = torch.randn(24, 4), torch.randint(0, 3, (24,))
    steps, lr, wd, warmup = 20, 0.05, 0.1, 0.25
    ref = _mlp()
    nets = {name: copy.deepcopy(ref) for name in ("adamw", "adam")}
    for name, net in nets.items():
        train_joint(
            LocalEnv(),
            [Member(net, _ce(net), lr, wd, data=(x, y))],
            epochs=1,
            loader=full_batch_loader(steps=steps),
            optimizer=name,
            schedule="cosine",
            warmup=warmup,
        )
    warm = round(warmup * steps)  # 5 steps at lr/6, 2lr/6, ..., 5lr/6, then cosine from lr

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / (warm + 1)
        return 0.5 * (1.0 + math.cos(math.pi * (step - warm) / (steps - warm)))

    opt = torch.optim.AdamW(ref.parameters(), lr=lr, weight_decay=wd)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(ref(x), y).backward()
        opt.step()
        sched.step()
    assert _same(nets["adamw"], ref)
    assert not _same(nets["adam"], ref)
    one = Member(ref, _ce(ref), lr, data=(x, y))
    with pytest.raises(ValueError, match="warmup"):
        train_joint(LocalEnv(), [one], epochs=1, batch_size=4, warmup=0.1)  # constant schedule
    with pytest.raises(ValueError, match="warmup"):
        train_joint(LocalEnv(), [one], epochs=1, batch_size=4, schedule="cosine", warmup=1.0)


def test_full_batch_members_stop_on_their_own_at_their_target() -> None:
    """Members on data of their own (full batch) stop where their rule fires; a stopped member
    is frozen: it equals its own run cut at that step."""
    torch.manual_seed(2)
    cells = [(torch.randn(30, 4), torch.randint(0, 3, (30,))) for _ in range(2)]
    targets = [0.9, 0.6]
    nets = [_mlp() for _ in cells]
    refs = [copy.deepcopy(n) for n in nets]
    members = [
        Member(n, _ce(n), 0.01, data=c, stop=lambda v, s, t=t: (s > 0 and v <= t) or s >= 400)
        for n, c, t in zip(nets, cells, targets, strict=True)
    ]
    result = train_joint(LocalEnv(), members, epochs=1, loader=full_batch_loader(steps=401))
    for ref, (x, y), steps, final in zip(refs, cells, result.steps, result.final, strict=True):
        assert steps is not None and final is not None
        opt = torch.optim.Adam(ref.parameters(), lr=0.01)
        for _ in range(steps):
            opt.zero_grad()
            F.cross_entropy(ref(x), y).backward()
            opt.step()
        assert F.cross_entropy(ref(x), y).item() == pytest.approx(final, rel=1e-6)
    assert all(_same(n, r) for n, r in zip(nets, refs, strict=True))
    assert result.steps[0] != result.steps[1]


def test_one_member_alone_and_the_evaluation_helpers() -> None:
    net = _mlp()
    x, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
    history = train_one(
        LocalEnv(), Member(net, _ce(net), 0.01, data=(x, y)), epochs=2, batch_size=8
    )
    assert len(history) == 2
    assert accuracy(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0])) == 0.5
    assert predict(net, torch.zeros(3, 4), batch_size=2).shape == (3, 3)


def test_joint_training_refuses_bad_members_and_settings() -> None:
    net = _mlp()
    x, y = torch.randn(8, 4), torch.zeros(8, dtype=torch.long)
    one = Member(net, _ce(net), 0.1, data=(x, y))
    with pytest.raises(ValueError, match="shares"):
        train_joint(LocalEnv(), [one, one], epochs=1, batch_size=4)
    with pytest.raises(ValueError, match="one length"):
        zipped_loader([(x, y), (x[:6], y[:6])], [0, 1], batch_size=4)
    with pytest.raises(ValueError, match="at least one"):
        train_joint(LocalEnv(), [], epochs=1, batch_size=4)
    with pytest.raises(ValueError, match="exactly one"):
        train_joint(LocalEnv(), [one], epochs=1)
    with pytest.raises(ValueError, match="optimizer"):
        train_joint(LocalEnv(), [one], epochs=1, batch_size=4, optimizer="lbfgs")
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="trainable"):
        train_joint(
            LocalEnv(), [Member(frozen, _ce(frozen), 0.1, data=(x, y))], epochs=1, batch_size=4
        )
