"""eigenstructures' image world (full profile, spec §3, §7) on tiny CIFAR-100 and STL-10 archives
written here in the real formats: features, cosine kNN, the scale and oracle, the pinned inputs
and their errors before any compute, and the whole full-profile chain over the image world."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import tarfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import yaml

from subspacelab.api import DownloadError, ParamsError
from subspacelab.config import study_config, unpinned
from subspacelab.io import load_tensors
from subspacelab.studies.eigenstructures import images
from subspacelab.studies.eigenstructures.config import EigenstructuresConfig
from subspacelab.studies.eigenstructures.study import STUDY
from subspacelab.worlds import manifolds as mf
from tests.data.test_cifar import _write_archive
from tests.data.test_stl10 import write_stl10
from tests.helpers import REPO, TINY, deep_merge, make_workspace, run_chain, tiny_params

SLUG = "eigenstructures"


def _circle_images(n: int, side: int, seed: int) -> np.ndarray:
    """uint8 (n, 3, side, side): a stripe pattern whose phase runs round a circle, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, 2 * np.pi, n))[:, None, None, None]
    col = np.arange(side)[None, None, None, :] * 2 * np.pi / side
    chan = np.arange(3)[None, :, None, None]
    img = 128 + 90 * np.cos(col + t + chan) + rng.normal(0, 5, (n, 3, side, side))
    return np.clip(img, 0, 255).astype(np.uint8)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cifar100(folder: Path, n: int = 40) -> tuple[Path, np.ndarray]:
    """A tiny cifar-100-python.tar.gz: train, test (n circle images) and meta."""
    folder.mkdir(parents=True, exist_ok=True)
    x = _circle_images(n, 32, 0)
    test = {b"data": x.reshape(n, -1), b"fine_labels": list(range(n)), b"coarse_labels": [0] * n}
    train = {b"data": x[:2].reshape(2, -1), b"fine_labels": [0, 1], b"coarse_labels": [0, 0]}
    meta = {b"fine_label_names": [b"apple"] * 100}
    members = {"train": train, "test": test, "meta": meta}
    return _write_archive(folder / "cifar-100-python.tar.gz", "cifar-100-python", members), x


def _images_params(tmp_path: Path, **images_cfg: Any) -> dict[str, Any]:
    """Tiny params whose full profile runs the sphere and the image world (no ShapeNet)."""
    params = tiny_params([SLUG])
    full = params[SLUG]["full"]
    full = deep_merge(full, yaml.safe_load(TINY.read_text())[SLUG])
    full["eval"]["groups"] = 3  # the sphere's 9 functions fit model.k = 10
    full["data"]["manifolds"] = ["sphere", "images"]
    full["shapenet"] = None
    full["images"].update({"n_points": 30, "knn": 5, "functions": 6, "k": 6, **images_cfg})
    params[SLUG]["full"] = full
    return params


def _cfg(tmp_path: Path, **images_cfg: Any) -> EigenstructuresConfig:
    return study_config(EigenstructuresConfig, _images_params(tmp_path, **images_cfg), SLUG, "full")


def _cifar_cfg(tmp_path: Path, **over: Any) -> EigenstructuresConfig:
    archive, _ = _cifar100(tmp_path / "dl")
    pin = {"dir": "dl", "file": archive.name, "sha256": _sha(archive)}
    return _cfg(tmp_path, source="cifar100", archive=pin, **over)


def _data_step(tmp_path: Path, cfg: EigenstructuresConfig, seeds: list[int]) -> dict[str, Any]:
    saved: dict[str, Any] = {}
    ctx = SimpleNamespace(
        cfg=cfg,
        root=tmp_path,
        seeds=seeds,
        progress=lambda msg: None,
        save=lambda name, tensors, **kw: saved.__setitem__(name, tensors),
    )
    STUDY.step("data").implementation("full")(ctx)  # type: ignore[arg-type]
    return saved


