"""Tests of the robustness_lottery study (Li et al., arXiv:2206.07918)."""

from __future__ import annotations

import itertools
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from subspacelab.api import ClaimResult, Metrics
from subspacelab.config import ParamsError, build
from subspacelab.data.download import DownloadError
from subspacelab.nets.training import LocalEnv
from subspacelab.probes import pruning as pr
from subspacelab.probes.stats import sign_test
from subspacelab.studies.robustness_lottery import core, full
from subspacelab.studies.robustness_lottery import study as rl
from subspacelab.studies.robustness_lottery.config import DataConfig, TrainConfig
from subspacelab.studies.robustness_lottery.training import train_methods


def test_methods_reach_the_sparsity_and_summaries() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(64, 12), torch.arange(64) % 10
    models = train_methods(
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


CORR = ["gaussian_noise", "shot_noise", "blur", "contrast"]
PROFILE = {"gaussian_noise": 10.0, "shot_noise": 10.5, "blur": 2.0, "contrast": 30.0}


def _metrics(
    *,
    profile: dict[str, float] = PROFILE,
    d_length: float = -1.0,
    clean: dict[str, float] | None = None,
    slope: float = -0.1,
) -> Metrics:
    """Three seeds, five arms: Δθ of arm i is larger by 1 % per arm and its relative accuracy
    falls with it (``slope``), unless overridden; ``clean`` sets an arm's clean accuracy."""
    vals: dict[str, list[float]] = {}
    for i, method in enumerate(core.METHODS):
        for c, s in itertools.product(CORR, range(1, 6)):
            vals[f"{method}/{c}/{s}/d_angle"] = [
                profile[c] * s * (1 + 0.01 * i) + 0.1 * k for k in range(3)
            ]
            vals[f"{method}/{c}/{s}/d_length"] = [d_length * (1 + 0.1 * k) for k in range(3)]
        vals[f"{method}/corrupted/d_angle"] = [float(i) + 0.1 * k for k in range(3)]
        vals[f"{method}/corrupted/rel_acc"] = [0.9 + slope * i + 0.01 * k for k in range(3)]
        vals[f"{method}/clean/acc"] = [(clean or {}).get(method, 0.85)] * 3
    return Metrics(vals)


def _check(claim: str) -> Callable[[Metrics], ClaimResult]:
    return {c.id: c.check for c in rl.CLAIMS}[claim]


def test_claims_hold_on_good_metrics() -> None:
    for claim in rl.CLAIMS:
        assert claim.check(_metrics()).verdict == "holds", claim.id


def test_claims_fail_when_their_relation_fails() -> None:
    assert _check("a_shift_signs")(_metrics(d_length=1.0)).verdict == "does not hold"
    assert _check("b_angle_predicts_robustness")(_metrics(slope=0.1)).verdict == "does not hold"
    far = {"gaussian_noise": 10.0, "shot_noise": 30.0, "blur": 11.0, "contrast": 29.0}
    assert _check("c_noise_redundancy")(_metrics(profile=far)).verdict == "does not hold"


def test_gate_drops_an_arm_and_too_few_arms_is_inconclusive() -> None:
    # an arm at chance would break (b) if it were used: with the gate, it is reported only
    broken = {"edge_popup": 0.1}
    result = _check("b_angle_predicts_robustness")(_metrics(clean=broken))
    assert result.verdict == "holds" and result.measured["edge_popup used"] == 0.0
    few = {m: 0.1 for m in core.METHODS[2:]}
    assert _check("b_angle_predicts_robustness")(_metrics(clean=few)).verdict == "inconclusive"


def test_sign_test_is_three_way() -> None:
    assert sign_test("x", [1.0] * 12).verdict == "holds"
    assert sign_test("x", [-1.0] * 12).verdict == "does not hold"
    assert sign_test("x", [1.0] * 7 + [-1.0] * 5).verdict == "inconclusive"
    assert sign_test("x", [0.0, 0.0]).verdict == "inconclusive"
    mean, lo, hi = sign_test("x", [1.0] * 9 + [-1.0]).interval
    assert mean == 0.9 and lo == pytest.approx(0.5549839, rel=1e-6) and hi < 1.0


def test_corruptions_are_sized_per_signal() -> None:
    from subspacelab.probes.robustness import corrupt

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 40)).astype(np.float32)
    x[1] *= 100.0  # a loud signal must not set the noise of a quiet one
    for name in ("gaussian_noise", "shot_noise", "impulse_noise", "brightness"):
        out = corrupt(x, name, 1, seed=0)
        quiet = np.abs(out[0] - x[0]).max() / x[0].std()
        loud = np.abs(out[1] - x[1]).max() / x[1].std()
        assert quiet < 5 and loud < 5, name  # both relative to their own scale


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


def test_severity_curves_start_clean_and_average_corruptions() -> None:
    metrics = {f"{m}/clean/acc": [0.9, 0.8] for m in core.METHODS}
    for m, c, s in itertools.product(core.METHODS, ("blur", "noise"), (1, 2)):
        metrics[f"{m}/{c}/{s}/acc"] = [0.5 / s, 0.6 / s] if c == "blur" else [0.3 / s, 0.4 / s]
        metrics[f"{m}/{c}/{s}/d_angle"] = [float(s), 2.0 * s]
    curves = rl.severity_curves(metrics, ["blur", "noise"], [1, 2])
    assert sorted(curves) == sorted(c.name for c in rl.STUDY.curves)
    for curve in rl.STUDY.curves:
        rows = curves[curve.name]
        assert [r["severity"] for r in rows] == [0.0, 1.0, 2.0]
        assert all(set(r) == {curve.x, *curve.ys} for r in rows)
    acc = curves["acc_vs_severity"]
    assert acc[0]["dense"] == pytest.approx(0.85) and acc[2]["edge_popup"] == pytest.approx(0.225)
    assert [r["lottery_rewind"] for r in curves["angle_vs_severity"]] == [0.0, 1.5, 3.0]
