"""dsl (arXiv 2206.09068): the miniature's networks, the claims both ways, the config's errors
and the full profile's ISIC-2019 loaders on tiny files written here."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from subspacelab.api import Metrics
from subspacelab.config import ParamsError, study_config
from subspacelab.data.download import DownloadError
from subspacelab.studies.dsl import core, full
from subspacelab.studies.dsl.config import DslConfig
from subspacelab.studies.dsl.study import STUDY
from tests.helpers import tiny_params


def test_backbone_maps_48_to_6_and_the_models_have_their_heads() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 48, 48)
    net = core.embedder([16, 32, 64, 64], [2, 2, 2, 1], [8, 2], 32, 0.01, 1.2).eval()
    f, a = net.features(x)
    assert f.shape == (2, 64, 6, 6) and a.shape == (2, 1, 6, 6)
    assert ((a > 0) & (a < 1)).all()
    assert net(x).shape == (2, 32)
    clf = core.Classifier(core.cnn([16, 32], [2, 2]), 32, 8, 6).eval()
    assert clf(x).shape == (2, 6) and clf.embedding(x).shape == (2, 8)
    torch.testing.assert_close(clf.head(clf.features(x)), clf(x))
    with pytest.raises(ValueError, match="one stride per width"):
        core.cnn([16, 32], [2])


def _m(
    k: list[float],
    nmi: dict[str, list[float]],
    r1: dict[str, list[float]],
    dice: tuple[list[float], list[float]],
) -> Metrics:
    values: dict[str, list[float]] = {"lesions/dsl/k_found": k}
    values |= {f"lesions/{a}/nmi": v for a, v in nmi.items()}
    values |= {f"lesions/{a}/r1": v for a, v in r1.items()}
    values |= {"lesions/dsl/dice": dice[0], "lesions/ce/dice": dice[1]}
    values |= {"lesions/untrained/dice": [0.2] * len(k)}
    return Metrics(values)


BASE = [0.60, 0.62, 0.64]


def _shift(d: float, xs: list[float] = BASE) -> list[float]:
    return [x + d for x in xs]


def test_claims_hold_fail_and_are_inconclusive() -> None:
    checks = {c.id: c.check for c in STUDY.claims}
    nmi_good = {
        "dsl": _shift(0.0),
        "divconq_k1": _shift(-0.05),
        "divconq_k2": _shift(0.01),
        "divconq_k4": _shift(-0.02),
    }
    r1_good = {"dsl": _shift(0.2), "ce": _shift(0.1)}
    good = _m([2, 3, 2], nmi_good, r1_good, (_shift(0.1), BASE))
    assert {cid: f(good).verdict for cid, f in checks.items()} == dict.fromkeys(checks, "holds")

    nmi_bad = {**nmi_good, "divconq_k2": _shift(0.1)}  # the best fixed K is far better
    r1_bad = {"dsl": _shift(0.1), "ce": _shift(0.2)}
    bad = _m([1, 1, 1], nmi_bad, r1_bad, (BASE, _shift(0.1)))
    verdicts = {cid: f(bad).verdict for cid, f in checks.items()}
    assert verdicts == dict.fromkeys(checks, "does not hold")
    # (a) fails on one seed that never split
    assert checks["k_automatic"](_m([2, 1, 3], nmi_good, r1_good, (BASE, BASE))).verdict == (
        "does not hold"
    )
    # (b) fails on its R@1 half alone
    r1_only = _m([2, 2, 2], nmi_good, {"dsl": BASE, "ce": _shift(0.05)}, (BASE, BASE))
    assert checks["competitive"](r1_only).verdict == "does not hold"

    noisy = [0.60, 0.75, 0.55]
    unsure = _m(
        [2, 2, 2],
        {**nmi_good, "dsl": [0.70, 0.56, 0.60]},
        {"dsl": [0.80, 0.62, 0.70], "ce": [0.70, 0.70, 0.70]},
        (noisy, BASE),
    )
    assert checks["competitive"](unsure).verdict == "inconclusive"
    assert checks["attention_dice"](unsure).verdict == "inconclusive"


@pytest.mark.parametrize(
    ("section", "change", "field"),
    [
        ("model", {"strides": [2]}, "strides"),
        ("learners", {"divconq_k": [1, 64]}, "divconq_k"),
        ("eval", {"recall_k": [2, 4]}, "recall_k"),
        ("data", {"radius": [0.3, 0.2]}, "radius"),
        ("data", {"shapes": ["ellipse"], "hues": ["red"]}, "shapes"),
        ("data", {"source": "isic2019"}, "images_url"),
        ("data", {"source": "mura"}, "images_url"),
        (
            "data",
            {"source": "hyperkvasir", "images_url": "https://x/h.zip", "labels_url": "a"},
            "labels_url",
        ),
    ],
)
def test_config_errors_name_the_field(section: str, change: dict, field: str) -> None:
    params = tiny_params(["dsl"])
    params["dsl"]["mini"][section].update(change)
    with pytest.raises(ParamsError, match=field):
        study_config(DslConfig, params, "dsl", "mini")


def test_full_profile_lists_its_unpinned_archives() -> None:
    cfg = study_config(DslConfig, tiny_params(["dsl"]), "dsl", "full")
    assert cfg.data.source == "isic2019" and cfg.model.backbone == "resnet50"
    assert set(cfg.data.unpinned()) == {"images_sha256", "labels_sha256"}


def _write_isic(root: Path) -> Path:
    header = "image," + ",".join(full.ISIC_CLASSES) + ",UNK\n"
    rows = ["ISIC_0000000,0,1,0,0,0,0,0,0,0\n", "ISIC_0000001,0,0,0,0,0,0,0,1,0\n"]
    path = root / "gt.csv"
    path.write_text(header + "".join(rows))
    return path


def test_isic_labels_and_images_load_from_tiny_files(tmp_path: Path) -> None:
    from PIL import Image

    names, labels = full.read_isic_labels(_write_isic(tmp_path))
    assert names == ["ISIC_0000000", "ISIC_0000001"] and labels.tolist() == [1, 7]
    rgb = np.zeros((20, 40, 3), dtype=np.uint8)
    rgb[:, 10:30] = (200, 50, 10)  # the centre square of a 20×40 image
    for name in names:
        Image.fromarray(rgb).save(tmp_path / f"{name}.jpg", quality=100)
    x = full.load_images([tmp_path / f"{n}.jpg" for n in names], 10)
    assert x.shape == (2, 3, 10, 10) and x.dtype == torch.uint8
    assert abs(int(x[0, 0, 5, 5]) - 200) < 12 and abs(int(x[0, 2, 5, 5]) - 10) < 12
    with pytest.raises(FileNotFoundError, match="ISIC_0000002"):
        full.load_images([tmp_path / "ISIC_0000002.jpg"], 10)


def test_isic_csv_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("image," + ",".join(full.ISIC_CLASSES) + "\nA,1,1,0,0,0,0,0,0\n")
    with pytest.raises(ValueError, match="line 2"):
        full.read_isic_labels(path)
    path.write_text("image,MEL\nA,1\n")
    with pytest.raises(ValueError, match="missing columns"):
        full.read_isic_labels(path)


def test_splits_are_disjoint_and_seeded() -> None:
    a = full.split_indices(10, (5, 2, 3), seed=0)
    assert sorted(np.concatenate(a).tolist()) == list(range(10))
    assert all(
        np.array_equal(u, v) for u, v in zip(a, full.split_indices(10, (5, 2, 3), 0), strict=True)
    )
    with pytest.raises(ValueError, match="exceeds"):
        full.split_indices(4, (2, 2, 1), 0)


def test_each_full_dataset_lists_its_own_pins() -> None:
    cfg = study_config(DslConfig, tiny_params(["dsl"]), "dsl", "full")
    cfg.data.source, cfg.data.labels_url = "mura", ""
    assert set(cfg.data.unpinned()) == {"images_sha256"}
    assert "MURA-v1.1.zip" in cfg.data.unpinned()["images_sha256"]
    cfg.data.source = "hyperkvasir"
    assert "hyper-kvasir-labeled-images.zip" in cfg.data.unpinned()["images_sha256"]


def _png(shade: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((12, 16), shade, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _jpg(rgb: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), rgb, dtype=np.uint8)).save(buf, format="JPEG", quality=100)
    return buf.getvalue()


MURA_STUDIES = {
    "train": [
        ("XR_WRIST/patient00001/study1_positive", 2),
        ("XR_ELBOW/patient00002/study1_negative", 1),
    ],
    "valid": [("XR_HAND/patient11185/study1_negative", 1)],
}


def _mura_zip(path: Path, *, skip_image: str = "", replace: dict[str, str] | None = None) -> Path:
    """A MURA-v1.1 archive of the release's layout: per split the image list and the labelled
    studies (no headers; ``replace`` swaps a listing's text), grey PNGs in the study folders."""
    listings = {}
    with zipfile.ZipFile(path, "w") as z:
        for split, studies in MURA_STUDIES.items():
            images, labelled = [], []
            for study, n in studies:
                folder = f"MURA-v1.1/{split}/{study}"
                labelled.append(f"{folder}/,{int(study.endswith('positive'))}\n")
                for k in range(1, n + 1):
                    images.append(f"{folder}/image{k}.png\n")
                    if f"{folder}/image{k}.png" != skip_image:
                        z.writestr(f"{folder}/image{k}.png", _png(40 * k))
            listings[f"MURA-v1.1/{split}_image_paths.csv"] = "".join(images)
            listings[f"MURA-v1.1/{split}_labeled_studies.csv"] = "".join(labelled)
        for name, text in (listings | (replace or {})).items():
            z.writestr(name, text)
    return path


def test_mura_reads_both_splits_with_study_labels(tmp_path: Path) -> None:
    table = full.open_dataset("mura", _mura_zip(tmp_path / "m.zip"), tmp_path / "m")
    wrist, elbow, hand = (full.MURA_PARTS.index(p) for p in ("XR_WRIST", "XR_ELBOW", "XR_HAND"))
    assert table.labels.tolist() == [2 * wrist + 1, 2 * wrist + 1, 2 * elbow, 2 * hand]
    assert table.held_out.tolist() == [False, False, False, True]
    assert len(table.classes) == 14 and table.classes[2 * wrist + 1] == "XR_WRIST/positive"
    assert (
        table.paths[3].as_posix().endswith("valid/XR_HAND/patient11185/study1_negative/image1.png")
    )
    x = full.load_images(table.paths, 6)
    assert x.shape == (4, 3, 6, 6) and int(x[1, 0, 3, 3]) == 80 == int(x[1, 2, 3, 3])
    tr, va, te = full.dataset_split(table.held_out, (2, 1, 1), seed=0)
    assert sorted([*tr, *va]) == [0, 1, 2] and te.tolist() == [3]
    with pytest.raises(ValueError, match="held-out"):
        full.dataset_split(table.held_out, (1, 1, 2), seed=0)


def test_mura_errors_name_the_file_and_line(tmp_path: Path) -> None:
    study = "MURA-v1.1/valid/XR_HAND/patient11185/study1_negative/"
    bad_row = {"MURA-v1.1/valid_labeled_studies.csv": f"{study},yes\n"}
    with pytest.raises(ValueError, match=r"valid_labeled_studies\.csv line 1"):
        full.open_dataset("mura", _mura_zip(tmp_path / "a.zip", replace=bad_row), tmp_path / "a")
    bad_path = {"MURA-v1.1/valid_image_paths.csv": "MURA-v1.1/valid/XR_HAND/../../x.png\n"}
    with pytest.raises(ValueError, match=r"valid_image_paths\.csv line 1"):
        full.open_dataset("mura", _mura_zip(tmp_path / "b.zip", replace=bad_path), tmp_path / "b")
    missing = "MURA-v1.1/train/XR_ELBOW/patient00002/study1_negative/image1.png"
    table = full.open_dataset(
        "mura", _mura_zip(tmp_path / "c.zip", skip_image=missing), tmp_path / "c"
    )
    with pytest.raises(FileNotFoundError, match=r"image1\.png"):
        full.load_images(table.paths, 6)


HYPERKVASIR = [
    ("a1", "Lower GI", "polyps", "pathological-findings", "lower-gi-tract"),
    ("b2", "Upper GI", "pylorus", "anatomical-landmarks", "upper-gi-tract"),
    ("c3", "Lower GI", "cecum", "anatomical-landmarks", "lower-gi-tract"),
    ("d4", "Lower GI", "polyps", "pathological-findings", "lower-gi-tract"),
]


def _kvasir_zip(path: Path, *, rows: str = "", skip: str = "", member: str = "") -> Path:
    header = "Video file,Organ,Finding,Classification\n"
    body = rows or "".join(f"{n},{o},{f},{c}\n" for n, o, f, c, _ in HYPERKVASIR)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("labeled-images/image-labels.csv", header + body)
        for i, (name, _, finding, cls, organ) in enumerate(HYPERKVASIR):
            if name != skip:
                z.writestr(
                    f"labeled-images/{organ}/{cls}/{finding}/{name}.jpg", _jpg((60 * i, 0, 0))
                )
        if member:
            z.writestr(member, b"x")
    return path


def test_hyperkvasir_reads_findings_as_classes(tmp_path: Path) -> None:
    table = full.open_dataset("hyperkvasir", _kvasir_zip(tmp_path / "h.zip"), tmp_path / "h")
    assert table.classes == ("cecum", "polyps", "pylorus")
    assert table.labels.tolist() == [1, 2, 0, 1] and not table.held_out.any()
    assert [p.stem for p in table.paths] == ["a1", "b2", "c3", "d4"]
    x = full.load_images(table.paths, 4)
    assert x.shape == (4, 3, 4, 4) and abs(int(x[2, 0, 2, 2]) - 120) < 8


def test_hyperkvasir_errors(tmp_path: Path) -> None:
    short = "a1,Lower GI,polyps\n"
    with pytest.raises(ValueError, match=r"image-labels\.csv line 2"):
        full.open_dataset(
            "hyperkvasir", _kvasir_zip(tmp_path / "a.zip", rows=short), tmp_path / "a"
        )
    with pytest.raises(FileNotFoundError, match=r"c3\.jpg"):
        full.open_dataset("hyperkvasir", _kvasir_zip(tmp_path / "b.zip", skip="c3"), tmp_path / "b")
    with pytest.raises(DownloadError, match="unsafe path"):
        full.open_dataset(
            "hyperkvasir", _kvasir_zip(tmp_path / "c.zip", member="../escape.jpg"), tmp_path / "c"
        )
    assert not (tmp_path / "escape.jpg").exists() and not (tmp_path / "c").exists()
