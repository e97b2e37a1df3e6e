"""grbf_active: the batched GRBFNN against a direct evaluation, its spectrum and importance, the
UCI table reader, the pinned full data step and every claim decided three ways."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from subspacelab.config import ParamsError
from subspacelab.data.download import DownloadError
from subspacelab.io import load_tensors, sha256_file
from subspacelab.registry import Metrics
from subspacelab.runner import run_step
from subspacelab.studies.grbf_active import core
from subspacelab.studies.grbf_active.study import STUDY
from subspacelab.studies.grbf_active.tables import TABLES, TableSpec, read_table
from tests.helpers import make_workspace, tiny_params


def test_stack_matches_the_papers_formula_network_by_network() -> None:
    centres = torch.randn(3, 5, 4)
    net = core.GRBFStack(centres, 2, [0, 1, 2])
    x = torch.randn(3, 7, 4)
    out = net(x)
    p = net.precision()
    for s in range(3):
        diff = x[s][:, None, :] - centres[s][None]  # (B, K, d)
        phi = torch.exp(-0.5 * torch.einsum("bkd,de,bke->bk", diff, p[s], diff))
        torch.testing.assert_close(out[s], phi @ net.weights[s], atol=1e-5, rtol=1e-5)
    lower = net.lower()
    assert torch.all(torch.triu(lower, diagonal=1) == 0)
    assert torch.linalg.eigvalsh(p).min() > -1e-6  # PSD by construction


def test_each_network_is_seeded_alone() -> None:
    centres = torch.randn(2, 3, 4)
    a = core.GRBFStack(centres, 1, [5, 6])
    b = core.GRBFStack(centres[1:], 1, [6])
    torch.testing.assert_close(a.vech[1], b.vech[0])
    assert a.vech[1].detach().std().item() == pytest.approx(0.5, abs=0.35)  # N(0, 1/d), d = 4
    with pytest.raises(ValueError, match="one seed per network"):
        core.GRBFStack(centres, 1, [0])


def test_losses_are_per_network_and_penalty_is_a_norm() -> None:
    net = core.GRBFStack(torch.zeros(2, 1, 3), 1, [0, 1])
    with torch.no_grad():
        net.vech.zero_()
        net.weights.fill_(2.0)  # φ ≡ 1 at P = 0: f ≡ 2
    with torch.no_grad():
        out = net(torch.zeros(2, 4, 3))
        pen = net.penalty(1.0, 0.5)
    np.testing.assert_allclose(core.data_loss(out, torch.zeros(2, 4), "regression"), [4, 4])
    bce = core.data_loss(out, torch.ones(2, 4), "binary")
    np.testing.assert_allclose(bce, [math.log1p(math.exp(-2))] * 2, rtol=1e-6)
    np.testing.assert_allclose(pen, [1.0, 1.0])  # 0.5 · ‖(2)‖₂
    with pytest.raises(ValueError, match="unknown task"):
        core.data_loss(out, torch.zeros(2, 4), "ranking")


def test_spectrum_and_importance_known_answer() -> None:
    p = np.diag([1.0, 3.0, 0.0])
    vals, vecs = core.spectrum(p)
    np.testing.assert_allclose(vals, [3.0, 1.0, 0.0])
    np.testing.assert_allclose(np.abs(vecs[:, 0]), [0, 1, 0])
    np.testing.assert_allclose(core.feature_importance(p), [0.25, 0.75, 0.0])
    with pytest.raises(ValueError, match="zero"):
        core.feature_importance(np.zeros((2, 2)))


def test_a_trained_stack_finds_a_one_dimensional_ridge() -> None:
    """y = tanh(x₁) on R³: a few hundred full-batch Adam steps put P's top eigenvector on e₁."""
    from subspacelab.nets.training import LocalEnv, LossModule, fit, full_batch_loader

    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 300, 3)).astype(np.float32)
    y = np.tanh(2 * x[..., 0])
    net = core.GRBFStack(torch.from_numpy(core.kmeans_centres(x[0], 6)[None]).float(), 1, [0])
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def loss(n: torch.nn.Module, _batch: object) -> torch.Tensor:
        return (core.data_loss(n(xt), yt, "regression") + n.penalty(1e-3, 0.0)).sum()

    fit(LocalEnv(), LossModule(net, loss, lr=0.03), full_batch_loader(steps=400), epochs=1)
    _, vecs = core.spectrum(net.precision().detach().numpy()[0])
    assert abs(vecs[0, 0]) > 0.95


def test_standardise_r2_and_top_m() -> None:
    a = np.array([[1.0, 5.0], [3.0, 5.0]])
    z, other = core.standardise(a, np.array([[2.0, 6.0]]))
    np.testing.assert_allclose(z, [[-1, 0], [1, 0]])
    np.testing.assert_allclose(other, [[0, 1]])  # a constant feature keeps std 1
    y = np.array([1.0, 2.0, 3.0])
    assert core.r2_score(y, y) == 1.0 and core.r2_score(y, np.full(3, 2.0)) == 0.0
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 5))
    lab = (x[:, 3] > 0).astype(int)
    good = core.top_m_accuracy(np.eye(5)[3], 1, x, lab, x, lab)
    bad = core.top_m_accuracy(np.eye(5)[0], 1, x, lab, x, lab)
    assert good > 0.95 and bad < 0.7


