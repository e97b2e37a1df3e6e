"""optfs: ids with OOV, gates and their continuation, rewind, selectivity, claims three ways;
the full profile's data step on a tiny Criteo-format log."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from subspacelab.api import (
    DownloadError,
    Metrics,
    ParamsError,
    load_tensors,
    read_json,
    sha256_file,
)
from subspacelab.config import study_config
from subspacelab.nets.training import LocalEnv
from subspacelab.runner import run_step
from subspacelab.studies.optfs import core
from subspacelab.studies.optfs.config import OptFSConfig
from subspacelab.studies.optfs.study import STUDY
from tests.helpers import make_workspace, tiny_params


def _vocab() -> core.Vocabulary:
    x = np.array([[0, 1], [0, 1], [1, 2], [0, 1]])
    return core.build_vocabulary(x, [3, 4], min_count=2)


def test_rare_values_share_their_fields_oov_id() -> None:
    v = _vocab()
    assert v.n_features == 4 + 5
    ids = v.encode(np.array([[0, 1], [1, 2], [2, 3]]))
    assert ids.tolist() == [[0, 5], [3, 8], [3, 8]]  # 1 and 2 of field 0 are rare: OOV id 3
    assert v.field_of().tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1]


def _net(gate: str) -> core.GatedDeepFM:
    torch.manual_seed(0)
    v = _vocab()
    return core.GatedDeepFM(v.n_features, 2, 4, [8], gate, 0.5, v.field_of())


def test_gates_start_at_one_and_a_closed_gate_removes_the_value_everywhere() -> None:
    net = _net("value")
    torch.testing.assert_close(net.gates(), torch.ones(9))
    ids = torch.tensor([[0, 5], [3, 5]])
    with torch.no_grad():
        net.m[0] = -1.0  # close value 0 of field 0
        net.harden()
        out = net(ids)
        net.emb.weight[0] += 5.0  # its embedding and weight no longer matter
        net.lin.weight[0] += 5.0
        torch.testing.assert_close(net(ids), out)
    assert not net.kept()[0] and net.kept()[1:].all()


def test_field_gate_applies_to_every_value_of_the_field() -> None:
    net = _net("field")
    with torch.no_grad():
        net.m[1] = -0.1
    kept = net.kept()
    assert kept[:4].all() and not kept[4:].any()


def test_continuation_schedule_and_l0_surrogate() -> None:
    assert core.tau_at(0, 8, 200.0) == 1.0
    assert core.tau_at(7, 8, 200.0) == pytest.approx(200.0)
    net = _net("value")
    net.tau = 200.0
    # σ(100) = 1 per open gate
    assert float(net.l0_surrogate().detach()) == pytest.approx(9.0, abs=1e-6)


def test_selectivity_known_answer() -> None:
    kept = np.array([True, False, True, True])
    raw = np.array([[0, 0], [1, 1]])
    ids = np.array([[0, 2], [1, 3]])
    signal = (np.array([True, True]), np.array([False, False]))
    assert core.selectivity(kept, ids, raw, signal) == (0.5, 1.0)


def test_search_rewinds_to_the_checkpoint_and_learns_gates() -> None:
    from subspacelab.studies.optfs.lightning import search

    v = _vocab()
    rng = np.random.default_rng(0)
    ids = torch.from_numpy(v.encode(rng.integers(0, 3, size=(64, 2)) % [3, 4]))
    y = torch.from_numpy((rng.random(64) < 0.3).astype(np.float32))
    torch.manual_seed(0)
    net = core.GatedDeepFM(v.n_features, 2, 4, [8], "value", 0.5, v.field_of())
    start = {k: t.clone() for k, t in net.state_dict().items()}
    (snap,) = search(
        LocalEnv(), [net], [1e-2], ids, y, epochs=3, tau_final=10.0, rewind=0,
        lr=1e-2, l2=0.0, gate_lr=0.1, batch=16, seed=0,
    )  # fmt: skip
    for k in ("emb.weight", "m"):
        torch.testing.assert_close(snap[k], start[k])  # rewind 0: the initial weights
    assert not torch.equal(net.m.detach(), start["m"])
    assert net.tau == pytest.approx(10.0)


def test_retrain_trains_weights_and_leaves_the_fixed_gates() -> None:
    """The retrain's members hold their gates as parameters but read the hard mask: the gates
    get no gradient, so Adam (with L2) leaves them where the search put them."""
    from subspacelab.studies.optfs.lightning import retrain

    v = _vocab()
    rng = np.random.default_rng(0)
    ids = torch.from_numpy(v.encode(rng.integers(0, 3, size=(64, 2)) % [3, 4]))
    y = torch.from_numpy((rng.random(64) < 0.3).astype(np.float32))
    torch.manual_seed(0)
    nets = [
        core.GatedDeepFM(v.n_features, 2, 4, [8], g, 0.5, v.field_of()) for g in ("none", "value")
    ]
    nets[1].harden()
    gates, emb = nets[1].m.detach().clone(), nets[1].emb.weight.detach().clone()
    split = (ids[:32], y[:32].numpy())
    scores = retrain(
        LocalEnv(), nets, ids, y, split, split, epochs=2, lr=1e-2, l2=1e-3, batch=16, seed=0
    )
    assert [sorted(s) for s in scores] == [["epoch", "test_auc", "val_auc"]] * 2
    assert torch.equal(nets[1].m.detach(), gates)
    assert not torch.equal(nets[1].emb.weight.detach(), emb)


def _metrics(auc_gain: float, kept: float, sig: float, spread: float) -> Metrics:
    noise = np.array([1.0, -1.0, 0.3]) * spread
    base = 0.66 + np.array([0.01, -0.01, 0.0])
    return Metrics(
        {
            "backbone/auc": list(base),
            "optfs/auc": list(base + auc_gain + noise),
            "reinit/auc": list(base),
            "field/auc": list(base),
            "optfs/kept": list(kept + noise),
            "field/kept": list(0.5 + noise * 0),
            "optfs/signal_kept": list(sig + noise),
            "optfs/noise_kept": [0.3] * 3,
        }
    )


def test_claims_three_ways() -> None:
    good = _metrics(0.01, 0.1, 0.8, 0.001)
    assert [c.check(good).verdict for c in STUDY.claims] == ["holds"] * 4
    bad = _metrics(-0.02, 0.6, 0.35, 0.001)
    assert [c.check(bad).verdict for c in STUDY.claims] == ["does not hold"] * 4
    unsure = _metrics(0.001, 0.1, 0.8, 0.02)
    assert STUDY.claims[0].check(unsure).verdict == "inconclusive"
    assert STUDY.claims[3].check(unsure).verdict == "inconclusive"


def test_sweep_curves_one_row_per_lambda() -> None:
    from subspacelab.studies.optfs.study import sweep_curves

    lambdas = [1e-6, 1e-5]
    metrics = {"backbone/auc": [0.6, 0.62]}
    keys = ("optfs/auc", "optfs/kept", "optfs/signal_kept", "optfs/noise_kept", "reinit/auc",
            "field/auc", "field/kept")  # fmt: skip
    for i in range(2):
        for key in keys:
            arm, q = key.split("/")
            metrics[f"{arm}/l{i}/{q}"] = [0.1 * i, 0.1 * i + 0.2]
    curves = sweep_curves(metrics, lambdas)
    assert sorted(curves) == sorted(c.name for c in STUDY.curves)
    for curve in STUDY.curves:
        rows = curves[curve.name]
        assert [r["lambda"] for r in rows] == lambdas
        assert all(set(r) == {curve.x, *curve.ys} for r in rows)
    assert curves["auc_vs_lambda"][1]["optfs"] == pytest.approx(0.2)
    assert curves["auc_vs_lambda"][0]["backbone"] == pytest.approx(0.61)


# ------------------------------------------------------------------ full profile: a real log


def _criteo_line(i: int, c3: str) -> str:
    """Row i: I1 = i % 4 (other counts empty), C1 = i % 3, C2 = i (unique), C3 given."""
    ints = [str(i % 4)] + [""] * 12
    cats = [f"{i % 3:08x}", f"{i:08x}", c3] + [""] * 23
    return "\t".join([str(i % 2), *ints, *cats]) + "\n"


def _full_workspace(tmp_path: Path, pin: bool = True) -> tuple[Path, dict, Path]:
    """A full-profile workspace over a 320-row Criteo-format log (120/100/100) in which C3's
    value abc occurs once in training (row 5) and in every validation and test row."""
    params = tiny_params(["optfs"])
    full = params["optfs"]["full"]
    full["data"].update(n_train=120, n_val=100, n_test=100)
    full["model"] = {"dim": 4, "hidden": [8]}
    full["search"].update(lambdas=[1e-4, 1e-3], search_epochs=2, retrain_epochs=2, batch=64)
    params["lab"] = {**params["lab"], "profile": "full", "device": "cpu"}
    ws = make_workspace(tmp_path / "ws", params)
    placed = ws / "data/criteo/train.txt"
    placed.parent.mkdir(parents=True)
    placed.write_text(
        "".join(_criteo_line(i, "00000abc" if i == 5 or i >= 120 else "") for i in range(330))
    )
    if pin:
        full["data"]["real"]["log"]["sha256"] = sha256_file(placed)
        make_workspace(ws, params)
    return ws, params, placed


def test_full_data_step_refuses_an_unpinned_or_mismatched_log(tmp_path: Path) -> None:
    ws, params, placed = _full_workspace(tmp_path, pin=False)
    with pytest.raises(ParamsError, match=r"optfs\.full\.data\.real\.log\.sha256"):
        run_step(ws, "optfs", "data")
    params["optfs"]["full"]["data"]["real"]["log"]["sha256"] = "0" * 64
    make_workspace(ws, params)
    with pytest.raises(DownloadError, match="mismatch"):
        run_step(ws, "optfs", "data")
    assert placed.is_file(), "a hand-placed file is never deleted"
    assert not (ws / "data/optfs/data").exists()


def test_full_config_errors_name_the_key() -> None:
    params = tiny_params(["optfs"])
    full = params["optfs"]["full"]["data"]
    full["n_fields"] = 24
    with pytest.raises(ParamsError, match=r"optfs\.full\.data\.n_fields.*39, the criteo log"):
        study_config(OptFSConfig, params, "optfs", "full")
    full["n_fields"], full["real"]["source"] = 39, "kaggle"
    with pytest.raises(ParamsError, match=r"optfs\.full\.data\.real\.source"):
        study_config(OptFSConfig, params, "optfs", "full")
    full["real"]["source"], full["real"]["log"]["file"] = "criteo", ""
    with pytest.raises(ParamsError, match=r"optfs\.full\.data\.real\.log: .*log\.file"):
        study_config(OptFSConfig, params, "optfs", "full")


def test_full_data_step_maps_values_rare_in_training_to_the_oov_id(tmp_path: Path) -> None:
    ws, _, _ = _full_workspace(tmp_path)
    run_step(ws, "optfs", "data")
    out = ws / "data/optfs/data"
    t, _ = load_tensors(out / "log.safetensors", study="optfs")
    x, y = t["x"].numpy(), t["y"].numpy()
    assert x.shape == (320, 39) and sorted(t) == ["x", "y"]  # no signal truth
    assert y.tolist() == [float(i % 2) for i in range(320)]
    meta = read_json(out / "log.json")
    assert meta["splits"] == [120, 100, 100]
    # I1 buckets 2, 3, 4, 6 (+ OOV); I2..I13 only "missing"; C1 3 values; C2 none kept;
    # C3 the empty value only (abc is seen once in training); C4..C26 only empty
    assert meta["vocab"] == [5] + [2] * 12 + [4, 1, 2] + [2] * 23
    i = np.arange(320)
    assert x[:, 0].tolist() == [[1, 2, 3, 4][k % 4] for k in i]
    assert (x[:, 13] == i % 3 + 1).all()
    assert (x[:, 14] == 0).all()  # every C2 value occurs once: all OOV
    c3 = x[:, 15]
    assert c3[5] == 0 and (c3[120:] == 0).all()  # frequent in val/test, rare in training
    assert (np.delete(c3[:120], 5) == 1).all()


def test_full_chain_on_a_real_log_reports_selectivity_as_not_measured(tmp_path: Path) -> None:
    ws, _, _ = _full_workspace(tmp_path)
    for step in ("data", "fit", "evaluate"):
        run_step(ws, "optfs", step)
    claims = {c["id"]: c for c in read_json(ws / "reports/optfs/claims.json")}
    assert claims["R2"]["verdict"] == "inconclusive"
    assert "not measured" in claims["R2"]["tests"][0]["name"]
    metrics = read_json(ws / "reports/optfs/metrics.json")
    names = metrics.get("metrics", metrics)
    assert "optfs/kept" in names and not any("signal_kept" in k for k in names)
    assert "| n/a |" in (ws / "reports/optfs/tables.md").read_text()
