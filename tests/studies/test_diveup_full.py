"""diveup's full profile (arXiv 2603.13571, spec §7): the VOC and ADE20K readers on tiny files
written in their released layouts, the backbone wrapper on a stand-in ViT, and the full params'
pins. Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from subspacelab.config import ParamsError, study_config, unpinned
from subspacelab.studies.diveup import full
from subspacelab.studies.diveup.config import DiveupConfig
from tests.helpers import REPO

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def _label_png(path: Path, values: np.ndarray, palette: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("P" if palette else "L", values.shape[::-1])
    im.putdata(values.flatten().tolist())
    if palette:  # VOC's colour palette: the file stores the class indices
        im.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
    im.save(path)


def _jpeg(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 255, (16, 16, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(path, quality=95)


def _labels() -> np.ndarray:
    lab = np.zeros((16, 16), dtype=np.uint8)
    lab[4:12, 4:12] = 15
    lab[0, :] = 255
    return lab


def test_voc_reader_reads_palette_pngs_and_voids(tmp_path: Path) -> None:
    base = tmp_path / "VOCdevkit" / "VOC2012"
    for k, i in enumerate(("2007_000032", "2007_000039")):
        _jpeg(base / "JPEGImages" / f"{i}.jpg", k)
        _label_png(base / "SegmentationClass" / f"{i}.png", _labels(), palette=True)
    (base / "ImageSets" / "Segmentation").mkdir(parents=True)
    (base / "ImageSets" / "Segmentation" / "train.txt").write_text("2007_000032\n2007_000039\n")
    x, y = full.voc_split(tmp_path, "train", 16, None)
    assert x.shape == (2, 3, 16, 16) and x.dtype == torch.uint8
    assert y.shape == (2, 16, 16) and set(y.unique().tolist()) == {-1, 0, 15}
    assert (y[:, 0] == -1).all() and (y[:, 4:12, 4:12] == 15).all()
    x1, _ = full.voc_split(tmp_path, "train", 8, 1)
    assert x1.shape == (1, 3, 8, 8)
    (base / "ImageSets" / "Segmentation" / "val.txt").write_text("../../etc\n")
    with pytest.raises(ValueError, match="bad image id"):
        full.voc_split(tmp_path, "val", 16, None)
    (base / "ImageSets" / "Segmentation" / "val.txt").write_text("2008_000001\n")
    with pytest.raises(FileNotFoundError, match="VOC files missing"):
        full.voc_split(tmp_path, "val", 16, None)
    with pytest.raises(FileNotFoundError, match="VOCtrainval"):
        full.voc_split(tmp_path / "nowhere", "train", 16, None)


def test_ade20k_reader_shifts_classes_and_ignores_other(tmp_path: Path) -> None:
    base = tmp_path / "ADEChallengeData2016"
    lab = np.zeros((16, 16), dtype=np.uint8)
    lab[:8] = 1
    lab[8:, 8:] = 150
    _jpeg(base / "images" / "validation" / "ADE_val_00000001.jpg", 0)
    _label_png(base / "annotations" / "validation" / "ADE_val_00000001.png", lab, palette=False)
    x, y = full.ade20k_split(tmp_path, "val", 16, None)
    assert x.shape == (1, 3, 16, 16)
    assert (y[0, :8] == 0).all() and (y[0, 8:, 8:] == 149).all() and (y[0, 8:, :8] == -1).all()
    with pytest.raises(FileNotFoundError, match="ADEChallengeData2016"):
        full.ade20k_split(tmp_path, "train", 16, None)
    _jpeg(base / "images" / "training" / "ADE_train_00000001.jpg", 1)
    with pytest.raises(FileNotFoundError, match="annotations missing"):
        full.ade20k_split(tmp_path, "train", 16, None)


def test_coco_stuff_reader_keeps_ids_and_drops_unlabeled(tmp_path: Path) -> None:
    lab = np.full((16, 16), 255, dtype=np.uint8)
    lab[:8] = 0
    lab[8:, :8] = 181
    _jpeg(tmp_path / "images" / "val2017" / "000000000139.jpg", 0)
    _label_png(tmp_path / "annotations" / "val2017" / "000000000139.png", lab, palette=False)
    x, y = full.coco_stuff_split(tmp_path, "val", 16, None)
    assert x.shape == (1, 3, 16, 16)
    assert (y[0, :8] == 0).all() and (y[0, 8:, :8] == 181).all() and (y[0, 8:, 8:] == -1).all()
    with pytest.raises(FileNotFoundError, match="train2017"):
        full.coco_stuff_split(tmp_path, "train", 16, None)


class _FakeViT(torch.nn.Module):
    """A stand-in for a timm ViT: one prefix token, 8-px patches, tokens = patch means."""

    num_prefix_tokens = 1
    num_features = 3

    def __init__(self) -> None:
        super().__init__()
        self.patch_embed = type("P", (), {"patch_size": (8, 8)})()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.nn.functional.avg_pool2d(x, 8).flatten(2).transpose(1, 2)
        return torch.cat([torch.full_like(p[:, :1], 99.0), p], dim=1)


def test_backbone_returns_the_patch_grid_without_prefix_tokens() -> None:
    b = full.Backbone(_FakeViT(), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    x = torch.rand(2, 3, 16, 24)
    t = b.tokens(x)
    assert t.shape == (2, 3, 2, 3)
    want = torch.nn.functional.avg_pool2d((x - 0.5) / 0.25, 8)
    torch.testing.assert_close(t, want)


def test_full_params_build_and_list_what_is_unpinned() -> None:
    cfg = study_config(DiveupConfig, PARAMS, "diveup", "full")
    assert cfg.data.full is not None and cfg.data.full.dataset == "voc"
    assert cfg.model.released is not None and len(cfg.model.backbones) == 4
    missing = unpinned(cfg, "diveup.full")
    assert len(missing) == 6
    assert any("diveup_sha256" in m for m in missing) and any("naf_sha256" in m for m in missing)


def test_full_params_refuse_a_half_configured_profile() -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["diveup"]["full"]["model"]["released"] = None
    with pytest.raises(ParamsError, match="released"):
        study_config(DiveupConfig, params, "diveup", "full")
