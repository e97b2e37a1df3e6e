"""Tests of the hessian study (Sagun et al., arXiv:1706.04454): core, loaders, claims."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from subspacelab.api import (
    ClaimResult,
    JointResult,
    Metrics,
    StepContext,
    fit,
    full_batch_loader,
    load_tensors,
    tensor_loader,
    train_joint,
)
from subspacelab.config import ParamsError, build
from subspacelab.data.download import DownloadError
from subspacelab.data.mnist import IMAGES_MAGIC, LABELS_MAGIC
from subspacelab.nets.training import LocalEnv
from subspacelab.probes import hessian as hs
from subspacelab.studies.hessian import core
from subspacelab.studies.hessian import study as hs_study
from subspacelab.studies.hessian.config import DataConfig
from subspacelab.studies.hessian.lightning import MiniBatchToTarget, to_target

Cell = tuple[torch.nn.Module, torch.Tensor, torch.Tensor, str, float]


def _matched(cells: list[Cell], max_steps: int) -> JointResult:
    members = [to_target(*cell, lr=0.01, max_steps=max_steps) for cell in cells]
    return train_joint(LocalEnv(), members, epochs=1, loader=full_batch_loader(steps=max_steps + 1))


def test_blobs_and_matched_loss_training() -> None:
    x, y = core.blobs(60, 4, 3, 1.0, 5.0, 0)
    assert x.shape == (60, 4) and x.dtype == torch.float64 and set(y.tolist()) == {0, 1, 2}
    net = core.mlp(4, 5, 3, 0)
    run = _matched([(net, x, y, "ce", 0.5)], 500)
    loss, steps = run.final[0], run.steps[0]
    assert loss is not None and loss <= 0.5 and steps is not None and 0 < steps < 500
    assert loss == pytest.approx(float(hs.loss_of_outputs(net(x), y, "ce")))
    sp = core.spectrum(net, x, y, "ce", 3)
    assert sp.h_eigs.numel() == sum(p.numel() for p in net.parameters())
    assert torch.all(sp.h_eigs[:-1] >= sp.h_eigs[1:])
    assert 0.0 <= sp.overlap <= 1.0 + 1e-9


def test_joint_cells_equal_separate_runs_and_stop_on_their_own() -> None:
    x, y = core.blobs(40, 3, 2, 1.0, 5.0, 0)
    spec = [("ce", 0.3, 4), ("mse", 0.2, 6), ("ce", 1e-9, 3)]  # the last one never gets there

    def cells() -> list[Cell]:
        return [(core.mlp(3, w, 2, 1), x, y, loss, t) for loss, t, w in spec]

    joint_cells = cells()
    joint = _matched(joint_cells, 60)
    assert joint.steps[2] == 60 and joint.steps[0] < 60 and joint.steps[1] < 60  # type: ignore[operator]
    for i, cell in enumerate(cells()):
        alone = _matched([cell], 60)
        assert alone.steps[0] == joint.steps[i] and alone.final[0] == joint.final[i]
        for p_joint, p_alone in zip(
            joint_cells[i][0].parameters(), cell[0].parameters(), strict=True
        ):
            assert torch.equal(p_joint, p_alone)


def test_minibatch_run_stops_at_the_target() -> None:
    x, y = core.blobs(40, 3, 2, 1.0, 5.0, 0)
    module = MiniBatchToTarget(core.mlp(3, 4, 2, 0), x, y, "ce", 0.3, lr=0.01)
    history = fit(LocalEnv(), module, tensor_loader(x, y, batch_size=8, seed=0), epochs=200)
    assert module.final <= 0.3 and len(history) < 200


def test_ce_overlap_is_read_on_the_outlier_subspace() -> None:
    eig = torch.tensor([50.0, 40.0, 1.0, 0.9, 0.8, 0.1, 0.0], dtype=torch.float64)
    assert core.overlap_dim(eig, "ce", 2) == 2  # the gap rule: two outliers
    assert core.overlap_dim(eig, "mse", 3) == 3  # one per class


def test_barrier_known_answer() -> None:
    alphas = np.array([-0.5, 0.0, 0.5, 1.0, 1.5])
    assert core.barrier(alphas, np.array([9.0, 1.0, 3.0, 2.0, 9.0])) == pytest.approx(1.0)
    assert core.barrier(alphas, np.array([9.0, 1.0, 0.5, 2.0, 9.0])) == 0.0


def test_config_needs_exactly_one_source() -> None:
    raw = {"blobs": None, "mnist": None, "clusters": [2], "std_factor": 2.0}
    with pytest.raises(ParamsError, match="exactly one"):
        build(DataConfig, raw, "hessian.mini.data")


SEEDS = 3


def _metrics(**over: tuple[float, ...]) -> Metrics:
    """Three seeds of a grid with losses mse/ce, k2/k5 at widths 8/16, the std×2 variants at
    width 8; every relation holds unless ``over`` replaces a metric's per-seed values."""
    vals: dict[str, tuple[float, ...]] = {}
    jitter = (0.0, 0.004, -0.003)
    for loss in ("mse", "ce"):
        for data, lam in (("k2", 1.0), ("k5", 2.0), ("k2_std2", 3.0), ("k5_std2", 4.0)):
            widths = (8,) if data.endswith("_std2") else (8, 16)
            for i, w in enumerate(widths):
                cell = f"{loss}/{data}/w{w}"
                vals[f"bulk/{cell}"] = tuple(0.5 + 0.1 * i + j for j in jitter)
                vals[f"overlap/{cell}"] = tuple(0.99 + j / 2 for j in jitter)
                vals[f"overlap_dim/{cell}"] = (2.0,) * SEEDS
                vals[f"lambda1/{cell}"] = tuple(lam * (1 + j) for j in jitter)
                vals[f"outliers_gap/{cell}"] = (2.0,) * SEEDS
    vals["sblb/barrier_over_init"] = (0.01, 0.02, 0.015)
    vals["sblb/barrier"] = (0.01, 0.02, 0.015)
    vals["sblb/init_loss"] = (1.0,) * SEEDS
    vals.update(over)
    return Metrics(vals)


