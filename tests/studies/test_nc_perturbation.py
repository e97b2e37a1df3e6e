"""Tests of the nc_perturbation study (Tirer, Huang & Niles-Weed, arXiv:2210.16658)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from subspacelab.api import Metrics
from subspacelab.config import ParamsError, build
from subspacelab.probes import collapse as nc
from subspacelab.studies.nc_perturbation import core
from subspacelab.studies.nc_perturbation import study as ncp
from subspacelab.studies.nc_perturbation.config import BackboneConfig


def _problem() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    means, e, y = core.near_collapse(3, 6, 5, 0)
    h0 = means[:, y] + 0.3 * e * 10
    return h0, nn.functional.one_hot(y, 3).T.double(), y


def test_solution_is_stationary_and_a_minimum() -> None:
    h0, y1h, y = _problem()
    beta, lam = 0.5, 1e-2
    h, w = core.solve(h0, y1h, beta, lam, iters=2000, tol=1e-13)
    torch.testing.assert_close(h, core.h_step(w, y1h, h0, beta))
    torch.testing.assert_close(w, core.central_w(h, y1h, lam))
    base = core.objective(h, w, y1h, h0, beta, lam)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        dh = 1e-4 * torch.randn(h.shape, generator=g, dtype=torch.float64)
        assert core.objective(h + dh, w, y1h, h0, beta, lam) >= base
    assert nc.nc1(h.T, y, 3) < nc.nc1(h0.T, y, 3)


def test_flow_decreases_nc1_and_first_order_is_quadratic() -> None:
    h0, y1h, y = _problem()
    flow = core.central_flow(h0, y1h, y, 0.5, 1e-2, steps=50, step_frac=0.1)
    assert flow[-1] < flow[0]
    means, e, ys = core.near_collapse(3, 6, 5, 0)
    errs = core.first_order_errors(
        means, e, ys, 1.0, 1e-2, [1e-1, 1e-2], iters=2000, tol=1e-14, delta=1e-5
    )
    assert core.loglog_slope([1e-1, 1e-2], errs) == pytest.approx(2.0, abs=0.2)
    assert core.loglog_slope([1.0, 10.0], [3.0, 300.0]) == pytest.approx(2.0)


def test_backbone_and_config_error() -> None:
    net = core.Backbone(5, 4, 3, 2)
    assert len(net.block_features(torch.zeros(2, 5))) == 3
    raw = {
        "arch": "mlp",
        "width": 4,
        "blocks": 2,
        "h0_block": 2,
        "epochs": 1,
        "lr": 0.1,
        "weight_decay": 0.0,
        "batch_size": 4,
    }
    with pytest.raises(ParamsError, match="h0_block"):
        build(BackboneConfig, raw, "nc_perturbation.mini.backbone")
    with pytest.raises(ParamsError, match=r"blocks.*4 with width 64 for resnet18"):
        build(BackboneConfig, {**raw, "arch": "resnet18"}, "nc_perturbation.full.backbone")


def test_full_profile_resnet18_blocks_and_batched_features() -> None:
    torch.manual_seed(0)
    net = core.make_backbone("resnet18", (4, 3, 32, 32), 64, 4, 10)
    assert isinstance(net, core.ResNet18)
    assert sum(p.numel() for p in net.parameters()) == 11_173_962  # CIFAR ResNet-18, 10 classes
    x = torch.randn(5, 3, 32, 32)
    feats = core.block_features_batched(net, x, torch.device("cpu"), batch=2)
    assert [tuple(f.shape) for f in feats] == [(5, 64), (5, 128), (5, 256), (5, 512)]
    with torch.no_grad():
        whole = net.block_features(x)
    for a, b in zip(feats, whole, strict=True):
        torch.testing.assert_close(a, b)
    assert net(x).shape == (5, 10)
    mlp = core.make_backbone("mlp", (7, 2, 3), 4, 2, 3)
    assert isinstance(mlp, core.Backbone) and mlp(torch.zeros(7, 2, 3)).shape == (7, 3)


def _metrics(
    *,
    bump: float = 0.0,
    flow: tuple[float, ...] = (-1e-3, -1e-3, -1e-3),
    half: tuple[float, ...] = (-1e-3, -1e-3, -1e-3),
    slope: tuple[float, ...] = (2.0, 2.01, 1.98),
    model: tuple[float, ...] = (2.0, 2.1, 1.9),
) -> Metrics:
    """Three seeds; ``bump`` is added to seed 2's ratio at β = 1 (a grid point above 1 when
    large); next/last block NC1 are 3 and 1 on every seed."""
    vals: dict[str, list[float]] = {}
    for lam in (1e-3, 1e-2):
        for beta, r in zip((0.01, 0.1, 1.0, 100.0), (0.5, 0.6, 0.9, 0.995), strict=True):
            vals[f"ratio/beta{beta:g}/lam{lam:g}"] = [r, r, r + (bump if beta == 1.0 else 0)]
    vals["flow/max_rel_increase"] = list(flow)
    vals["flow_half/max_rel_increase"] = list(half)
    vals["flow/nc1_ratio_end"] = [0.5] * 3
    vals["flow/end_vs_half"] = [1e-4] * 3
    vals["first_order/slope"] = list(slope)
    vals["depth/nc1_model"] = list(model)
    vals["depth/nc1_next_block"] = [3.0] * 3
    vals["depth/nc1_last_block"] = [1.0] * 3
    vals["depth/nc1_h0"] = [5.0] * 3
    return Metrics(vals)


def test_claims_hold_on_good_metrics() -> None:
    for claim in ncp.CLAIMS:
        assert claim.check(_metrics()).verdict == "holds", claim.id


@pytest.mark.parametrize(
    ("claim", "bad"),
    [
        ("r1_nc1_decreases", {"bump": 0.2}),  # one grid point of one seed above 1
        ("r2_beta_trend", {"bump": 0.1}),  # the ratio at β = 1 overtakes β = 100 on one seed
        ("r3_flow_monotone", {"flow": (-1e-3, 2e-6, -1e-3)}),  # one seed beyond 1e-6 × NC1
        ("r3_flow_monotone", {"half": (-1e-3, -1e-3, 5e-6)}),  # the step-halving check
        ("r4_first_order", {"slope": (2.0, 2.0, 1.5)}),
        ("r5_depthwise", {"model": (0.5, 0.6, 0.4)}),  # below both blocks: no fallback now
    ],
)
def test_claims_fail_when_their_relation_fails(claim: str, bad: dict) -> None:
    check = {c.id: c.check for c in ncp.CLAIMS}[claim]
    assert check(_metrics(**bad)).verdict == "does not hold"


def test_relative_slack_and_depthwise_straddle() -> None:
    check = {c.id: c.check for c in ncp.CLAIMS}
    # an increase of 5e-7 × NC1 is numerical (the old absolute 1e-9 slack read NC1 scale)
    assert check["r3_flow_monotone"](_metrics(flow=(5e-7, 0.0, -1.0))).verdict == "holds"
    # seeds on both sides of the next block's NC1: the interval straddles 0
    straddle = _metrics(model=(2.0, 3.5, 2.7))
    assert check["r5_depthwise"](straddle).verdict == "inconclusive"
    assert core.max_relative_increase([2.0, 1.0, 1.5, 1.0]) == pytest.approx(0.5)


def test_backbone_mse_loss_known_value() -> None:
    net = nn.Identity()
    target = torch.eye(2)
    assert float(core.mse_loss(net, (target, target))) == 0.0
    assert float(core.mse_loss(net, (torch.zeros(2, 2), target))) == 0.5


def test_full_profile_chain_on_a_tiny_cifar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from subspacelab import registry
    from subspacelab.config import profile_section
    from subspacelab.data import cifar
    from subspacelab.data.download import Resource
    from subspacelab.io import load_tensors
    from subspacelab.runner import run_step
    from tests.data.test_cifar import _batch, _write_archive
    from tests.helpers import REPO, make_workspace

    monkeypatch.setattr(registry, "_REGISTRY", {ncp.SLUG: ncp.STUDY})
    rng = np.random.default_rng(0)
    members: dict[str, object] = {}
    for i in range(1, 6):  # 4 images a batch, labels cycling so every class appears twice
        members[f"data_batch_{i}"] = {
            **_batch(rng, 4, b"labels", 10),
            b"labels": [(4 * (i - 1) + j) % 10 for j in range(4)],
        }
    members["test_batch"] = _batch(rng, 2, b"labels", 10)
    members["batches.meta"] = {b"label_names": [b"c"] * 10, b"num_vis": 3072}
    archive = _write_archive(tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py", members)
    md5 = hashlib.md5(archive.read_bytes(), usedforsecurity=False).hexdigest()
    monkeypatch.setitem(
        cifar.CIFAR_RESOURCES, "cifar10", Resource(archive.as_uri(), archive.name, md5=md5)
    )
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    section = params[ncp.SLUG]
    # full inherits from mini: its values written out, then shrunk
    full = section["full"] = profile_section(section, ncp.SLUG, "full", ncp.STUDY.config)
    full["backbone"].update(epochs=1, batch_size=8)
    full["model"].update(betas=[0.1, 1.0], lam_ws=[0.001], iters=5, flow_steps=3, eps=[0.1, 0.01])
    full["model"].update(synth_d=6, synth_per_class=3)
    lab = {**params["lab"], "profile": "full", "device": "cpu"}
    root = make_workspace(tmp_path / "ws", {"lab": lab, ncp.SLUG: section})
    for step in ncp.STUDY.steps:
        run_step(root, ncp.SLUG, step.name)
    data, _ = load_tensors(
        root / "data" / ncp.SLUG / "data" / "train.safetensors", study=ncp.SLUG, kind="dataset"
    )
    assert data["x"].shape == (20, 3, 32, 32)  # images, not flattened, for the ResNet
    assert not list((root / "data" / ncp.SLUG / "data").glob("*.tar.gz"))  # archive dropped
    state, _ = load_tensors(
        root / "models" / ncp.SLUG / "fit" / "backbone_s0.safetensors", study=ncp.SLUG
    )
    assert state["blocks.3.1.body.3.weight"].shape == (512, 512, 3, 3)
    assert (root / "reports" / ncp.SLUG / "claims.json").is_file()


def test_curves_average_seeds_and_align_the_half_step_flow() -> None:
    grids = [np.array([[0.2, 0.4], [0.9, 0.7]]), np.array([[0.4, 0.6], [0.9, 0.9]])]
    flows = [[3.0, 2.0, 1.0], [5.0, 4.0, 3.0]]
    halves = [[3.0, 9.0, 2.5, 9.0, 1.5], [5.0, 9.0, 4.5, 9.0, 3.5]]
    curves = ncp.nc_curves([0.1, 10.0], grids, flows, halves)
    assert sorted(curves) == sorted(c.name for c in ncp.STUDY.curves)
    for curve in ncp.STUDY.curves:
        assert all(set(r) == {curve.x, *curve.ys} for r in curves[curve.name])
    first = curves["ratio_vs_beta"][0]
    assert (first["beta"], first["min"], first["max"]) == pytest.approx((0.1, 0.3, 0.5))
    assert first["mean"] == pytest.approx(0.4)
    flow = curves["central_flow"]
    assert [r["nc1"] for r in flow] == [4.0, 3.0, 2.0]
    assert [r["nc1_half_step"] for r in flow] == [4.0, 3.5, 2.5]
