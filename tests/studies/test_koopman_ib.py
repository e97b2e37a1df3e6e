"""koopman_ib (arXiv 2510.13025): losses with known answers, joint training, loader, claims."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from subspacelab.config import ParamsError, study_config
from subspacelab.nets.training import LocalEnv
from subspacelab.registry import Metrics
from subspacelab.studies.koopman_ib import core, study
from subspacelab.studies.koopman_ib.config import KoopmanIBConfig
from subspacelab.studies.koopman_ib.study import STUDY
from tests.helpers import REPO

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
SLUG = "koopman_ib"


def _mini() -> KoopmanIBConfig:
    return study_config(KoopmanIBConfig, PARAMS, SLUG, "mini")


# ------------------------------------------------------------------------------------ losses


def test_koopman_matrix_recovers_linear_latent_dynamics_in_both_forms() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.tensor([[0.9, 0.2, 0.0], [-0.2, 0.9, 0.0], [0.0, 0.0, 0.5]], dtype=torch.float64)
    z0 = torch.randn(2, 4, 3, generator=gen, dtype=torch.float64)
    steps = [z0]
    for _ in range(12):
        steps.append(steps[-1] @ a)
    z = torch.stack(steps, dim=2)  # (M=2, B=4, T+1=13, H=3): exact z_{t+1} = z_t A
    k = core.koopman_matrix(z, ridge=1e-10)
    torch.testing.assert_close(k, a.expand(2, 3, 3), atol=1e-6, rtol=0)
    # T < H: the push-through form equals the direct ridge solution
    short = torch.randn(1, 3, 3, 5, generator=gen, dtype=torch.float64)
    zx, zy = short[:, :, :-1], short[:, :, 1:]
    direct = torch.linalg.solve(
        zx.transpose(-1, -2) @ zx + 0.1 * torch.eye(5, dtype=torch.float64),
        zx.transpose(-1, -2) @ zy,
    ).mean(1)
    torch.testing.assert_close(core.koopman_matrix(short, 0.1), direct)
    assert not core.koopman_matrix(z.requires_grad_(), 0.1).requires_grad  # detached (§3)


def _infonce_loop(z: torch.Tensor, k: int, tau: float) -> float:
    """The InfoNCE of one sequence written out term by term."""
    zn = torch.nn.functional.normalize(z, dim=-1)
    t = len(z)
    losses = []
    for n in range(k, t - k):
        pos = sum(math.exp(float(zn[n] @ zn[j]) / tau) for j in range(t) if 1 <= abs(j - n) <= k)
        neg = sum(math.exp(float(zn[n] @ zn[j]) / tau) for j in range(t) if abs(j - n) > k)
        losses.append(-math.log(pos / (pos + neg)))
    return float(np.mean(losses))


def test_temporal_infonce_matches_the_written_out_loss() -> None:
    z = torch.randn(2, 3, 10, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got = core.temporal_infonce(z, k=2, tau=0.5)
    want = [np.mean([_infonce_loop(z[m, b], 2, 0.5) for b in range(3)]) for m in range(2)]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10)
    with pytest.raises(ValueError, match="T > 2k"):
        core.temporal_infonce(z[:, :, :6], k=3, tau=0.5)


def test_entropy_and_effective_rank_known_values() -> None:
    # ±1 on each axis: isotropic covariance -> S = log H, exp(S) = H
    iso = torch.cat([torch.eye(4), -torch.eye(4)])[None].double()
    assert core.von_neumann_entropy(iso).item() == pytest.approx(math.log(4))
    assert core.effective_rank(iso).item() == pytest.approx(4.0)
    # variance on two axes only, equal: exp(S) = 2; one axis: 1
    two = torch.tensor([[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]])[None]
    assert core.effective_rank(two).item() == pytest.approx(2.0, abs=1e-6)
    one = torch.tensor([[1.0, 0], [-1, 0], [2, 0]])[None]
    assert core.effective_rank(one).item() == pytest.approx(1.0, abs=1e-6)


def test_variant_weights_carry_the_two_signs() -> None:
    w = core.variant_weights(["kae", "mi", "mi_s_paper", "mi_s_code"], alpha=2.0, beta=0.1)
    assert w.alpha.tolist() == [0.0, 2.0, 2.0, 2.0]
    assert w.entropy.tolist() == pytest.approx([0.0, 0.0, -0.1, 0.1])  # paper: −β·S; code: +β·S
    with pytest.raises(ValueError, match="unknown variants"):
        core.variant_weights(["vae"], 1.0, 1.0)


def test_clip_per_model_scales_each_model_alone() -> None:
    p = torch.zeros(2, 3, requires_grad=True)
    p.grad = torch.tensor([[6.0, 8.0, 0.0], [0.3, 0.4, 0.0]])  # norms 10 and 0.5
    core.clip_per_model([p], 1.0)
    torch.testing.assert_close(p.grad.norm(dim=1), torch.tensor([1.0, 0.5]), atol=1e-5, rtol=0)


def test_batched_mlp_models_are_independent_and_seeded() -> None:
    net = core.BatchedMLP([3, 5, 2], [7, 7, 8])
    assert net.n_models == 3
    x = torch.randn(1, 4, 3).expand(3, 4, 3)
    y = net(x)
    torch.testing.assert_close(y[0], y[1])
    assert not torch.allclose(y[0], y[2])
    w0, b0, w1, b1 = net.weights[0][2], net.biases[0][2], net.weights[1][2], net.biases[1][2]
    torch.testing.assert_close(y[2], torch.tanh(x[2] @ w0 + b0) @ w1 + b1)


def test_rollout_with_identity_nets_is_the_matrix_power() -> None:
    eye = torch.nn.Identity()
    kmat = torch.tensor([[[0.5, 0.0], [0.0, -1.0]]])
    out = core.rollout(eye, eye, kmat, torch.tensor([[[1.0, 2.0]]]), horizon=3)
    torch.testing.assert_close(out[0, 0], torch.tensor([[0.5, -2.0], [0.25, 2.0], [0.125, -2.0]]))
    target = np.random.default_rng(0).standard_normal((5, 4, 3))
    total, per_h = core.rollout_errors(target, target)
    assert total == 0.0 and not per_h.any()
    pred = target + 0.1
    total, per_h = core.rollout_errors(pred, target)
    assert total == pytest.approx(float(np.sqrt((per_h**2).mean())))


def test_joint_training_equals_training_alone() -> None:
    """Two seeds' models trained in one module end where each ends trained alone (per-model
    clipping and per-element Adam: nothing couples them)."""
    cfg = _mini()
    cfg.train.epochs, cfg.train.batch, cfg.eval.horizon = 2, 4, 5
    cfg.model.hidden = [6]
    rng = np.random.default_rng(0)
    worlds = [
        {
            "windows": torch.from_numpy(rng.standard_normal((8, 17, 3)).astype(np.float32)),
            "test": torch.from_numpy(rng.standard_normal((3, 20, 3)).astype(np.float32)),
            "eig_re": torch.zeros(0, dtype=torch.float64),
            "eig_im": torch.zeros(0, dtype=torch.float64),
        }
        for _ in range(2)
    ]
    # a large learning rate and a small clip make the clipping bite
    cfg.train.lr, cfg.train.clip = 0.05, 0.01
    # the loader's shuffle follows the first seed: the lone model is that seed's
    both, _ = study.train_and_score(LocalEnv(), "slow_manifold", worlds, [4, 3], 2, cfg, "both")
    alone, _ = study.train_and_score(LocalEnv(), "slow_manifold", worlds[:1], [4], 2, cfg, "one")
    assert len(both) == 8 and len(alone) == 4
    for a, b in zip(alone, both[:4], strict=True):
        assert a["variant"] == b["variant"]
        assert a["nrmse"] == pytest.approx(b["nrmse"], rel=1e-4)
        assert a["erank"] == pytest.approx(b["erank"], rel=1e-4)


# ------------------------------------------------------------------------------ data, config


def test_split_and_window_normalises_with_train_statistics() -> None:
    cfg = _mini()
    obs = np.random.default_rng(0).standard_normal((10, 30, 2)) * 3 + 5
    windows, test, mean, std = study.split_and_window(obs, cfg.data, seed=1)
    assert windows.shape == (8 * cfg.data.windows_per_traj, cfg.data.window + 1, 2)
    assert test.shape == (2, 30, 2)
    order = np.random.default_rng(1).permutation(10)
    np.testing.assert_allclose(test, (obs[order[8:]] - mean) / std, rtol=1e-5)
    train = (obs[order[:8]] - mean) / std
    np.testing.assert_allclose(train.mean(axis=(0, 1)), 0.0, atol=1e-9)
    # every window is a run of consecutive normalised samples of a train trajectory
    for w in windows:
        hit = [
            i
            for i in range(8)
            for s in range(30 - cfg.data.window)
            if np.allclose(train[i, s : s + cfg.data.window + 1], w, atol=1e-5)
        ]
        assert hit


def test_load_fields_reads_the_export_and_refuses_bad_files(tmp_path: Path) -> None:
    good = tmp_path / "cyl.npz"
    fields = np.random.default_rng(0).standard_normal((2, 5, 2, 64, 64)).astype(np.float32)
    np.savez(good, fields=fields)
    np.testing.assert_array_equal(study.load_fields(good), fields)
    np.savez(tmp_path / "nokey.npz", u=fields)
    with pytest.raises(ValueError, match="no 'fields'"):
        study.load_fields(tmp_path / "nokey.npz")
    np.savez(tmp_path / "shape.npz", fields=fields[..., :32])
    with pytest.raises(ValueError, match="64, 64"):
        study.load_fields(tmp_path / "shape.npz")


def test_conv_nets_map_fields_to_the_latent_and_back() -> None:
    enc, dec = core.ConvEncoder(2, 16), core.ConvDecoder(2, 16)
    z = enc(torch.randn(3, 2, 64, 64))
    assert z.shape == (3, 16) and dec(z).shape == (3, 2, 64, 64)
    stacked = core.StackedNets([enc, core.ConvEncoder(2, 16)])
    assert stacked(torch.randn(2, 3, 2, 64, 64)).shape == (2, 3, 16)


def test_config_refuses_bad_combinations() -> None:
    params = copy.deepcopy(PARAMS)
    params[SLUG]["mini"]["train"]["k"] = 8
    with pytest.raises(ParamsError, match="T > 2k"):
        study_config(KoopmanIBConfig, params, SLUG, "mini")
    params = copy.deepcopy(PARAMS)
    params[SLUG]["mini"]["data"]["systems"] = ["slow_manifold", "cylinder"]
    with pytest.raises(ParamsError, match="pendulum"):
        study_config(KoopmanIBConfig, params, SLUG, "mini")
    full = study_config(KoopmanIBConfig, PARAMS, SLUG, "full")
    assert full.data.unpinned() == {"cylinder_sha256": "the SHA-256 of cfdbench_cylinder.npz"}


# ------------------------------------------------------------------------------------ claims


def _metrics(over: dict[str, list[float]] | None = None) -> Metrics:
    base = {}
    for sys in ("slow_manifold", "pendulum"):
        base |= {
            f"{sys}/kae/nrmse": [0.50, 0.52, 0.48, 0.51, 0.49],
            f"{sys}/mi/nrmse": [0.40, 0.42, 0.39, 0.41, 0.40],
            f"{sys}/mi_s_paper/nrmse": [0.30, 0.32, 0.31, 0.29, 0.30],
            f"{sys}/kae/erank": [2.0, 2.1, 1.9, 2.0, 2.05],
            f"{sys}/mi/erank": [1.2, 1.25, 1.15, 1.2, 1.22],
            f"{sys}/mi_s_paper/erank": [1.8, 1.85, 1.9, 1.75, 1.8],
            f"{sys}/mi_s_code/erank": [1.02, 1.05, 1.01, 1.03, 1.02],
        }
    base |= {
        "slow_manifold_small/mi_s_paper/top_eig_err": [0.01, 0.02, 0.015, 0.012, 0.018],
        "slow_manifold_small/kae/top_eig_err": [0.05, 0.06, 0.05, 0.04, 0.05],
        "slow_manifold_small/mi_s_code/top_eig_err": [0.1, 0.1, 0.1, 0.1, 0.1],
    }
    return Metrics(base | (over or {}))


def test_claims_hold_fail_and_are_inconclusive() -> None:
    checks = {c.id: c.check for c in STUDY.claims}
    good = _metrics()
    for cid in checks:
        assert checks[cid](good).verdict == "holds", cid
    bad = _metrics(
        {
            "slow_manifold/mi_s_paper/nrmse": [0.50, 0.52, 0.49, 0.50, 0.51],
            "pendulum/mi_s_code/erank": [1.5, 1.55, 1.6, 1.45, 1.5],  # no collapse with +β·S
            "slow_manifold_small/mi_s_paper/top_eig_err": [0.2, 0.25, 0.22, 0.21, 0.2],
        }
    )
    assert checks["r1_accuracy_slow_manifold"](bad).verdict == "does not hold"
    assert checks["r2_rank_pendulum"](bad).verdict == "does not hold"
    assert checks["r3_eigenvalues"](bad).verdict == "does not hold"
    assert checks["r1_accuracy_pendulum"](bad).verdict == "holds"
    noisy = _metrics({"slow_manifold/mi_s_paper/nrmse": [0.2, 0.6, 0.3, 0.55, 0.4]})
    assert checks["r1_accuracy_slow_manifold"](noisy).verdict == "inconclusive"
    one = Metrics({k: v.values[:1] for k, v in good.items()})
    for cid in checks:
        assert checks[cid](one).verdict == "inconclusive", cid


def test_oracle_k_is_exact_without_ridge_and_contracts_with_it() -> None:
    from subspacelab.worlds import dynamics as dyn

    w = dyn.slow_manifold(60, 64, mu=-0.05, lam=-1.0, dt=0.1, seed=0)
    win = study.oracle_windows(w.states, 16, seed=0)
    assert win.shape == (60, 17, 3)
    np.testing.assert_allclose(win[..., 2], win[..., 0] ** 2)
    errs = study.oracle_errors(torch.from_numpy(win), w.eigenvalues, ridge=0.1)
    assert errs["oracle_noridge/spectral_radius"] == pytest.approx(np.exp(-0.005), abs=2e-3)
    assert errs["oracle_noridge/top_eig_err"] < 0.05
    assert errs["oracle/spectral_radius"] < 0.9 and errs["oracle/top_eig_err"] > 0.1