def test_unit_rows_rank_neighbours_as_cosine_similarity() -> None:
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(25, 40)) * rng.uniform(0.1, 10, (25, 1))
    unit = images.unit_rows(rows, pixels=False, index=np.arange(25))
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0)
    cos = rows @ rows.T / np.outer(*[np.linalg.norm(rows, axis=1)] * 2)
    dist = np.linalg.norm(unit[:, None] - unit[None], axis=2)
    np.testing.assert_allclose(dist**2, 2 - 2 * cos, atol=1e-12)
    np.testing.assert_array_equal(np.argsort(dist, axis=1)[:, 1:], np.argsort(-cos, axis=1)[:, 1:])
    # pixels: standardised per image (brightness and contrast drop out)
    pix = images.unit_rows(np.stack([rows[0], 3 * rows[0] + 7]), pixels=True, index=np.arange(2))
    np.testing.assert_allclose(pix[0], pix[1], atol=1e-12)
    np.testing.assert_allclose(pix.sum(axis=1), 0.0, atol=1e-12)
    flat = np.vstack([rows[:2], np.full((1, 40), 0.5)])
    with pytest.raises(ValueError, match="test image 17: constant pixels"):
        images.unit_rows(flat, pixels=True, index=np.array([3, 5, 17]))
    with pytest.raises(ValueError, match="test image 17: an all-zero feature row"):
        images.unit_rows(flat * [[1], [1], [0]], pixels=False, index=np.array([3, 5, 17]))


def test_sphere_knn_distance_is_that_of_uniform_points() -> None:
    from sklearn.neighbors import NearestNeighbors

    pts = mf.sphere(3000, 0.0, 0, 0).points
    dist, _ = NearestNeighbors(n_neighbors=11).fit(pts).kneighbors(pts)
    assert dist[:, 10].mean() == pytest.approx(images.sphere_knn_distance(3000, 10), rel=0.03)


def test_image_sample_keeps_distances_scales_and_has_the_graph_oracle() -> None:
    rng = np.random.default_rng(1)
    unit = images.unit_rows(rng.normal(size=(60, 200)), False, np.arange(60))
    w = images.image_sample(unit, knn=5, m=6, spacing=0.3)
    assert w.points.shape == (60, 60) and w.points.dtype == np.float32  # d > n: n coordinates
    before = np.linalg.norm(unit[:, None] - unit[None], axis=2)
    after = np.linalg.norm(w.points[:, None].astype(float) - w.points[None], axis=2)
    np.testing.assert_allclose(after, before * (after.max() / before.max()), atol=1e-5)
    kth = np.sort(after, axis=1)[:, 5]
    assert kth.mean() == pytest.approx(0.3, rel=1e-5)
    assert np.all(w.density == 1.0) and w.functions.shape == (60, 6)
    np.testing.assert_allclose(np.mean(w.functions**2, axis=0), 1.0, rtol=1e-8)
    assert abs(w.eigenvalues[0]) < 1e-8 and np.all(np.diff(w.eigenvalues) >= 0)


