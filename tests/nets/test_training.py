"""The shared Lightning training utilities (subspacelab.nets.training)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn

from subspacelab import tracking
from subspacelab.nets.training import (
    LocalEnv,
    LossModule,
    fit,
    full_batch_loader,
    state_dict_cpu,
    tensor_loader,
)


def _ce(net: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
    return F.cross_entropy(net(batch[0]), batch[1])


def test_tensor_loader_covers_every_row_once_per_epoch_in_seeded_order() -> None:
    x = torch.arange(10).float()[:, None]
    y = torch.arange(10)
    loader = tensor_loader(x, y, batch_size=4, seed=3)
    epochs = [[b[1] for b in loader] for _ in range(2)]
    for batches in epochs:
        assert [len(b) for b in batches] == [4, 4, 2]
        assert sorted(torch.cat(batches).tolist()) == list(range(10))
    assert not torch.equal(torch.cat(epochs[0]), torch.cat(epochs[1]))  # reshuffled
    again = [b[1] for b in tensor_loader(x, y, batch_size=4, seed=3)]
    assert torch.equal(torch.cat(again), torch.cat(epochs[0]))  # same seed, same order
    assert torch.equal(torch.cat([b[1] for b in tensor_loader(x, y, batch_size=4, seed=None)]), y)
    with pytest.raises(ValueError, match="one length"):
        tensor_loader(x, y[:5], batch_size=2, seed=0)
    with pytest.raises(ValueError, match="batch_size"):
        tensor_loader(x, batch_size=0, seed=0)


def test_full_batch_loader_repeats_the_whole_batch() -> None:
    x = torch.randn(5, 2)
    batches = list(full_batch_loader(x, steps=3))
    assert len(batches) == 3 and all(torch.equal(b[0], x) for b in batches)
    assert [len(b) for b in full_batch_loader(steps=2)] == [0, 0]
    with pytest.raises(ValueError, match="steps"):
        full_batch_loader(x, steps=0)


def _train(seed: int, steps: int, **kwargs: object) -> tuple[nn.Module, list[dict[str, float]]]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=gen)
    y = (x[:, 0] > 0).long()
    net = nn.Linear(4, 2)
    history = fit(
        LocalEnv(),
        LossModule(net, _ce, lr=0.1, **kwargs),  # type: ignore[arg-type]
        tensor_loader(x, y, batch_size=16, seed=seed),
        epochs=steps,
    )
    return net, history


def test_fit_trains_reproducibly_and_runs_the_after_step_hook() -> None:
    net, history = _train(0, 8)
    assert len(history) == 8 and history[-1]["loss"] < history[0]["loss"]
    twin, _ = _train(0, 8)
    for a, b in zip(state_dict_cpu(net).values(), state_dict_cpu(twin).values(), strict=True):
        assert torch.equal(a, b)
    calls: list[float] = []
    _train(0, 2, optimizer="sgd", momentum=0.9, after_step=lambda n: calls.append(1.0))
    assert len(calls) == 2 * 4  # 64 rows / 16 per batch, two epochs
    clipped, _ = _train(0, 2, after_step=lambda n: n.weight.clamp_(-0.01, 0.01))
    assert float(clipped.weight.abs().max()) <= 0.01


def test_loss_module_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="optimizer"):
        LossModule(nn.Linear(2, 2), _ce, lr=0.1, optimizer="rmsprop")
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="trainable"):
        LossModule(frozen, _ce, lr=0.1)


def test_logged_epoch_loss_is_the_mean_over_rows() -> None:
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(50, 4, generator=gen), torch.randint(0, 2, (50,), generator=gen)
    net = nn.Linear(4, 2)
    expected = float(F.cross_entropy(net(x), y))
    module = LossModule(net, _ce, lr=0.0)  # frozen by lr 0: every epoch sees the same loss
    history = fit(LocalEnv(), module, tensor_loader(x, y, batch_size=16, seed=0), epochs=2)
    assert [round(row["loss"], 5) for row in history] == [round(expected, 5)] * 2


def test_loaders_leave_the_global_random_state_alone() -> None:
    x = torch.randn(8, 2)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    for loader in (tensor_loader(x, batch_size=4, seed=1), full_batch_loader(x, steps=2)):
        for _ in range(2):
            list(loader)
    assert torch.equal(torch.rand(3), expected)


def test_fit_trains_in_train_mode_even_after_an_earlier_fit() -> None:
    modes: list[bool] = []

    def loss(net: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        modes.append(net.training)
        return _ce(net, batch)

    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    module = LossModule(nn.Sequential(nn.Linear(4, 2), nn.BatchNorm1d(2)), loss, lr=0.1)
    stops: list[int] = []

    class Count(Callback):
        def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            stops.append(trainer.global_step)

    for _ in range(2):
        fit(
            LocalEnv(),
            module,
            tensor_loader(x, y, batch_size=4, seed=0),
            epochs=1,
            callbacks=[Count()],
        )
        assert not module.training
    assert modes == [True] * 4 and stops == [2, 2]


def test_each_fit_is_a_model_record_with_params_and_per_epoch_metrics() -> None:
    """The LabLogger hands the running stage one record per fit: Lightning's metrics with their
    steps (one point per epoch), the optimiser's settings and the step's params; a single-epoch
    full-batch run traces its loss over the steps instead."""
    tracking.take_models()
    _, history = _train(0, 3)
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    y = (x[:, 0] > 0).long()
    fit(
        LocalEnv(),
        LossModule(nn.Linear(4, 2), _ce, lr=0.1),
        full_batch_loader(x, y, steps=250),
        epochs=1,
        label="full",
        params={"arm": "linear", "seed": 5},
    )
    first, full = tracking.take_models()
    assert tracking.take_models() == []
    assert first["name"] == "train" and first["status"] == "FINISHED"
    assert {"optimizer": "Adam", "optimizer.lr": "0.1", "max_epochs": "3"}.items() <= (
        first["params"].items()
    )
    losses = [(step, value) for key, value, step, _ in first["metrics"] if key == "loss"]
    assert [v for _, v in losses] == pytest.approx([h["loss"] for h in history])
    # at each epoch's last optimiser step, counted from 0 (Lightning's): 4 batches of 16 rows
    assert [s for s, _ in losses] == [3, 7, 11]
    assert full["name"] == "full" and full["params"]["arm"] == "linear"
    assert full["params"]["seed"] == "5" and full["params"]["batches_per_epoch"] == "250"
    traced = [(step, value) for key, value, step, _ in full["metrics"] if key == "step_loss"]
    assert [s for s, _ in traced] == list(range(0, 250, 3))  # ceil(250 / 100) = every 3rd step
    assert traced[-1][1] < traced[0][1]


def test_repeated_labels_stay_separate_models() -> None:
    tracking.take_models()
    for _ in range(3):
        tracking.add_model({"name": "dense", "params": {}, "metrics": []})
    assert [m["name"] for m in tracking.take_models()] == ["dense", "dense #2", "dense #3"]


def _diverging(lr: float) -> tuple[LossModule, object]:
    gen = torch.Generator().manual_seed(0)
    x = 100 * torch.randn(64, 4, generator=gen)
    y = x.sum(1, keepdim=True)
    net = nn.Linear(4, 1)
    module = LossModule(net, lambda n, b: F.mse_loss(n(b[0]), b[1]), lr=lr, optimizer="sgd")
    return module, tensor_loader(x, y, batch_size=16, seed=0)


def test_a_diverging_run_stops_at_once_naming_model_and_epoch() -> None:
    from subspacelab.io import NonFiniteError

    module, loader = _diverging(lr=1.0)  # far too high: the loss overflows within a few steps
    seen: list[int] = []

    class Count(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            seen.append(trainer.global_step)

    with pytest.raises(
        NonFiniteError,
        match=r"training: model 'ridge' diverged: the loss is "
        r"(nan|inf) at epoch \d+/50, batch \d+",
    ):
        fit(LocalEnv(), module, loader, epochs=50, label="ridge", callbacks=[Count()])
    assert len(seen) < 50 * 4  # stopped at the first non-finite loss, not at the end


def test_a_finite_run_is_not_stopped() -> None:
    module, loader = _diverging(lr=1e-6)
    assert len(fit(LocalEnv(), module, loader, epochs=3, label="ridge")) == 3
