"""intrinsic_dim (arXiv 1804.08838): core maths, joint training, claims, config, full profile."""

from __future__ import annotations

import copy
import gzip
import hashlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from subspacelab.config import ParamsError, build, profile_section, study_config
from subspacelab.geometry import SubspaceModel, make_projection, toy_min_loss, toy_objective
from subspacelab.registry import Metrics
from subspacelab.studies.intrinsic_dim import core, study
from subspacelab.studies.intrinsic_dim.config import FcConfig, IntrinsicDimConfig
from subspacelab.studies.intrinsic_dim.experiments import base_net, plan
from subspacelab.studies.intrinsic_dim.experiments import build as build_model
from subspacelab.studies.intrinsic_dim.study import (
    CLAIMS,
    STUDY,
    check_fraction,
    check_shuffled,
    check_toy,
    check_width,
)
from tests.helpers import REPO

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
SLUG = "intrinsic_dim"


def _section(profile: str) -> dict:
    """A profile's raw params as the lab reads them (``full`` inherits from ``mini``)."""
    return copy.deepcopy(profile_section(PARAMS[SLUG], SLUG, profile, IntrinsicDimConfig))


def _mini() -> IntrinsicDimConfig:
    return study_config(IntrinsicDimConfig, PARAMS, SLUG, "mini")


# ------------------------------------------------------------------------------------ core


def test_derive_seed_is_stable_and_distinct() -> None:
    assert core.derive_seed(0, "proj", 50, 80) == core.derive_seed(0, "proj", 50, 80)
    seeds = {core.derive_seed(s, "proj", w, d) for s in (0, 1) for w in (50, 100) for d in (8, 9)}
    assert len(seeds) == 8
    assert all(0 <= s < 2**63 for s in seeds)


def test_crossing_interpolates_between_grid_points() -> None:
    c = core.crossing([10, 20, 40], [0.5, 0.7, 0.9], 0.8)
    assert c.d_int == pytest.approx(30.0) and c.d_grid == 40.0
    assert not c.above_grid and not c.below_grid
    exact = core.crossing([10, 20, 40], [0.5, 0.7, 0.9], 0.7)
    assert exact.d_int == pytest.approx(20.0) and exact.d_grid == 20.0
    # the first crossing of a non-monotone curve is the minimum
    bumpy = core.crossing([10, 20, 30, 40], [0.5, 0.85, 0.7, 0.9], 0.8)
    assert bumpy.d_int == pytest.approx(10 + 0.3 / 0.35 * 10)


def test_crossing_flags_censoring_and_refuses_bad_grids() -> None:
    low = core.crossing([10, 20], [0.9, 0.95], 0.8)
    assert low.below_grid and low.d_int == 10.0
    high = core.crossing([10, 20], [0.1, 0.2], 0.8)
    assert high.above_grid and high.d_int == 20.0
    with pytest.raises(ValueError, match="increase strictly"):
        core.crossing([20, 10], [0.1, 0.2], 0.5)
    with pytest.raises(ValueError, match="equal, non-empty"):
        core.crossing([10], [0.1, 0.2], 0.5)


