"""oca full profile: augmentation, the image embedder, and the old/fit steps end to end with a
stand-in trunk in place of the ResNet and tiny CIFAR-shaped data, read by the study's evaluate
step and claims unchanged."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from subspacelab.api import Metrics, StepContext
from subspacelab.config import study_config
from subspacelab.nets.training import LocalEnv
from subspacelab.studies.oca import full
from subspacelab.studies.oca.config import OcaConfig
from subspacelab.studies.oca.study import CLAIMS, STUDY
from tests.helpers import tiny_params


def test_augment_flips_or_keeps_each_image_without_padding() -> None:
    x = torch.rand(16, 3, 5, 5)
    out = full.augment(x, torch.Generator().manual_seed(0), pad=0)
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(3)).flatten(1).all(1)
    assert bool((same | flipped).all()) and bool(same.any()) and bool(flipped.any())
    a = full.augment(x, torch.Generator().manual_seed(1))
    b = full.augment(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b)


def test_augment_crop_is_a_shift_with_zero_fill() -> None:
    x = torch.ones(64, 1, 4, 4)
    out = full.augment(x, torch.Generator().manual_seed(0), pad=1)
    zeros = (out == 0).flatten(1).sum(1)
    assert set(zeros.tolist()) <= {0, 4, 7}  # no shift, a row/column, or both
    assert int(zeros.max()) > 0


def _trunk() -> tuple[nn.Module, int]:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    ), 8


def test_embedder_interface() -> None:
    trunk, width = _trunk()
    net = full.ImageEmbedder(trunk, width, 6, 4, ortho=True, bias=True)
    logits, h = net(torch.rand(5, 3, 8, 8))
    assert logits.shape == (5, 4) and h.shape == (5, 6)
    assert torch.allclose(h.norm(dim=1), torch.ones(5), atol=1e-5)


def test_full_profile_validates() -> None:
    cfg = study_config(OcaConfig, tiny_params(["oca"]), "oca", "full")
    assert cfg.data.cifar100 is not None and cfg.data.cifar100.n_old == 50
    assert cfg.model.resnet is not None and cfg.train.schedule is not None


def test_old_and_fit_steps_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(0)
    n_classes, n_old = 6, 3

    def data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % n_classes
        x = 0.3 * torch.rand(n, 3, 8, 8, generator=g)
        x[torch.arange(n), y % 3] += 0.5 + 0.1 * (y // 3)[:, None, None].float()
        return x, y

    x, y = data(96)
    xt, yt = data(36)
    monkeypatch.setattr(full, "_cifar", lambda ctx: (x, y, xt, yt))
    cfg = study_config(OcaConfig, tiny_params(["oca"]), "oca", "full")
    cfg = dataclasses.replace(
        cfg,
        seeds=[0],
        data=dataclasses.replace(
            cfg.data, cifar100=dataclasses.replace(cfg.data.cifar100, n_old=n_old)
        ),
        model=dataclasses.replace(cfg.model, d_old=8, extra_dims=4),
        train=dataclasses.replace(cfg.train, epochs=2, batch_size=32),
    )
    env = LocalEnv()
    old_dir, fit_dir = tmp_path / "old", tmp_path / "fit"
    old_dir.mkdir()
    fit_dir.mkdir()

    def ctx(step: str, out: Path, inputs: dict[str, Path]) -> StepContext[OcaConfig]:
        return StepContext(
            STUDY, STUDY.step(step), cfg, env.lab, tmp_path, out, inputs, env.device, print
        )

    full.old_step(ctx("old", old_dir, {}), _trunk)
    assert (old_dir / "seed0.safetensors").is_file()
    full.fit_step(ctx("fit", fit_dir, {"old": old_dir}), _trunk)
    report = STUDY.step("evaluate").implementation("full")(
        SimpleNamespace(inputs={"fit": fit_dir}, seeds=[0], profile="full")  # type: ignore[arg-type]
    )
    assert "deviations" not in report.tables
    assert report.metrics["ortho_error_max"][0] < 1e-4
    curve = report.curves["ortho_error_vs_step"]  # the full fit step's errors, every step
    assert len(curve) > 1 and max(r["max"] for r in curve) == report.metrics["ortho_error_max"][0]
    for key in (
        "old_to_old/map",
        "oca_to_old/map",
        "bct_to_bct/map",
        "independent_to_independent/map",
    ):
        assert 0.0 < report.metrics[key][0] <= 1.0
    m = Metrics(report.metrics)
    results = {c.id: c.check(m) for c in CLAIMS}  # every claim computes from the full files
    assert results["orthogonality"].holds
    # one seed: the paired comparisons have no interval yet
    assert [t.verdict for t in results["compatibility"].tests] == ["inconclusive"] * 2