def test_full_data_step_reads_cifar100_pixels_and_stl10_features(tmp_path: Path) -> None:
    cfg = _cifar_cfg(tmp_path)
    saved = _data_step(tmp_path, cfg, [0, 1])
    assert set(saved) == {"sphere", "images"}
    got = saved["images"]
    # 3072 pixels > 30 images: the sample's principal coordinates, one per image
    assert got["points"].shape == (2, 30, 30) and got["functions"].shape == (2, 30, 6)
    assert not np.allclose(got["points"][0], got["points"][1])  # each seed draws its own images
    spacing = images.sphere_knn_distance(cfg.data.n_points, 5)
    for pts in got["points"]:
        d = np.sort(np.linalg.norm(pts[:, None] - pts[None], axis=2), axis=1)
        assert d[:, 5].mean() == pytest.approx(spacing, rel=1e-4)

    x = _circle_images(24, 96, 1)
    labels = np.arange(24) % 10 + 1
    write_stl10(tmp_path / "dl" / "stl10_binary.tar.gz", x, labels)
    feats = np.random.default_rng(3).normal(size=(24, 7)).astype(np.float32)
    np.save(tmp_path / "dl" / "clip.npy", feats)
    stl = _cfg(
        tmp_path,
        source="stl10",
        archive={
            "dir": "dl",
            "file": "stl10_binary.tar.gz",
            "sha256": _sha(tmp_path / "dl" / "stl10_binary.tar.gz"),
        },
        features_file={"dir": "dl", "file": "clip.npy", "sha256": _sha(tmp_path / "dl/clip.npy")},
        n_points=20,
    )
    assert stl.images is not None
    pool = images.load_pool(tmp_path, stl.images)
    assert not pool.pixels
    np.testing.assert_array_equal(pool.rows, feats)
    worlds = images.image_worlds(pool, stl.images, 1, 0, 150)
    assert worlds[0].points.shape == (20, 7)  # 7 features < 20 images: kept as they are
    raw = images.load_pool(tmp_path, dataclasses.replace(stl.images, features_file=None))
    assert raw.pixels and raw.rows.shape == (24, 3 * 96 * 96)
    np.testing.assert_array_equal(raw.rows, x.reshape(24, -1))


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[EigenstructuresConfig, type, str]]:
    archive, _ = _cifar100(tmp_path / "dl")
    good = {"dir": "dl", "file": archive.name, "sha256": _sha(archive)}
    dl = tmp_path / "dl"
    np.save(dl / "few.npy", np.ones((39, 4)))
    np.save(dl / "flat.npy", np.ones(40))
    np.save(dl / "nan.npy", np.where(np.eye(40, 4) > 0, np.nan, 1.0))
    np.save(dl / "objects.npy", np.array([{"a": 1}] * 40, dtype=object), allow_pickle=True)
    write_stl10(dl / "short.tar.gz", _circle_images(3, 96, 2), np.ones(3))
    short = dl / "short.tar.gz"
    # the same archive with test_X.bin one byte short
    with tarfile.open(short) as tf:
        blobs = {m.name: tf.extractfile(m).read() for m in tf if m.isfile()}  # type: ignore[union-attr]
    blobs["stl10_binary/test_X.bin"] = blobs["stl10_binary/test_X.bin"][:-1]
    with tarfile.open(short, "w:gz") as tf:
        for name, blob in blobs.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))

    def feats(name: str) -> dict[str, str]:
        return {"dir": "dl", "file": name, "sha256": _sha(dl / name)}

    stl = {"dir": "dl", "file": "short.tar.gz", "sha256": _sha(short)}
    return {
        "wrong sha": (
            _cfg(tmp_path, archive={**good, "sha256": "0" * 64}),
            DownloadError,
            "sha256 mismatch",
        ),
        "missing": (
            _cfg(tmp_path, archive={**good, "file": "absent.tar.gz"}),
            DownloadError,
            r"absent.tar.gz: missing; download https://www.cs.toronto.edu/.*MD5 eb9058c3",
        ),
        "short file": (
            _cfg(tmp_path, source="stl10", archive=stl),
            DownloadError,
            "not a whole number of 27648-byte images",
        ),
        "feature count": (
            _cfg(tmp_path, archive=good, features_file=feats("few.npy")),
            ValueError,
            "39 feature rows for the 40 test images",
        ),
        "feature shape": (
            _cfg(tmp_path, archive=good, features_file=feats("flat.npy")),
            ValueError,
            r"numeric \(images, dims\) array, got float64 \(40,\)",
        ),
        "feature values": (
            _cfg(tmp_path, archive=good, features_file=feats("nan.npy")),
            ValueError,
            "4 non-finite value",
        ),
        "pickled features": (
            _cfg(tmp_path, archive=good, features_file=feats("objects.npy")),
            ValueError,
            "not a numeric .npy array",
        ),
        "feature sha": (
            _cfg(tmp_path, archive=good, features_file={**feats("few.npy"), "sha256": "1" * 64}),
            DownloadError,
            "few.npy: sha256 mismatch",
        ),
        "too many images": (
            _cfg(tmp_path, archive=good, n_points=41, functions=6),
            ValueError,
            "n_points = 41, but the cifar100 test split of cifar-100-python.tar.gz has 40 images",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "wrong sha",
        "missing",
        "short file",
        "feature count",
        "feature shape",
        "feature values",
        "pickled features",
        "feature sha",
        "too many images",
    ],
)
def test_bad_inputs_fail_with_clear_errors_before_any_world(tmp_path: Path, case: str) -> None:
    cfg, error, message = _bad_inputs(tmp_path)[case]
    saved: dict[str, Any] = {}
    ctx = SimpleNamespace(
        cfg=cfg,
        root=tmp_path,
        seeds=[0],
        progress=lambda msg: None,
        save=lambda name, tensors, **kw: saved.__setitem__(name, tensors),
    )
    with pytest.raises(error, match=message):
        STUDY.step("data").implementation("full")(ctx)  # type: ignore[arg-type]
    assert saved == {}  # refused before the first world (the sphere) is drawn


