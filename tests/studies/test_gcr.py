"""GCR study (arXiv 2308.01547): core maths, training integration, claims, full-profile loaders."""

from __future__ import annotations

import math
import pickle
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

from subspacelab.config import ParamsError, build, profile_section, study_config
from subspacelab.data.imagenet import IMAGENET_ARCHIVES, IMAGENET_MEAN, IMAGENET_STD
from subspacelab.geometry import RiemannianSGD, orthonormality_error, weight_to_bases
from subspacelab.registry import Metrics
from subspacelab.studies.gcr import core, full
from subspacelab.studies.gcr.config import GcrConfig
from subspacelab.studies.gcr.lightning import GCRModule
from subspacelab.studies.gcr.study import CLAIMS, STUDY, check_error, check_r2, check_transfer
from tests.data.imagenet_archives import tar, tiny_imagenet_archives
from tests.helpers import REPO

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


# ------------------------------------------------------------------------------------ core


def test_parse_head() -> None:
    assert core.parse_head("softmax") == core.HeadSpec("softmax", "softmax", 1)
    assert core.parse_head("gcr16") == core.HeadSpec("gcr16", "gcr", 16)
    assert core.parse_head("gcr8").is_subspace and not core.parse_head("cosine").is_subspace
    for bad in ("gcr0", "gcr", "arcface", "gcr04"):
        with pytest.raises(ValueError, match="unknown head"):
            core.parse_head(bad)


def test_r2_matches_pairwise_definition() -> None:
    gen = torch.Generator().manual_seed(0)
    labels = torch.tensor([0] * 5 + [1] * 7 + [2] * 4)
    feats = torch.rand(16, 6, generator=gen) + labels[:, None].float() * torch.eye(6)[labels]
    unit = torch.nn.functional.normalize(feats.double(), dim=1)
    dist = 1.0 - unit @ unit.T
    classes = [labels == c for c in range(3)]
    within = np.mean([dist[m][:, m].mean() for m in classes])
    overall = np.mean([dist[a][:, b].mean() for a in classes for b in classes])
    assert core.class_separation_r2(feats, labels) == pytest.approx(1 - within / overall, abs=1e-12)


def test_r2_extremes() -> None:
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    collapsed = torch.eye(3)[labels] * torch.tensor([1.0, 2.0, 1.0, 3.0, 0.5, 1.0])[:, None]
    assert core.class_separation_r2(collapsed, labels) == pytest.approx(1.0)
    same = torch.rand(2, 4).repeat(3, 1)  # every class holds the same two points
    assert core.class_separation_r2(
        same, torch.tensor([0, 0, 1, 1, 2, 2])[[0, 2, 4, 1, 3, 5]]
    ) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="two classes"):
        core.class_separation_r2(torch.rand(3, 2), torch.zeros(3, dtype=torch.long))


def test_pairwise_class_angles() -> None:
    eye = torch.eye(6, dtype=torch.float64)
    bases = torch.stack([eye[:, 0:2], eye[:, 2:4], eye[:, [1, 0]]])
    angles = core.pairwise_class_angles(bases)
    assert angles.shape == (3, 2)
    torch.testing.assert_close(angles[0], torch.full((2,), math.pi / 2, dtype=torch.float64))
    torch.testing.assert_close(angles[1], torch.zeros(2, dtype=torch.float64), atol=1e-7, rtol=0)


def test_heads_known_values_and_invariance() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 6)
    gcr = core.build_head(core.parse_head("gcr3"), 6, 2, gamma=25.0)
    bases = gcr.bases()
    assert float(orthonormality_error(bases).max()) < 1e-6
    logits = gcr(x)
    x_hat = torch.nn.functional.normalize(x, dim=1)
    expected = 25.0 * torch.stack([(x_hat @ bases[i]).norm(dim=1) for i in range(2)], dim=1)
    torch.testing.assert_close(logits, expected)
    rot, _ = torch.linalg.qr(torch.randn(3, 3))
    with torch.no_grad():
        gcr.weight.copy_(torch.cat([(bases[i] @ rot).T for i in range(2)]))
    torch.testing.assert_close(gcr(x), logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(gcr(3.0 * x), logits)  # features are L2-normalised
    cos = core.build_head(core.parse_head("cosine"), 6, 3, gamma=25.0)
    assert cos(x).abs().max() <= 25.0 + 1e-5
    torch.testing.assert_close(cos(2.0 * x), cos(x))
    assert isinstance(core.build_head(core.parse_head("softmax"), 6, 3, 25.0), core.LinearHead)
    with pytest.raises(ValueError, match="exceeds the feature dimension"):
        core.build_head(core.parse_head("gcr7"), 6, 3, 25.0)


def test_trunk_shape_and_size() -> None:
    trunk = core.ConvTrunk([32, 64, 64], kernel_size=5, stride=2)
    assert trunk(torch.randn(3, 40)).shape == (3, 64) and trunk.feature_dim == 64
    assert trunk(torch.randn(2, 64)).shape == (2, 64)  # digits as length-64 signals
    assert 20_000 < sum(p.numel() for p in trunk.parameters()) < 35_000
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in trunk.modules())