def test_standardize_uses_training_statistics() -> None:
    rng = np.random.default_rng(0)
    x_tr = rng.normal(3.0, 2.0, size=(200, 4)).astype(np.float32)
    x_tr[:, 2] = 5.0  # a constant feature: only centred
    x_te = x_tr[:10] + 1.0
    a, b = core.standardize(x_tr, x_te)
    np.testing.assert_allclose(a.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(a.std(0)[[0, 1, 3]], 1.0, atol=1e-4)
    assert np.all(a[:, 2] == 0.0) and np.all(b[:, 2] == 1.0)
    std = np.where(x_tr.std(0) > 0, x_tr.std(0), 1.0)
    np.testing.assert_allclose(b, (x_te - x_tr.mean(0)) / std, atol=1e-4)
    images = (
        rng.normal(size=(20, 3, 4, 4)).astype(np.float32) * np.array([1, 2, 3])[None, :, None, None]
    )
    c, _ = core.standardize(images, images)
    np.testing.assert_allclose(c.std(axis=(0, 2, 3)), 1.0, atol=1e-4)


def test_shuffle_labels_is_a_seeded_permutation() -> None:
    y = np.repeat(np.arange(10), 7)
    s1, s2 = core.shuffle_labels(y, 3), core.shuffle_labels(y, 3)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(np.sort(s1), y)
    assert (s1 != y).mean() > 0.5
    assert not np.array_equal(s1, core.shuffle_labels(y, 4))


@pytest.mark.parametrize(
    ("net", "D"),
    [
        (core.MLP(64, 50, 2, 10), 6_310),
        (core.MLP(64, 100, 2, 10), 17_610),
        (core.MLP(64, 200, 2, 10), 55_210),
        (core.MLP(784, 200, 2, 10), 199_210),  # paper Table 1, MNIST FC
        (core.MLP(3072, 200, 2, 10), 656_810),  # CIFAR-10 FC
        (core.ConvNet((1, 28, 28), [6, 16], 5, [120, 84], 10), 44_426),  # MNIST LeNet
        (core.ConvNet((3, 32, 32), [6, 16], 5, [120, 84], 10), 62_006),  # CIFAR-10 LeNet
    ],
)
def test_network_sizes_match_the_paper(net: nn.Module, D: int) -> None:
    assert core.count_parameters(net) == D


def test_convnet_shapes_and_errors() -> None:
    net = core.ConvNet((1, 40), [8, 16], 5, [64], 10)
    assert net(torch.randn(3, 1, 40)).shape == (3, 10)
    assert core.count_parameters(net) == 8_586
    with pytest.raises(ValueError, match="too small"):
        core.ConvNet((1, 12), [4, 4], 5, [], 10)
    with pytest.raises(ValueError, match="input_shape"):
        core.ConvNet((40,), [4], 5, [], 10)


def test_toy_module_and_subspace_floor() -> None:
    theta0 = core.toy_theta0(0, 1.0)
    assert theta0.dtype == torch.float64
    torch.testing.assert_close(theta0, core.toy_theta0(0, 1.0), rtol=0, atol=0)
    toy = core.ToyParameters(theta0)
    assert float(toy().detach()) == pytest.approx(float(toy_objective(theta0)))
    with pytest.raises(ValueError, match="shape"):
        core.ToyParameters(torch.zeros(10))
    floors = {
        d: toy_min_loss(make_projection("dense", 1000, d, 7, torch.float64), theta0)
        for d in (9, 10)
    }
    assert floors[9] > 1e-3 and floors[10] < 1e-20  # codimension 10


def test_accuracy_is_batch_independent() -> None:
    torch.manual_seed(0)
    net = core.MLP(5, 4, 1, 3)
    x, y = torch.randn(11, 5), torch.randint(0, 3, (11,))

    def ctx(batch_size: int) -> SimpleNamespace:
        cfg = SimpleNamespace(eval=SimpleNamespace(batch_size=batch_size))
        return SimpleNamespace(cfg=cfg, device=torch.device("cpu"))

    full = study._accuracy(net, x, y, ctx(100))
    assert study._accuracy(net, x, y, ctx(2)) == full
    assert full == pytest.approx(float((net(x).argmax(1) == y).float().mean()))
    assert core.count_parameters(SubspaceModel(net, d=3, seed=0)) == core.count_parameters(net)


# ------------------------------------------------------------------------------------ training


def test_toy_members_train_on_empty_batches() -> None:
    """The toy's members compute their own loss (the shared loader's batches are empty): a
    few cosine epochs of the joint trainer drive the d ≥ 10 member's loss below the d < 10 one's
    floor, which no subspace of codimension > 0 can cross."""
    from subspacelab.nets.joint import Member, train_joint
    from subspacelab.nets.training import LocalEnv, full_batch_loader

    theta0 = core.toy_theta0(0, 1.0)
    nets = {d: SubspaceModel(core.ToyParameters(theta0), d=d, seed=d) for d in (3, 12)}
    with torch.no_grad():
        start = {d: float(net()) for d, net in nets.items()}
    result = train_joint(
        LocalEnv(),
        [Member(net, loss=lambda *_, net=net: net(), lr=1.0) for net in nets.values()],
        epochs=4,
        loader=full_batch_loader(steps=50),
        schedule="cosine",
    )
    assert all(len(h) == 4 for h in result.history)
    with torch.no_grad():
        end = {d: float(net()) for d, net in nets.items()}
    assert all(end[d] < start[d] for d in nets)
    floor3 = toy_min_loss(nets[3].projection, theta0)
    assert end[3] >= floor3 - 1e-9 and end[12] < floor3


# ------------------------------------------------------------------------------------ plan


def test_plan_names_seeds_and_pairing() -> None:
    cfg = _mini()
    jobs = plan(cfg.family, cfg.compare, seed=0)
    assert [j.name for j in jobs] == ["digits_real", "digits_shuffled"]
    real = {s.name: s for s in jobs[0].specs}
    shuf = {s.name: s for s in jobs[1].specs}
    assert len(real) == len(cfg.family.widths) * (1 + len(cfg.family.d_grid))
    assert "fc_w50/base" in real and "fc_w50_shuffled/d5120" in shuf
    # a group shares θ₀; the shuffled twin shares it too, and P on common d
    assert real["fc_w50/d40"].init_seed == real["fc_w50/base"].init_seed
    assert shuf["fc_w50_shuffled/d160"].init_seed == real["fc_w50/d160"].init_seed
    assert shuf["fc_w50_shuffled/d160"].proj_seed == real["fc_w50/d160"].proj_seed
    assert real["fc_w50/d40"].proj_seed != real["fc_w50/d80"].proj_seed
    other = {s.name: s for s in plan(cfg.family, cfg.compare, seed=1)[0].specs}
    assert other["fc_w50/d40"].proj_seed != real["fc_w50/d40"].proj_seed


def test_build_regenerates_the_same_model_from_seeds() -> None:
    cfg = _mini()
    spec = plan(cfg.family, cfg.compare, seed=0)[0].specs[3]
    a, b = build_model(spec, (64,), "dense"), build_model(spec, (64,), "dense")
    for (k, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(va, vb), k
    net = base_net(FcConfig(depth=2, width=50), (64,), spec.init_seed)
    torch.testing.assert_close(
        net.layers[1].weight, a.base.layers[1].weight, rtol=0, atol=0
    )  # θ₀ of the subspace model is the seeded init


def test_load_model_refuses_outputs_of_other_params() -> None:
    cfg = _mini()
    spec = plan(cfg.family, cfg.compare, seed=0)[0].specs[2]
    net = build_model(spec, (64,), "dense")
    tensors = study._model_tensors(spec, net)
    rebuilt = study._load_model(spec, tensors, (64,), "dense")
    assert torch.equal(rebuilt.theta_d, net.theta_d)
    tensors[f"{spec.name}/proj_seed"] = torch.tensor([spec.proj_seed + 1])
    with pytest.raises(ValueError, match="rerun the fit stage"):
        study._load_model(spec, tensors, (64,), "dense")
    with pytest.raises(RuntimeError, match="not regenerated identically"):
        study._agree(0.5, 0.9, "x", tol=1e-3)
    study._agree(0.5, 0.5005, "x", tol=1e-3)


# ------------------------------------------------------------------------------------ claims


def _toy_metrics(losses: dict[int, float | list[float]]) -> dict[str, float | list[float]]:
    return {f"toy/loss/d{d}": v for d, v in losses.items()}


def test_claim_a_toy_is_an_invariant_on_every_seed() -> None:
    good = {5: [700.0, 650.0], 9: [50.0, 40.0], 10: [1e-20, 1e-22], 11: 1e-28, 20: 1e-29}
    result = check_toy(Metrics(_toy_metrics(good)))
    assert result.verdict == "holds" and all(t.rule == "every" for t in result.tests)
    stuck = {**good, 10: [1e-20, 3e-6]}  # Adam did not reach 1e-8 at d = 10 on one seed
    assert check_toy(Metrics(_toy_metrics(stuck))).verdict == "does not hold"
    too_easy = {**good, 9: [50.0, 1e-12]}  # solved below the codimension on one seed
    assert check_toy(Metrics(_toy_metrics(too_easy))).verdict == "does not hold"
    with pytest.raises(KeyError):
        check_toy(Metrics({"fc/w50/d_int90": 1.0}))


def _fc(width: int, d90: float | list[float], D: float, above: float = 0.0, below: float = 0.0):
    p = f"fc/w{width}"
    n = len(d90) if isinstance(d90, list) else 1
    return {
        f"{p}/d_int90": d90,
        f"{p}/D": [D] * n,
        f"{p}/above_grid": [above] * n,
        f"{p}/below_grid": [below] * n,
    }


def test_claim_b_fraction_three_ways() -> None:
    m = Metrics({**_fc(50, [200.0, 220.0, 210.0], 6310), **_fc(100, [212.0, 200.0, 230.0], 17610)})
    result = check_fraction(m)
    assert result.verdict == "holds" and result.measured["w50_D"] == 6310
    far = {**_fc(50, [400.0, 420.0, 410.0], 6310), **_fc(100, [212.0, 200.0, 230.0], 17610)}
    assert check_fraction(Metrics(far)).verdict == "does not hold"  # ~6.5% of D
    near = {**_fc(50, [250.0, 380.0, 300.0], 6310), **_fc(100, [212.0, 200.0, 230.0], 17610)}
    assert check_fraction(Metrics(near)).verdict == "inconclusive"  # 4-6% of D
    single = {**_fc(50, [200.0], 6310), **_fc(100, [212.0], 17610)}
    assert check_fraction(Metrics(single)).verdict == "inconclusive"  # one seed: no interval
    censored = {**_fc(50, [200.0, 220.0, 210.0], 6310, above=1.0), **_fc(100, [212.0] * 3, 17610)}
    assert check_fraction(Metrics(censored)).verdict == "does not hold"  # > grid: not established


def test_claim_c_width_three_ways() -> None:
    ok = {
        **_fc(50, [210.0, 190.0, 220.0], 6310),
        **_fc(100, [212.0, 200.0, 215.0], 17610),
        **_fc(200, [230.0, 205.0, 240.0], 55210),
    }
    result = check_width(Metrics(ok))
    assert result.verdict == "holds"
    assert result.measured["D_max_over_min"] == pytest.approx(55210 / 6310)
    wide = {**_fc(50, [80.0, 75.0, 85.0], 6310), **_fc(200, [230.0, 220.0, 240.0], 55210)}
    assert check_width(Metrics(wide)).verdict == "does not hold"
    # per-seed ratios 1.2, 2.9, 1.5: the interval straddles 2
    mixed = {**_fc(50, [200.0, 100.0, 200.0], 6310), **_fc(200, [240.0, 290.0, 300.0], 55210)}
    assert check_width(Metrics(mixed)).verdict == "inconclusive"
    low = {**_fc(50, [40.0] * 3, 6310, below=1.0), **_fc(200, [60.0, 62.0, 58.0], 55210)}
    assert check_width(Metrics(low)).verdict == "does not hold"  # <= 40 gives no ratio


def _shuf(width: int, d90: list[float], above: float = 0.0, below: float = 0.0) -> dict:
    p = f"shuffled/w{width}"
    n = len(d90)
    return {f"{p}/d_int90": d90, f"{p}/above_grid": [above] * n, f"{p}/below_grid": [below] * n}


def test_claim_d_shuffled_three_ways() -> None:
    real = _fc(50, [210.0, 200.0, 220.0], 6310)
    result = check_shuffled(Metrics({**real, **_shuf(50, [3838.0, 3500.0, 4000.0])}))
    assert result.verdict == "holds" and result.tests[-1].name == "w50 shuffled / real d_int90"
    low = _shuf(50, [500.0, 450.0, 520.0])
    assert check_shuffled(Metrics({**real, **low})).verdict == "does not hold"
    # censored above the grid: 5120 is a lower bound, and the bound alone establishes >= 3x
    bound = check_shuffled(Metrics({**real, **_shuf(50, [5120.0] * 3, above=1.0)}))
    assert bound.verdict == "holds"
    assert bound.measured["w50_shuffled_above_grid"].values == (1.0, 1.0, 1.0)
    around = _shuf(50, [1200.0, 400.0, 700.0])  # ratios 5.7, 2.0, 3.2
    assert check_shuffled(Metrics({**real, **around})).verdict == "inconclusive"
    unreal = {**_fc(50, [480.0] * 3, 6310, above=1.0), **_shuf(50, [5000.0] * 3)}
    assert check_shuffled(Metrics(unreal)).verdict == "does not hold"  # real d_int90 unknown


def test_shuffled_grid_must_reach_three_times_the_real_one() -> None:
    raw = yaml.safe_load(yaml.safe_dump(PARAMS["intrinsic_dim"]["mini"]))
    raw["family"]["shuffled_d_grid"] = [160, 320, 640, 1280]  # 1280 < 3 x 480
    with pytest.raises(ParamsError, match="shuffled_d_grid"):
        build(IntrinsicDimConfig, raw, "intrinsic_dim.mini")


def test_claim_statements_are_the_spec_wording() -> None:
    assert [c.statement for c in CLAIMS] == [
        "toy d_int = 10 exactly (final loss < 1e-8 iff d ≥ 10)",
        "digits: d_int90 ≤ 5% of D for every W",
        "max/min of d_int90 across W ≤ 2 while D varies 9×",
        "the shuffled-label variant has d_int90 at least 3× larger",
    ]


# ------------------------------------------------------------------------------------ config


def test_both_profiles_validate() -> None:
    mini = _mini()
    assert mini.family.dataset == "digits" and mini.train.batch_size is None
    full = study_config(IntrinsicDimConfig, PARAMS, SLUG, "full")
    assert full.family.dataset == "mnist" and full.train.projection == "fastfood"
    assert [c.dataset for c in full.compare] == ["mnist", "cifar10"]


@pytest.mark.parametrize(
    ("path", "value", "key"),
    [
        (("family", "d_grid"), [40, 40, 80], "d_grid"),
        (("family", "shuffled_widths"), [75], "shuffled_widths"),
        (("family", "widths"), [50], "widths"),
        (("data", "digits"), None, "data"),
        (("toy", "d_grid"), [10, 5], "d_grid"),
        (("toy", "log_every"), 300, "log_every"),
        (("train", "projection"), "orthogonal", "projection"),
        (("eval", "fraction"), 1.5, "fraction"),
    ],
)
def test_config_errors_name_the_key(path: tuple, value: object, key: str) -> None:
    raw = _section("mini")
    node = raw
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    with pytest.raises(ParamsError, match=rf"{SLUG}\.mini\..*{key}"):
        build(IntrinsicDimConfig, raw, f"{SLUG}.mini")


def test_study_declares_chain() -> None:
    assert [s.name for s in STUDY.steps] == ["download", "features", "fit", "evaluate"]
    assert STUDY.steps[-1].kind == "report" and STUDY.arxiv == "1804.08838"


# ------------------------------------------------------------------------------------ full


def _idx(path: Path, array: np.ndarray, magic: int) -> None:
    head = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(head + array.astype(np.uint8).tobytes())


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def test_full_profile_chain_on_tiny_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from subspacelab import registry
    from subspacelab.data import cifar, mnist
    from subspacelab.data.download import Resource
    from subspacelab.io import load_tensors, read_json
    from subspacelab.runner import run_step
    from tests.data.test_cifar import _tiny_cifar10
    from tests.helpers import make_workspace

    monkeypatch.setattr(registry, "_REGISTRY", {SLUG: STUDY})
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    rng = np.random.default_rng(0)
    sizes = {"train": 24, "test": 12}
    for key, resource in mnist.MNIST_RESOURCES.items():
        n = sizes[key.split("_")[0]]
        if key.endswith("images"):
            _idx(mirror / resource.filename, rng.integers(0, 256, (n, 28, 28)), mnist.IMAGES_MAGIC)
        else:
            _idx(mirror / resource.filename, rng.integers(0, 10, n), mnist.LABELS_MAGIC)
        path = mirror / resource.filename
        monkeypatch.setitem(
            mnist.MNIST_RESOURCES, key, Resource(path.as_uri(), resource.filename, md5=_md5(path))
        )
    archive, _ = _tiny_cifar10(mirror)
    monkeypatch.setitem(
        cifar.CIFAR_RESOURCES,
        "cifar10",
        Resource(archive.as_uri(), archive.name, md5=_md5(archive)),
    )
    section = _section("full")
    section["toy"].update(d_grid=[9, 10], steps=4, log_every=2)
    section["family"].update(
        widths=[4, 6], d_grid=[4, 8], shuffled_widths=[4], shuffled_d_grid=[8, 24]
    )
    small = {
        "mlp": {"depth": 1, "width": 4},
        "cnn": {"channels": [2, 2], "kernel_size": 5, "hidden": [4]},
        "d_grid": [4, 8],
    }
    section["compare"] = [{"dataset": "mnist", **small}, {"dataset": "cifar10", **small}]
    section["train"].update(epochs=1, batch_size=8, max_joint=3, num_workers=0, log_every=1)
    section["eval"]["batch_size"] = 16
    lab = {**PARAMS["lab"], "profile": "full", "device": "cpu"}
    root = make_workspace(
        tmp_path / "ws", {"lab": lab, SLUG: {"mini": _section("mini"), "full": section}}
    )
    for step in ("download", "features", "fit", "evaluate"):
        run_step(root, SLUG, step)
    manifest = read_json(root / "data" / SLUG / "download" / "manifest.json")
    train_file = mnist.MNIST_RESOURCES["train_images"].filename
    assert manifest["mnist"][train_file]["md5"] == _md5(mirror / train_file)
    assert len(manifest["cifar10"][archive.name]["sha256"]) == 64
    feats, _ = load_tensors(
        root / "data" / SLUG / "features" / "mnist.safetensors", study=SLUG, kind="features"
    )
    assert feats["x_train"].shape == (24, 1, 28, 28) and "y_train_shuffled/0" in feats
    models, header = load_tensors(
        root / "models" / SLUG / "fit" / "mnist_real_s0.safetensors", study=SLUG
    )
    assert header["projection"] == "fastfood"
    assert models["fc_w4/d8/theta_d"].shape == (8,)
    assert not any("matrix" in k for k in models)  # P is regenerated from its seed, not stored
    metrics = read_json(root / "reports" / SLUG / "metrics.json")["metrics"]
    assert metrics["arch/cifar10/cnn/D"]["mean"] == core.count_parameters(
        core.ConvNet((3, 32, 32), [2, 2], 5, [4], 10)
    )
    assert {"fc/w4/d_int90", "shuffled/w4/d_int90", "arch/mnist/mlp/d_int90"} <= set(metrics)
    claims = read_json(root / "reports" / SLUG / "claims.json")
    assert [c["id"] for c in claims] == ["a_toy", "b_fraction", "c_width", "d_shuffled"]


def test_deviations_state_a_single_seed_and_the_missing_claim() -> None:
    one = study_config(
        IntrinsicDimConfig,
        {SLUG: {**PARAMS[SLUG], "mini": {**PARAMS[SLUG]["mini"], "seeds": [0]}}},
        SLUG,
        "mini",
    )
    text = study._deviations(one)
    assert "| seeds | 1, as the spec's miniature |" in text and "| claim (e) |" in text
    several = study._deviations(_mini())  # the mini profile runs 3 seeds
    assert "| seeds |" not in several and "| claim (e) |" in several
