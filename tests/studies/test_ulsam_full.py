"""ulsam's full profile (arXiv 2006.15102, spec §7): MobileNet-V2 with ULSAM against known
counts, the full params, and the report on fit outputs written by hand."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from subspacelab.api import Metrics
from subspacelab.config import ParamsError, study_config
from subspacelab.io import write_json
from subspacelab.studies.ulsam import full
from subspacelab.studies.ulsam.config import UlsamConfig
from subspacelab.studies.ulsam.study import STUDY
from tests.helpers import REPO

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def _n(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_mobilenet_v2_has_the_reference_parameter_count() -> None:
    """3,504,872 parameters: torchvision's mobilenet_v2 (width 1.0, 1000 classes)."""
    assert _n(full.build_mobilenet_v2("baseline", [15, 16])) == 3_504_872
    assert full.residual_sites() == {
        3: 24,
        5: 32,
        6: 32,
        8: 64,
        9: 64,
        10: 64,
        12: 96,
        13: 96,
        15: 160,
        16: 160,
    }


def test_ulsam_arms_on_mobilenet_v2() -> None:
    base = _n(full.build_mobilenet_v2("baseline", [15, 16]))
    replaced = _n(full.build_mobilenet_v2("replace_g4", [15, 16]))
    inserted = _n(full.build_mobilenet_v2("insert_g4", [15, 16]))
    block = 160 * 960 + 960 * 9 + 960 * 160 + 2 * (960 + 960 + 160)  # convs + BNs
    ulsam = (160 + 160) + 2 * 160 + (160 + 4) + 2 * 4  # dw, bn1, pw (grouped), bn2
    assert base - replaced == 2 * (block - ulsam)
    assert inserted - base == 2 * ulsam
    assert 1 - replaced / base > 0.15  # the paper's ≈25% saving comes from such late blocks
    net = full.build_mobilenet_v2("replace_g4", [15, 16]).eval()
    assert net(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    net.reset_head(7)
    assert net(torch.randn(2, 3, 64, 64)).shape == (2, 7)
    with pytest.raises(ValueError, match="width-keeping"):
        full.build_mobilenet_v2("replace_g4", [14])


def test_full_params_build_and_list_what_is_unpinned() -> None:
    from subspacelab.config import unpinned

    cfg = study_config(UlsamConfig, PARAMS, "ulsam", "full")
    assert cfg.model.arch == "mobilenet_v2" and cfg.seeds == [0]
    assert cfg.data.imagenet is not None and cfg.data.finegrained is not None
    assert sorted(unpinned(cfg, "ulsam.full")) == [
        "ulsam.full.data.finegrained.checksums.images.tar: the sha256 of images.tar "
        "(no checksum is published)",
        "ulsam.full.data.finegrained.checksums.lists.tar: the sha256 of lists.tar "
        "(no checksum is published)",
    ]


@pytest.mark.parametrize(
    ("section", "change", "field"),
    [
        ("model", {"sites": [14]}, "sites"),
        ("model", {"replace_groups": [3]}, "replace_groups"),
        ("train", {"finetune_epochs": 0}, "train"),
    ],
)
def test_full_config_errors_name_the_field(section: str, change: dict, field: str) -> None:
    params = yaml.safe_load(yaml.safe_dump(PARAMS))
    params["ulsam"]["full"][section].update(change)
    with pytest.raises(ParamsError, match=field):
        study_config(UlsamConfig, params, "ulsam", "full")


def test_mini_refuses_mobilenet_without_imagenet() -> None:
    params = yaml.safe_load(yaml.safe_dump(PARAMS))
    params["ulsam"]["mini"]["model"]["arch"] = "mobilenet_v2"
    params["ulsam"]["mini"]["model"]["sites"] = [15]
    with pytest.raises(ParamsError, match="model"):
        study_config(UlsamConfig, params, "ulsam", "mini")


def test_full_report_and_claims_read_the_imagenet_setting(tmp_path: Path) -> None:
    cfg = study_config(UlsamConfig, PARAMS, "ulsam", "full")
    arms = ["baseline", "insert_g4", "replace_g1", "replace_g4", "replace_g8"]
    sets = ["imagenet", "food101", "dogs", "cub200"]
    acc = {f"seed0/{s}/{a}/acc": 0.7 + 0.01 * i for s in sets for i, a in enumerate(arms)}
    (tmp_path / "fit").mkdir()
    write_json(tmp_path / "fit" / "accuracy.json", acc)
    write_json(tmp_path / "fit" / "history.json", {f"seed0/{a}": [2.0, 1.5] for a in arms})
    ctx = SimpleNamespace(
        cfg=cfg, inputs={"fit": tmp_path / "fit"}, seeds=[0], seeded=lambda: iter([0])
    )
    report = STUDY.step("report").implementation("full")(ctx)  # type: ignore[arg-type]
    assert report.metrics["imagenet/replace_g4/acc"] == [pytest.approx(0.73)]
    assert report.metrics["cub200/baseline/acc"] == [pytest.approx(0.7)]
    assert (
        report.metrics["imagenet/replace_g4/params"][0]
        < report.metrics["imagenet/baseline/params"][0]
    )
    assert [row["epoch"] for row in report.curves["train_loss"]] == [1, 2]
    verdicts = {c.id: c.check(Metrics(report.metrics)).verdict for c in STUDY.claims}
    # the claims read the imagenet metrics (the cluttered ones are absent); one seed, as the
    # paper ran, can never decide a claim on an interval
    assert verdicts == dict.fromkeys(
        ("replace_saves", "insert_helps", "subspaces_help"), "inconclusive"
    )


def test_full_data_step_checks_unpacks_and_records(tmp_path: Path) -> None:
    """The data step on tiny archives in the official layouts: ImageNet placed by the user,
    the fine-grained sets fetched (here: already in place) against their pins."""
    import dataclasses
    import hashlib

    from tests.data.imagenet_archives import tiny_imagenet_archives
    from tests.data.test_finegrained import tiny_archives

    tiny_imagenet_archives(tmp_path / "im")
    pins = tiny_archives(tmp_path / "fg")
    cfg = study_config(UlsamConfig, PARAMS, "ulsam", "full")
    im_sums = {
        n: "sha256:" + hashlib.sha256((tmp_path / "im" / n).read_bytes()).hexdigest()
        for n in cfg.data.imagenet.checksums  # type: ignore[union-attr]
    }
    data = dataclasses.replace(
        cfg.data,
        imagenet=dataclasses.replace(cfg.data.imagenet, root="im", checksums=im_sums),
        finegrained=dataclasses.replace(cfg.data.finegrained, root="fg", checksums=pins),
    )
    ctx = SimpleNamespace(
        cfg=dataclasses.replace(cfg, data=data),
        root=tmp_path,
        out=tmp_path / "out",
        progress=lambda _m: None,
    )
    (tmp_path / "out").mkdir()
    out = STUDY.step("data").implementation("full")(ctx)  # type: ignore[arg-type]
    assert out.metrics == {"imagenet_train_images": 4.0, "imagenet_val_images": 3.0}
    assert (tmp_path / "out" / "imagenet" / "val").is_dir()
    assert (tmp_path / "out" / "finegrained" / "dogs" / "lists" / "train_list.mat").is_file()