def test_splits_and_shots() -> None:
    x = np.arange(12.0)[:, None]
    y = np.array([0, 1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 9])
    xs, ys = core.select_classes(x, y, [9, 5])
    assert ys.tolist() == [1, 1, 0, 0] and xs[:, 0].tolist() == [5, 6, 10, 11]
    labels = np.repeat(np.arange(3), 10)
    tr, te = core.sample_shots(labels, 4, np.random.default_rng(0))
    assert np.bincount(labels[tr]).tolist() == [4, 4, 4]
    assert sorted(np.concatenate([tr, te]).tolist()) == list(range(30))
    again, _ = core.sample_shots(labels, 4, np.random.default_rng(0))
    np.testing.assert_array_equal(tr, again)
    with pytest.raises(ValueError, match="need more than 10 shots"):
        core.sample_shots(labels, 10, np.random.default_rng(0))
    assert core.input_stats(np.array([1.0, 3.0])) == (2.0, 1.0)
    with pytest.raises(ValueError, match="constant"):
        core.input_stats(np.ones(4))
    assert core.cosine_schedule(0, 10) == 1.0 and core.cosine_schedule(5, 10) == pytest.approx(0.5)


def test_linear_probe_learns_and_picks_c() -> None:
    rng = np.random.default_rng(0)
    means = rng.normal(size=(3, 5)) * 4
    y = np.repeat(np.arange(3), 70)
    x = means[y] + rng.normal(size=(210, 5))
    draws = []
    for r in range(3):
        train, test = core.sample_shots(y, 20, np.random.default_rng([0, r]))
        _, val = core.stratified_holdout(y[train], 0.25, np.random.default_rng([0, r, 1]))
        draws.append(core.ProbeDraw(train, train[val], test))
    kw = {"c_grid": [10.0, 0.01, 1.0], "max_iter": 500}
    res = core.linear_probe(x, y, draws, **kw)
    assert len(res) == 3 and all(r.accuracy > 95.0 and r.c in kw["c_grid"] for r in res)
    assert core.linear_probe(x, y, draws, **kw) == res
    # each draw's result does not depend on the others solved with it
    assert core.linear_probe(x, y, draws[1:2], **kw) == res[1:2]
    noise = core.linear_probe(x, rng.permutation(y), draws[:1], **kw)
    assert noise[0].accuracy < 60.0


@pytest.mark.parametrize("c", [0.01, 1.0, 30.0])
def test_batched_probe_solves_sklearns_objective(c: float) -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    x = [
        rng.normal(size=(40, 4)) + np.repeat(np.eye(4)[:3], [14, 13, 13], axis=0) for _ in range(2)
    ]
    y = np.repeat(np.arange(3), [14, 13, 13])
    w, b = core.softmax_l2_fit(
        torch.tensor(np.stack(x)),
        torch.tensor(np.stack([y, y])),
        torch.tensor([[c, 2 * c], [c, c]]),
        3,
        max_iter=5000,
        tol=1e-10,
    )
    assert w.shape == (2, 2, 3, 4) and b.shape == (2, 2, 3)
    for r, m, cr in ((0, 0, c), (0, 1, 2 * c), (1, 0, c)):
        ref = LogisticRegression(C=cr, tol=1e-12, max_iter=10_000).fit(x[r], y)
        np.testing.assert_allclose(w[r, m].numpy(), ref.coef_, atol=1e-5 * max(1.0, c))
        # the intercept is defined up to a common shift (unpenalised, softmax)
        shift = b[r, m].numpy() - ref.intercept_
        np.testing.assert_allclose(shift, shift.mean(), atol=1e-4 * max(1.0, c))
    torch.testing.assert_close(w[1, 0], w[1, 1])  # same data and C: the same solution
    with pytest.raises(ValueError, match="c \\(R, M\\) > 0"):
        core.softmax_l2_fit(
            torch.zeros(1, 3, 2), torch.zeros(1, 3), torch.zeros(1, 1), 2, max_iter=5
        )