def test_read_table_formats(tmp_path: Path) -> None:
    ws = tmp_path / "w.dat"
    ws.write_text("800\t0\t0.3048\t71.3\t0.00266\t126.201\n1000  0 0.3 71.3 0.002 125.2\n\n")
    x, y = read_table(ws, TABLES["airfoil"])
    assert x.shape == (2, 5) and y.tolist() == [126.201, 125.2]
    csv = tmp_path / "wdbc.data"
    csv.write_text("842302,M,17.99,10.38\n842517,B,20.57,17.77\n")
    x, y = read_table(csv, TABLES["wdbc"])
    np.testing.assert_allclose(x, [[17.99, 10.38], [20.57, 17.77]])
    assert y.tolist() == [1.0, 0.0]
    bad = tmp_path / "bad.data"
    bad.write_text("1,2,g\n1,b\n")
    with pytest.raises(ValueError, match="line 2"):
        read_table(bad, TABLES["ionosphere"])
    one = tmp_path / "one.data"
    one.write_text("1,2,g\n3,4,g\n")
    with pytest.raises(ValueError, match="two labels"):
        read_table(one, TableSpec("file:///x/one.data", ",", -1, (), "g"))


def _ionosphere(path: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    with path.open("w") as fh:
        for i in range(n):
            feats = ",".join(f"{v:.4f}" for v in rng.uniform(-1, 1, 34))
            fh.write(f"{feats},{'g' if i % 2 else 'b'}\n")


def test_full_data_step_reads_only_pinned_tables(tmp_path: Path) -> None:
    params = tiny_params(["grbf_active"])
    full = params["grbf_active"]["full"]
    full["seeds"] = [0]
    full["data"].update(tables=["ionosphere"], ridge_d=6, ridge_train=50, ridge_test=20)
    params["lab"] = {**params["lab"], "profile": "full", "device": "cpu"}
    ws = make_workspace(tmp_path / "ws", params)
    placed = ws / "data/uci/ionosphere.data"
    placed.parent.mkdir(parents=True)
    _ionosphere(placed, 40)
    with pytest.raises(ParamsError, match=r"tables_sha256\.ionosphere"):  # before any compute
        run_step(ws, "grbf_active", "data")
    full["data"]["tables_sha256"] = {"ionosphere": "0" * 64}
    make_workspace(ws, params)
    with pytest.raises(DownloadError, match="mismatch"):
        run_step(ws, "grbf_active", "data")
    assert placed.is_file(), "a placed file is never deleted"
    full["data"]["tables_sha256"] = {"ionosphere": sha256_file(placed)}
    make_workspace(ws, params)
    run_step(ws, "grbf_active", "data")
    t, _ = load_tensors(ws / "data/grbf_active/data/tables.safetensors", study="grbf_active")
    assert tuple(t["ionosphere/x"].shape) == (40, 34)
    assert t["ionosphere/y"].sum().item() == 20


def _raw(shift: float, spread: float) -> dict[str, list[float]]:
    """Five seeds, every quantity ``shift`` past its claim's threshold (negative: short of it)
    with seed noise of size ``spread``."""
    noise = np.array([1.0, -1.0, 0.5, -0.5, 0.0]) * spread
    base = np.array([0.80, 0.82, 0.79, 0.81, 0.80])
    m = {
        "digits/test_acc": 0.97 + shift + noise,
        "digits/train_acc": np.ones(5),
        "digits/gamma1_share": 0.5 + shift + noise,
        "ridge/grbf/angle": 15.0 - 100 * shift + 100 * noise,
        "ridge/ll/angle": np.full(5, 5.0),
        "ridge/init/angle": np.full(5, 80.0),
        "ridge/grbf/recall": np.minimum(1.0, 1.0 + shift + noise),
        "ridge/grbf/r2": 0.9 + shift + noise,
        "ridge/rf/r2": 0.95 + 0.5 * noise,
        "sel/top8/grbf": base,
        "sel/top16/grbf": base + shift + noise,
        "sel/top16/median_baseline": base,
    }
    return {k: [float(v) for v in np.broadcast_to(x, 5)] for k, x in m.items()}


@pytest.mark.parametrize(
    ("shift", "spread", "verdict"),
    [(0.02, 0.001, "holds"), (-0.02, 0.001, "does not hold"), (0.001, 0.02, "inconclusive")],
)
def test_claims_three_ways(shift: float, spread: float, verdict: str) -> None:
    m = Metrics(_raw(shift, spread))
    for claim in STUDY.claims:
        assert claim.check(m).verdict == verdict, claim.id


def test_r2_claim_fails_on_the_paired_rf_gap_alone() -> None:
    m = _raw(0.02, 0.001)
    m["ridge/rf/r2"] = [v + 0.2 for v in m["ridge/grbf/r2"]]
    result = STUDY.claims[3].check(Metrics(m))
    assert result.verdict == "does not hold"
    assert [t.verdict for t in result.tests] == ["holds", "does not hold"]