def _check(claim: str) -> Callable[[Metrics], ClaimResult]:
    return {c.id: c.check for c in hs_study.CLAIMS}[claim]


def test_claims_hold_on_good_metrics() -> None:
    for claim in hs_study.CLAIMS:
        assert claim.check(_metrics()).verdict == "holds", claim.id


@pytest.mark.parametrize(
    ("claim", "over"),
    [
        ("bulk_grows_with_width", {"bulk/ce/k5/w16": (0.4, 0.41, 0.39)}),
        ("outliers_from_gauss_newton", {"overlap/ce/k2_std2/w8": (0.9, 0.91, 0.89)}),
        # one of the six comparisons moves the bulk by 20 pts: (c) needs every comparison
        ("data_moves_outliers_not_bulk", {"bulk/mse/k5_std2/w8": (0.7, 0.71, 0.69)}),
        # (d) needs every seed: one seed's barrier is above 5 % of the initial loss
        ("sb_lb_no_barrier", {"sblb/barrier_over_init": (0.01, 0.01, 0.2)}),
    ],
)
def test_claims_fail_when_one_part_fails(claim: str, over: dict) -> None:
    assert _check(claim)(_metrics(**over)).verdict == "does not hold"


def test_unchanged_outliers_fail_c_and_straddling_bulk_is_inconclusive() -> None:
    same = {"lambda1/ce/k2_std2/w8": (1.0, 1.0, 1.0)}  # λ₁ and the count as for k2
    assert _check("data_moves_outliers_not_bulk")(_metrics(**same)).verdict == "does not hold"
    straddle = {"bulk/ce/k5/w16": (0.7, 0.45, 0.6)}
    assert _check("bulk_grows_with_width")(_metrics(**straddle)).verdict == "inconclusive"


def _idx_gz(path: Path, array: np.ndarray, magic: int) -> str:
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_full_data_step_reads_mnist_idx_checked_by_md5(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    rng = np.random.default_rng(0)
    md5 = {
        hs_study.MNIST_FILES[0]: _idx_gz(
            mirror / hs_study.MNIST_FILES[0],
            rng.integers(0, 256, size=(12, 28, 28)),
            IMAGES_MAGIC,
        ),
        hs_study.MNIST_FILES[1]: _idx_gz(
            mirror / hs_study.MNIST_FILES[1], rng.integers(0, 10, size=12), LABELS_MAGIC
        ),
    }
    raw = {
        "blobs": None,
        "mnist": {"url": mirror.as_uri() + "/", "md5": md5, "n": 10},
        "clusters": [10],
        "std_factor": 2.0,
    }
    out = tmp_path / "out"
    out.mkdir()
    ctx = StepContext(
        study=hs_study.STUDY,
        step=hs_study.STUDY.step("data"),
        cfg=SimpleNamespace(data=build(DataConfig, raw, "hessian.full.data")),
        lab=None,  # type: ignore[arg-type]
        root=tmp_path,
        out=out,
        inputs={},
        device=torch.device("cpu"),
        progress=lambda msg: None,
    )
    hs_study.data(ctx)
    arrays, _ = load_tensors(out / "data.safetensors", study="hessian", kind="dataset")
    assert arrays["k10/x"].shape == (10, 784) and arrays["k10/y"].shape == (10,)
    assert [p.name for p in out.iterdir()] == ["data.safetensors"]  # downloads removed
    raw["mnist"]["md5"] = {**md5, hs_study.MNIST_FILES[1]: "0" * 32}
    ctx.cfg.data = build(DataConfig, raw, "hessian.full.data")
    with pytest.raises(DownloadError, match="md5"):
        hs_study.data(ctx)


def test_curves_average_seeds_and_leave_missing_losses_empty() -> None:
    cfg = SimpleNamespace(
        data=SimpleNamespace(clusters=[2, 4]),
        model=SimpleNamespace(widths=[20, 10]),
        eval=SimpleNamespace(alphas=[0.0, 0.5, 1.0]),
    )
    metrics = {
        f"bulk/mse/k{k}/w{w}": [w / 100 + k / 1000, w / 100 + k / 1000 + 0.01]
        for k in (2, 4)
        for w in (10, 20)
    }
    lines = [np.array([1.0, 2.0, 1.0]), np.array([1.0, 4.0, 3.0])]
    curves = hs_study.hessian_curves(cfg, metrics, lines)  # type: ignore[arg-type]
    assert sorted(curves) == sorted(c.name for c in hs_study.STUDY.curves)
    for curve in hs_study.STUDY.curves:
        assert all(set(r) == {curve.x, *curve.ys} for r in curves[curve.name])
    bulk = curves["bulk_vs_width"]
    assert [r["width"] for r in bulk] == [10.0, 20.0]
    assert bulk[0]["mse"] == pytest.approx(0.1 + 0.003 + 0.005)
    assert all(np.isnan(r["ce"]) for r in bulk)
    assert [r["loss"] for r in curves["sblb_line"]] == [1.0, 3.0, 2.0]
