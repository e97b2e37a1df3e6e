"""Tests of the robustness_lottery study (Li et al., arXiv:2206.07918)."""

from __future__ import annotations

import itertools
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from subspacelab.config import ParamsError, build
from subspacelab.data.download import DownloadError
from subspacelab.nets.training import LocalEnv
from subspacelab.probes import pruning as pr
from subspacelab.registry import Metrics
from subspacelab.studies.robustness_lottery import core, full
from subspacelab.studies.robustness_lottery import study as rl
from subspacelab.studies.robustness_lottery.config import DataConfig, TrainConfig


def test_methods_reach_the_sparsity_and_summaries() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(64, 12), torch.arange(64) % 10
    models = core.train_methods(
        LocalEnv(),
        lambda: core.SmallCNN(12, 2, 4, 10),
        x,
        y,
        epochs=3,
        finetune_epochs=1,
        rewind_epoch=1,
        sparsity=0.8,
        lr=0.01,
        batch=32,
        seed=0,
    )
    assert set(models) == set(core.METHODS)
    for method in ("magnitude_finetune", "gradual_magnitude", "lottery_rewind"):
        weights = pr.prunable(models[method])
        zeros = sum(int((w == 0).sum()) for w in weights.values())
        total = sum(w.numel() for w in weights.values())
        assert zeros / total == pytest.approx(0.8, abs=0.01), method
    popup = models["edge_popup"]
    w, _ = popup.last_layer()
    assert float((w != 0).double().mean()) == pytest.approx(0.2, abs=0.03)
    row = core.summarise(models["dense"], x, y)
    assert 0 <= row["acc"] <= 1 and 0 <= row["angle"] <= 180 and row["length"] >= 0


def test_config_rewind_error() -> None:
    raw = {
        "arch": "small_cnn",
        "channels": 2,
        "hidden": 4,
        "epochs": 2,
        "finetune_epochs": 1,
        "rewind_epoch": 2,
        "sparsity": 0.9,
        "lr": 0.1,
        "batch_size": 8,
    }
    with pytest.raises(ParamsError, match="rewind_epoch"):
        build(TrainConfig, raw, "robustness_lottery.mini.train")


def _metrics(good: bool) -> Metrics:
    vals: dict[str, float] = {}
    corr = ["gaussian_noise", "shot_noise", "blur", "contrast"]
    profile = {"gaussian_noise": 10.0, "shot_noise": 10.5, "blur": 2.0, "contrast": 30.0}
    if not good:
        profile = {"gaussian_noise": 10.0, "shot_noise": 30.0, "blur": 11.0, "contrast": 29.0}
    for i, method in enumerate(core.METHODS):
        for c, s in itertools.product(corr, range(1, 6)):
            vals[f"{method}/{c}/{s}/d_angle"] = profile[c] * s * (1 + 0.01 * i)
            vals[f"{method}/{c}/{s}/d_length"] = -1.0 if good else 1.0
        vals[f"{method}/corrupted/d_angle"] = float(i)
        vals[f"{method}/corrupted/acc"] = (0.9 - 0.1 * i) if good else (0.5 + 0.1 * i)
    return Metrics(vals)


def test_claims_both_ways() -> None:
    for claim in rl.CLAIMS:
        assert claim.check(_metrics(True)).holds, claim.id
        assert not claim.check(_metrics(False)).holds, claim.id


def _cifar10c_tar(tmp_path: Path, labels: np.ndarray) -> tuple[Path, np.ndarray]:
    """A CIFAR-10-C.tar in the release's layout with 4 test images per severity."""
    rng = np.random.default_rng(0)
    src = tmp_path / "src" / "CIFAR-10-C"
    src.mkdir(parents=True)
    images = rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    np.save(src / "gaussian_noise.npy", images)
    np.save(src / "labels.npy", np.tile(labels, 5).astype(np.uint8))
    archive = tmp_path / "CIFAR-10-C.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(src, arcname="CIFAR-10-C")
    return archive, images


def test_cifar10c_loader_on_a_small_release(tmp_path: Path) -> None:
    labels = np.array([3, 1, 4, 1])
    archive, images = _cifar10c_tar(tmp_path, labels)
    folder = full.extract_cifar10c(archive, tmp_path / "out")
    x = full.load_cifar10c(folder, "gaussian_noise", 2, 3, labels)
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32
    expected = torch.from_numpy(images[4:7].transpose(0, 3, 1, 2).astype(np.float32) / 255)
    torch.testing.assert_close(x, expected)
    with pytest.raises(DownloadError, match="labels differ"):
        full.load_cifar10c(folder, "gaussian_noise", 1, 4, np.array([0, 1, 4, 1]))
    with pytest.raises(DownloadError, match="missing"):
        full.load_cifar10c(folder, "fog", 1, 2, labels)
    with pytest.raises(ValueError, match="out of range"):
        full.load_cifar10c(folder, "gaussian_noise", 1, 5, labels)
    assert full.CIFAR10C.md5 == "56bf5dcef84df0e2308c6dcbcbbd8499"


def test_conv8_features_and_edge_popup_on_images() -> None:
    torch.manual_seed(0)
    net = full.Conv8(2, 8, 10)
    x = torch.rand(3, 3, 32, 32)
    assert net.features(x).shape == (3, 8) and net(x).shape == (3, 10)
    popup = core.to_edge_popup(full.Conv8(2, 8, 10), 0.2)
    assert sum(isinstance(m, pr.EdgePopup) for m in popup.modules()) == 11
    assert popup(x).shape == (3, 10)
    row = core.summarise(popup, x, torch.tensor([0, 1, 2]))
    assert 0 <= row["angle"] <= 180


def test_config_source_checks() -> None:
    base = {
        "seed": 0,
        "mnist1d": {"num_samples": 400, "train_split": 0.8},
        "cifar10": None,
        "corruptions": ["gaussian_noise", "fog"],
        "severities": [1, 5],
        "n_test": 50,
    }
    with pytest.raises(ParamsError, match="corruptions"):
        build(DataConfig, base, "robustness_lottery.mini.data")
    with pytest.raises(ParamsError, match="exactly one"):
        build(DataConfig, {**base, "mnist1d": None}, "robustness_lottery.full.data")
    cifar = {**base, "mnist1d": None, "cifar10": {"download_dir": "d"}}
    assert build(DataConfig, cifar, "robustness_lottery.full.data").cifar10 is not None
