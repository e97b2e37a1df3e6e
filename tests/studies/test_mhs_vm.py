"""mhs_vm (arXiv 2406.05992): the VM-UNet arms, the loss, the paired augmentation and the metrics
against known answers, the claims both ways, the config's errors and the full profile's ISIC
loader on tiny files written here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from subspacelab.api import Metrics
from subspacelab.config import ParamsError, study_config
from subspacelab.studies.mhs_vm import core, full
from subspacelab.studies.mhs_vm.config import MhsVmConfig
from subspacelab.studies.mhs_vm.study import STUDY
from tests.helpers import tiny_params


def _net(arm: str, dims: list[int], levels: int = 2) -> core.VMUNet:
    return core.VMUNet(arm, 32, 4, dims, [1] * levels, [1] * levels, 4, 2, 4, 0.5, 0.2)


@pytest.mark.parametrize("arm", core.ARMS)
def test_arms_map_images_to_one_logit_per_pixel(arm: str) -> None:
    torch.manual_seed(0)
    net = _net(arm, [8, 16]).eval()
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 32, 32)
    three = core.VMUNet(arm, 32, 2, [8, 16, 32], [1, 2, 1], [1, 1, 2], 4, 2, 4, 0.0, 0.1).eval()
    assert three(torch.rand(1, 3, 32, 32)).shape == (1, 32, 32)


def test_mhs_has_fewer_parameters_and_gfu_adds_none() -> None:
    count = {arm: sum(p.numel() for p in _net(arm, [16, 32]).parameters()) for arm in core.ARMS}
    assert count["mhs_gfu"] == count["mhs_sum"] < count["ss2d"]


def test_unpatch_is_the_inverse_of_patching() -> None:
    x = torch.arange(2 * 4 * 4 * 3, dtype=torch.float32).view(2, 4, 4, 3)
    patches = x.view(2, 2, 2, 2, 2, 3).permute(0, 1, 3, 2, 4, 5).reshape(2, 2, 2, 12)
    torch.testing.assert_close(core.VMUNet._unpatch(patches, 2), x)


def test_bce_dice_by_hand() -> None:
    logits = torch.tensor([[[0.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    bce = float(np.log(2))
    dice = (2 * 0.5 + 1) / (2.0 + 1.0 + 1)
    assert float(core.bce_dice(logits, mask)) == pytest.approx(bce + 1 - dice)
    sure = torch.tensor([[[20.0, -20.0], [-20.0, -20.0]]])
    assert float(core.bce_dice(sure, mask)) == pytest.approx(0.0, abs=1e-6)


def test_augmentation_moves_image_and_mask_together() -> None:
    """The mask channel is a copy of image channel 0, so after the same flips and rotation it
    must still equal it; the draw depends only on the generator."""
    img = torch.rand(6, 3, 16, 16)
    batch = torch.cat([img, img[:, :1]], 1)
    out = core.augment(batch, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out[:, 3], out[:, 0])
    torch.testing.assert_close(out, core.augment(batch, torch.Generator().manual_seed(0)))
    assert not torch.equal(out, batch)


def test_segmentation_metrics_by_hand() -> None:
    prob = torch.tensor([[0.9, 0.8, 0.2, 0.1]])
    mask = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    m = core.seg_metrics(prob, mask, 0.5)  # tp 1, fp 1, fn 1, tn 1
    assert m == pytest.approx({"miou": 1 / 3, "dsc": 0.5, "acc": 0.5, "sens": 0.5, "spec": 0.5})


def test_bad_arms_and_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown arm"):
        core.mixer("mamba", 8, 4, 4, 2, 4, 0.0)
    with pytest.raises(ValueError, match="divisible"):
        core.VMUNet("ss2d", 30, 4, [8, 16], [1, 1], [1, 1], 4, 2, 4, 0.0, 0.0)


def _m(ss2d: list[float], mhs: list[float], mhs_params: float = 30000.0) -> Metrics:
    n = len(ss2d)
    return Metrics(
        {
            "lesions/ss2d/dsc": ss2d,
            "lesions/mhs_gfu/dsc": mhs,
            "lesions/ss2d/miou": [v * 0.8 for v in ss2d],
            "lesions/mhs_gfu/miou": [v * 0.8 for v in mhs],
            "lesions/all_foreground/dsc": [0.3] * n,
            "lesions/ss2d/params": [42000.0] * n,
            "lesions/mhs_gfu/params": [mhs_params] * n,
        }
    )


def test_claims_hold_fail_and_are_inconclusive() -> None:
    checks = {c.id: c.check for c in STUDY.claims}
    better = _m([0.80, 0.82, 0.81], [0.83, 0.85, 0.84])
    worse = _m([0.80, 0.82, 0.81], [0.76, 0.78, 0.77])
    unsure = _m([0.80, 0.82, 0.81], [0.84, 0.78, 0.83])
    for cid in ("non_inferior", "strict_gain"):
        assert checks[cid](better).verdict == "holds", cid
        assert checks[cid](worse).verdict == "does not hold", cid
        assert checks[cid](unsure).verdict == "inconclusive", cid
    assert checks["fewer_params"](better).verdict == "holds"
    assert checks["fewer_params"](_m([0.8] * 3, [0.8] * 3, 42000.0)).verdict == "does not hold"
    # untrained nets (below the all-lesion control) cannot pass non-inferiority
    untrained = _m([0.10, 0.12, 0.11], [0.10, 0.12, 0.11])
    assert checks["non_inferior"](untrained).verdict == "does not hold"


@pytest.mark.parametrize(
    ("section", "change", "field"),
    [
        ("model", {"heads": 3}, "dims"),
        ("model", {"enc_depths": [1]}, "enc_depths"),
        ("data", {"blobs": [2, 1]}, "blobs"),
        ("data", {"size": 36}, "data"),
        ("model", {"arms": ["mamba"]}, "arms"),
    ],
)
def test_config_errors_name_the_field(section: str, change: dict, field: str) -> None:
    params = tiny_params(["mhs_vm"])
    params["mhs_vm"]["mini"][section].update(change)
    with pytest.raises(ParamsError, match=field):
        study_config(MhsVmConfig, params, "mhs_vm", "mini")


def test_full_profile_lists_its_pins() -> None:
    params = tiny_params(["mhs_vm"])
    cfg = study_config(MhsVmConfig, params, "mhs_vm", "full")
    assert cfg.data.source == "isic" and cfg.model.dims == [96, 192, 384, 768]
    assert set(cfg.data.unpinned()) == {"url", "sha256"}


def _write_split(root: Path, split: str, n: int, size: int) -> None:
    from PIL import Image

    (root / split / "images").mkdir(parents=True)
    (root / split / "masks").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = rng.integers(0, 256, size=(size, size + 4, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / split / "images" / f"ISIC_{i:07d}.jpg")
        mask = np.zeros((size, size + 4), dtype=np.uint8)
        mask[: size // 2] = 255
        Image.fromarray(mask).save(root / split / "masks" / f"ISIC_{i:07d}_segmentation.png")


def test_isic_loader_reads_vm_unets_layout(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    root = tmp_path / "data" / "isic2018"
    _write_split(root, "train", 3, 12)
    _write_split(root, "val", 2, 12)
    folder = full.find_split(tmp_path, "val")
    assert folder == root / "val"
    x, y = full.read_split(folder, 8)
    assert x.shape == (2, 3, 8, 8) and y.shape == (2, 8, 8)
    assert x.min() >= 0.0 and x.max() <= 1.0
    np.testing.assert_array_equal(y[0, :4], 1.0)
    np.testing.assert_array_equal(y[0, 4:], 0.0)
    (root / "train" / "masks" / "ISIC_0000000_segmentation.png").unlink()
    with pytest.raises(ValueError, match="3 images and 2 masks"):
        full.read_split(root / "train", 8)
    with pytest.raises(FileNotFoundError, match="test/images"):
        full.find_split(tmp_path, "test")