def test_stratified_holdout() -> None:
    y = np.repeat(np.arange(3), [5, 10, 2])
    fit, val = core.stratified_holdout(y, 0.2, np.random.default_rng(0))
    assert np.bincount(y[val]).tolist() == [1, 2, 1]
    assert sorted(np.concatenate([fit, val]).tolist()) == list(range(17))
    with pytest.raises(ValueError, match="need at least 2"):
        core.stratified_holdout(np.array([0, 1, 1]), 0.5, np.random.default_rng(0))


# ------------------------------------------------------------------------------------ training


def _train(
    head: str, *, reorth_every: int, epochs: int = 2, seed: int = 0
) -> tuple[GCRModule, dict[str, torch.Tensor]]:
    torch.manual_seed(seed)
    x, y = torch.randn(96, 20), torch.randint(0, 3, (96,))
    net = core.Classifier(
        core.ConvTrunk([4, 8], 3, 2), core.build_head(core.parse_head(head), 8, 3, 25.0)
    )
    initial = {k: v.clone() for k, v in net.state_dict().items()}
    module = GCRModule(
        net,
        lr=0.5,
        momentum=0.9,
        weight_decay=0.1,
        lr_factor=2.0,
        reorth_every=reorth_every,
        epochs=epochs,
    )
    loader = DataLoader(
        TensorDataset(x, y),
        batch_size=16,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        deterministic=True,
    )
    trainer.fit(module, loader)
    return module, initial


def test_gcr_training_keeps_subspaces_orthonormal_without_weight_decay() -> None:
    module, initial = _train("gcr4", reorth_every=10_000)  # no QR: the geodesic steps alone
    head = module.net.head
    assert (head.weight - initial["head.weight"]).abs().max() > 1e-2  # the subspaces moved
    assert float(orthonormality_error(weight_to_bases(head.weight.detach(), 3, 4)).max()) < 1e-5
    sgd, rsgd = (o.optimizer for o in module.optimizers())
    assert isinstance(sgd, torch.optim.SGD) and isinstance(rsgd, RiemannianSGD)
    sgd_params = {id(p) for g in sgd.param_groups for p in g["params"]}
    assert id(head.weight) not in sgd_params  # the trunk's weight decay never reaches S
    assert {id(p) for g in rsgd.param_groups for p in g["params"]} == {id(head.weight)}
    assert sgd_params | {id(head.weight)} == {id(p) for p in module.net.parameters()}
    # per-epoch cosine schedule on both, the subspaces at lr * lr_factor
    factor = core.cosine_schedule(2, 2)
    assert sgd.param_groups[0]["lr"] == pytest.approx(0.5 * factor, abs=1e-12)
    assert rsgd.param_groups[0]["lr"] == pytest.approx(1.0 * factor, abs=1e-12)