def test_params_images_section() -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    cfg = study_config(EigenstructuresConfig, params, SLUG, "full")
    assert "images" in cfg.data.manifolds and cfg.images is not None
    assert cfg.basis_size("images") == 20 and cfg.basis_size("sphere") == cfg.model.k == 50
    assert f"{SLUG}.full.images.archive.sha256" in [
        p.split(":")[0] for p in unpinned(cfg, f"{SLUG}.full")
    ]
    mini = study_config(EigenstructuresConfig, params, SLUG, "mini")
    assert mini.images is None and mini.basis_size("sphere") == mini.model.k
    params[SLUG]["mini"]["data"]["manifolds"] = ["sphere", "images"]
    with pytest.raises(
        ParamsError,
        match=r"mini\.images: got None; allowed: a section \(data\.manifolds lists images\)",
    ):
        study_config(EigenstructuresConfig, params, SLUG, "mini")
    params[SLUG]["mini"]["data"]["manifolds"] = ["sphere"]
    full = params[SLUG]["full"]["images"]
    for key, value, message in (
        ("functions", 3, r"functions must be at least eval.groups \(4\)"),
        ("knn", 4000, r"below n_points \(4000\)"),
        ("source", "cifar10", "one of 'cifar100', 'stl10'"),
        ("features_file", {"dir": "d", "file": "", "sha256": ""}, "a .npy file name, or null"),
    ):
        bad = {**full, key: value}
        params[SLUG]["full"]["images"] = bad
        with pytest.raises(ParamsError, match=message):
            study_config(EigenstructuresConfig, params, SLUG, "full")


def test_full_chain_over_the_image_world(tmp_path: Path) -> None:
    """data -> fit -> evaluate of the full profile, sphere and a tiny CIFAR-100 archive; the image
    world's networks end in images.k outputs, the sphere's in model.k."""
    archive, _ = _cifar100(tmp_path / "ws" / "dl")
    params = _images_params(
        tmp_path, archive={"dir": "dl", "file": archive.name, "sha256": _sha(archive)}
    )
    params["lab"]["profile"] = "full"
    metrics, claims = run_chain(make_workspace(tmp_path / "ws", params), SLUG)
    assert metrics["profile"] == "full" and len(claims) == 3
    m = metrics["metrics"]
    for key in ("learned/capture/g0", "learned/capture/g2", "le/capture/all", "learned/gap"):
        assert np.isfinite(m[f"images/{key}"]["mean"]), key
    assert "images/learned/spearman" not in m  # the density of images is unknown (uniform)
    fit = tmp_path / "ws" / "models" / SLUG / "fit"
    outputs = {}
    for name in ("sphere", "images"):
        state, _ = load_tensors(next(fit.rglob(f"{name}_learned.safetensors")), study=SLUG)
        # the full profile's network: MLP, Transformer encoder, linear head (nets.<seed>.<i>)
        assert any(".self_attn." in k for k in state)
        head = max(int(k.split(".")[2]) for k in state if k.startswith("nets.0."))
        outputs[name] = state[f"nets.0.{head}.weight"].shape[0]
    assert outputs == {"sphere": 10, "images": 6}
    tables = (tmp_path / "ws" / "reports" / SLUG / "tables.md").read_text()
    assert "| images | learned |" in tables and "world images: per seed n test images" in tables