def test_vector_heads_use_one_optimiser_and_training_is_deterministic() -> None:
    first, _ = _train("cosine", reorth_every=1)
    opts = first.optimizers()
    assert not isinstance(opts, list) and isinstance(opts.optimizer, torch.optim.SGD)
    second, _ = _train("cosine", reorth_every=1)
    for a, b in zip(first.net.state_dict().values(), second.net.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    (a, _), (b, _) = _train("gcr8", reorth_every=1), _train("gcr8", reorth_every=1)
    torch.testing.assert_close(a.net.head.weight, b.net.head.weight, atol=0, rtol=0)


# ------------------------------------------------------------------------------------ claims


SEED_EFFECT = (-2.0, 1.0, 0.5, -1.5, 2.0)  # shared by every head of a seed (pairing removes it)


def _metrics(**gaps: tuple[float, ...]) -> Metrics:
    """Per-seed metrics: softmax at ``base + seed effect``, other heads ``+ gap`` per seed."""
    out = {}
    for key, values in gaps.items():
        metric, head = key.split("__")
        base = {"transfer_acc": 85.0, "r2": 0.8, "source_err": 1.5}[metric]
        out[f"{metric}/{head}"] = [base + e + g for e, g in zip(SEED_EFFECT, values, strict=True)]
    return Metrics(out)


ZERO = (0.0,) * 5


def test_claim_a_transfer_three_ways() -> None:
    # gcr4 +1.5 pt on every seed (± 0.1): holds although the seed effect spans 4 pt
    ok = _metrics(
        transfer_acc__softmax=ZERO,
        transfer_acc__gcr4=(1.4, 1.6, 1.5, 1.45, 1.55),
        transfer_acc__gcr8=(0.0, -0.5, 0.3, 0.1, -0.2),
    )
    result = check_transfer(ok)
    assert result.verdict == "holds" and result.tests[0].name.startswith("gcr4")
    assert result.measured["gcr8_minus_softmax"].values == pytest.approx((0, -0.5, 0.3, 0.1, -0.2))
    # both heads about +0.5: the interval lies below the 1-pt margin
    below = _metrics(
        transfer_acc__softmax=ZERO,
        transfer_acc__gcr4=(0.4, 0.6, 0.5, 0.45, 0.55),
        transfer_acc__gcr8=(0.5, 0.3, 0.6, 0.4, 0.5),
    )
    assert check_transfer(below).verdict == "does not hold"
    # straddling seeds (mean +1.1, spread 2 pt): inconclusive, never "holds" on the mean alone
    unsure = _metrics(
        transfer_acc__softmax=ZERO,
        transfer_acc__gcr4=(3.0, -1.0, 2.5, -0.5, 1.5),
        transfer_acc__gcr8=(0.0,) * 5,
    )
    assert check_transfer(unsure).verdict == "inconclusive"
    with pytest.raises(KeyError):
        check_transfer(_metrics(transfer_acc__softmax=ZERO))


def test_claim_b_r2_three_ways() -> None:
    lower = (-0.1, -0.12, -0.09, -0.11, -0.1)
    assert check_r2(_metrics(r2__softmax=ZERO, r2__gcr8=lower)).verdict == "holds"
    higher = tuple(-v for v in lower)
    assert check_r2(_metrics(r2__softmax=ZERO, r2__gcr8=higher)).verdict == "does not hold"
    mixed = (-0.1, 0.1, -0.05, 0.08, -0.02)
    assert check_r2(_metrics(r2__softmax=ZERO, r2__gcr8=mixed)).verdict == "inconclusive"


def test_claim_c_error_three_ways() -> None:
    within = (0.1, 0.0, 0.05, 0.1, -0.05)
    ok = _metrics(source_err__softmax=ZERO, source_err__gcr4=within, source_err__gcr8=ZERO)
    assert check_error(ok).verdict == "holds"
    # every GCR head must be within 0.3 pt: gcr4 is 0.5 pt worse on every seed
    worse = (0.5, 0.55, 0.45, 0.5, 0.5)
    bad = _metrics(source_err__softmax=ZERO, source_err__gcr4=worse, source_err__gcr8=ZERO)
    result = check_error(bad)
    assert result.verdict == "does not hold" and len(result.tests) == 2
    wide = (0.8, -0.4, 0.6, -0.2, 0.3)
    unsure = _metrics(source_err__softmax=ZERO, source_err__gcr4=wide, source_err__gcr8=ZERO)
    assert check_error(unsure).verdict == "inconclusive"


def test_claim_statements_are_the_spec_wording() -> None:
    assert [c.statement for c in CLAIMS] == [
        "transfer acc(GCR k=4 or 8) > transfer acc(softmax) + 1 pt (issue 12: each model "
        "probed over 20 shot draws, paired per seed)",
        "R²(GCR, k=8) < R²(softmax) (more variability)",
        "source error(GCR) ≤ error(softmax) + 0.3 pt",
    ]


# ------------------------------------------------------------------------------------ config


def _section(profile: str) -> dict:
    """A profile's raw params as the lab reads them (``full`` inherits from ``mini``)."""
    section = profile_section(PARAMS["gcr"], "gcr", profile, GcrConfig)
    return yaml.safe_load(yaml.safe_dump(section))


def test_both_profiles_validate() -> None:
    mini = study_config(GcrConfig, PARAMS, "gcr", "mini")
    assert mini.data.imagenet is None and mini.model.cnn is not None
    fullcfg = study_config(GcrConfig, PARAMS, "gcr", "full")
    assert set(fullcfg.data.imagenet.checksums) == set(IMAGENET_ARCHIVES)


@pytest.mark.parametrize(
    ("profile", "path", "value", "key"),
    [
        ("mini", ("data", "imagenet"), _section("full")["data"]["imagenet"], "imagenet"),
        ("mini", ("data", "target_classes"), [4, 5, 6], "target_classes"),
        ("mini", ("model", "heads"), ["softmax", "gcr0"], "heads"),
        ("mini", ("model", "cnn"), None, "cnn"),
        ("mini", ("data", "transfer_sets"), ["cifar10"], "transfer_sets"),
        ("full", ("probe", "draws"), 5, "draws"),
        (
            "full",
            ("data", "imagenet", "checksums", "ILSVRC2012_img_val.tar"),
            "md5:xyz",
            "checksums",
        ),
        ("full", ("data", "transfer_sets"), [], "transfer_sets"),
        ("full", ("data", "imagenet", "resize_size"), 200, "resize_size"),
    ],
)
def test_config_errors_name_the_key(profile: str, path: tuple, value: object, key: str) -> None:
    raw = _section(profile)
    node = raw
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    with pytest.raises(ParamsError, match=rf"gcr\.{profile}\..*{key}"):
        build(GcrConfig, raw, f"gcr.{profile}")


def test_study_declares_chain() -> None:
    assert [s.name for s in STUDY.steps] == ["download", "features", "fit", "evaluate", "transfer"]
    assert STUDY.steps[-1].kind == "report" and STUDY.arxiv == "2308.01547"


# ------------------------------------------------------------------------------------ full profile


def test_resized_images_and_lazy_optional_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    ds = full.ResizedImages(np.full((2, 3, 32, 32), 0.5, np.float32), np.array([3, 1]), 64)
    img, label = ds[1]
    assert img.shape == (3, 64, 64) and label == 1
    expected = (0.5 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(img[:, 10, 10], expected)
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(ImportError, match=r"subspacelab\[full\]"):
        full.TimmTrunk("resnet50d")


def _tiny_cifar100(path: Path, n_train: int, n_test: int) -> Path:
    rng = np.random.default_rng(0)

    def batch(n: int) -> bytes:
        data = {
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            b"fine_labels": [int(v) for v in rng.integers(0, 100, size=n)],
            b"coarse_labels": [0] * n,
        }
        return pickle.dumps(data, protocol=3).replace(
            b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"
        )

    return tar(
        path, {"cifar-100-python/train": batch(n_train), "cifar-100-python/test": batch(n_test)}
    )


def test_full_profile_download_and_features(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    from subspacelab import registry
    from subspacelab.data import cifar
    from subspacelab.data.download import Resource
    from subspacelab.io import load_tensors, read_json
    from subspacelab.runner import run_step
    from tests.helpers import make_workspace

    monkeypatch.setattr(registry, "_REGISTRY", {"gcr": STUDY})
    archives = tmp_path / "archives"
    tiny_imagenet_archives(archives)
    tarball = _tiny_cifar100(tmp_path / "cifar-100-python.tar.gz", 6, 4)
    md5 = hashlib.md5(tarball.read_bytes(), usedforsecurity=False).hexdigest()
    monkeypatch.setitem(
        cifar.CIFAR_RESOURCES, "cifar100", Resource(tarball.as_uri(), tarball.name, md5=md5)
    )
    section = _section("full")
    section["seeds"] = [0, 1]
    section["data"]["transfer_sets"] = ["cifar100"]
    section["data"]["imagenet"]["root"] = str(archives)
    section["data"]["imagenet"]["checksums"] = {
        n: "md5:" + hashlib.md5((archives / n).read_bytes(), usedforsecurity=False).hexdigest()
        for n in IMAGENET_ARCHIVES
    }
    lab = {**PARAMS["lab"], "profile": "full", "device": "cpu"}
    root = make_workspace(
        tmp_path / "ws", {"lab": lab, "gcr": {"mini": PARAMS["gcr"]["mini"], "full": section}}
    )
    run_step(root, "gcr", "download")
    out = root / "data" / "gcr" / "download"
    assert len(list((out / "imagenet" / "train" / "n01443537").iterdir())) == 2
    manifest = read_json(out / "manifest.json")
    assert len(manifest["archives"][IMAGENET_ARCHIVES[0]]["sha256"]) == 64
    assert manifest["archives"]["cifar100"]["md5"] == md5
    sha = hashlib.sha256(tarball.read_bytes()).hexdigest()
    assert manifest["archives"]["cifar100"]["sha256"] == sha
    assert not (out / "transfer" / tarball.name).exists()  # only the extracted batches stay
    run_step(root, "gcr", "features")
    probe, _ = load_tensors(
        root / "data" / "gcr" / "features" / "cifar100.safetensors", study="gcr", kind="probe"
    )
    assert probe["target_y"].shape == (10,)
    for seed in (0, 1):  # shots: null -> the set's own train/test split, one draw
        assert probe[f"train_idx/{seed}/0"].tolist() == list(range(6))
        assert probe[f"test_idx/{seed}/0"].tolist() == list(range(6, 10))
        assert f"train_idx/{seed}/1" not in probe
