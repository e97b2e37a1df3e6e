"""flora full profile: the VTAB-1k reader on tiny files in the NOAH layout, the pinned archive,
adapter placement and budget matching on a ConvNeXt-shaped stand-in, and the fit step end to end
(Lightning) read by the study's evaluate step and claims unchanged."""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from subspacelab.adapters import FLoRA, LoRA
from subspacelab.adapters.budget import flora_ranks, flora_total, lora_total, match_budgets
from subspacelab.api import Metrics
from subspacelab.config import study_config
from subspacelab.data.download import DownloadError
from subspacelab.io import sha256_file
from subspacelab.nets.training import LocalEnv
from subspacelab.studies.flora import full
from subspacelab.studies.flora.config import FloraConfig
from subspacelab.studies.flora.study import CLAIMS, STUDY
from tests.helpers import tiny_params


def _vtab_zip(path: Path, tasks: list[str], n_train: int = 12, n_test: int = 6) -> None:
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as zf:
        for task in tasks:
            for split, n in (("train800val200", n_train), ("test", n_test)):
                lines = []
                for i in range(n):
                    label = i % 2
                    img = np.full((10, 14, 3), 220 if label else 20, dtype=np.uint8)
                    img = (img + rng.integers(0, 20, img.shape)).astype(np.uint8)
                    name = f"images/{split}_{i}.jpg"
                    buf = Path(path.parent / "tmp.png")
                    Image.fromarray(img).save(buf)
                    zf.write(buf, f"vtab-1k/{task}/{name}")
                    lines.append(f"{name} {label}")
                zf.writestr(f"vtab-1k/{task}/{split}.txt", "\n".join(lines) + "\n")


class _Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(d, d, 3, padding=1, groups=d)
        self.fc1, self.fc2 = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_dw(x).permute(0, 2, 3, 1)
        return x + self.fc2(torch.relu(self.fc1(y))).permute(0, 3, 1, 2)


class _ConvNeXtLike(nn.Module):
    """Stem conv, a depthwise + pointwise-MLP block, a down-sampling conv, a head."""

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 4, stride=4)
        self.stages = nn.Sequential(_Block(8), nn.Conv2d(8, 16, 2, stride=2), _Block(16))
        self.head = nn.Linear(16, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)).mean((2, 3)))


def test_vtab_reader_and_images(tmp_path: Path) -> None:
    _vtab_zip(tmp_path / "v.zip", ["dtd", "svhn"])
    with zipfile.ZipFile(tmp_path / "v.zip") as zf:
        zf.extractall(tmp_path / "x")
    dirs = full.find_task_dirs(tmp_path / "x", ["svhn", "dtd"])
    splits = full.read_vtab_task(dirs["dtd"])
    assert {s: len(r) for s, r in splits.items()} == {"train": 12, "test": 6}
    assert [y for _, y in splits["test"]][:4] == [0, 1, 0, 1]
    x, y = full.VtabImages(splits["train"], 16)[1]
    assert x.shape == (3, 16, 16) and int(y) == 1 and float(x.mean()) > 1.0  # bright, normalised
    with pytest.raises(FileNotFoundError, match="kitti"):
        full.find_task_dirs(tmp_path / "x", ["kitti"])


def test_adapter_placement_and_budgets() -> None:
    net = _ConvNeXtLike(5)
    names = [n for n, _ in full.adaptable_layers(net)]
    assert "head" not in names and not any("conv_dw" in n for n in names)
    assert "stem" in names and "stages.1" in names and "stages.2.fc1" in names
    layers = [m for _, m in full.adaptable_layers(net)]
    (match,) = match_budgets(layers, [round(0.5 * sum(m.weight.numel() for m in layers))], 2)
    assert match.lora_params == lora_total(layers, match.lora_rank)
    assert match.flora_params == flora_total(layers, match.flora_rank, 2)
    full.adapt(net, "flora", match.flora_rank, 2, 4.0, 0.01)
    head = sum(p.numel() for p in net.head.parameters())
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == match.flora_params + head
    assert {(m.scale, m.dropout.p) for m in net.modules() if isinstance(m, FLoRA)} == {(4.0, 0.01)}
    lora_net = _ConvNeXtLike(5)
    full.adapt(lora_net, "lora", match.lora_rank, 2, 4.0, 0.01)
    # the same scale and input dropout for both adapters
    assert {(m.scale, m.dropout.p) for m in lora_net.modules() if isinstance(m, LoRA)} == {
        (4.0, 0.01)
    }
    assert flora_ranks(nn.Conv2d(3, 8, 4), 16, 2) == [3, 8, 2, 2]


def test_pretrain_step_refuses_unpinned_archive_and_extracts_pinned(tmp_path: Path) -> None:
    _vtab_zip(tmp_path / "vtab-1k.zip", ["dtd"])
    cfg = study_config(FloraConfig, tiny_params(["flora"]), "flora", "full")
    vtab = dataclasses.replace(
        cfg.data.vtab,
        root=str(tmp_path / "cache"),
        url=(tmp_path / "vtab-1k.zip").as_uri(),
        tasks=["dtd"],
    )
    ctx = SimpleNamespace(
        cfg=dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, vtab=vtab)),
        out=tmp_path / "out",
        progress=lambda m: None,
    )
    ctx.out.mkdir()
    with pytest.raises(DownloadError, match="must be pinned"):
        full.pretrain_step(ctx)  # type: ignore[arg-type]
    pinned = dataclasses.replace(vtab, sha256=sha256_file(tmp_path / "vtab-1k.zip"))
    ctx.cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, vtab=pinned))
    out = full.pretrain_step(ctx)  # type: ignore[arg-type]
    assert out.metrics == {"dtd_train": 12.0, "dtd_test": 6.0}
    assert (ctx.out / "index.json").is_file()


def test_fit_step_end_to_end(tmp_path: Path) -> None:
    _vtab_zip(tmp_path / "v.zip", ["dtd"])
    with zipfile.ZipFile(tmp_path / "v.zip") as zf:
        zf.extractall(tmp_path / "x")
    (tmp_path / "pre").mkdir()
    (tmp_path / "fit").mkdir()
    (tmp_path / "pre" / "index.json").write_text(
        f'{{"dtd": "{tmp_path / "x" / "vtab-1k" / "dtd"}"}}'
    )
    cfg = study_config(FloraConfig, tiny_params(["flora"]), "flora", "full")
    cfg = dataclasses.replace(
        cfg,
        data=dataclasses.replace(
            cfg.data, vtab=dataclasses.replace(cfg.data.vtab, tasks=["dtd"], image_size=16)
        ),
        model=dataclasses.replace(cfg.model, budgets=[0.5]),  # matched within 10 % here
        train=dataclasses.replace(
            cfg.train,
            epochs=2,
            batch_size=6,
            schedule=dataclasses.replace(cfg.train.schedule, warmup_epochs=1, workers=0),
        ),
    )
    env = LocalEnv()
    ctx = SimpleNamespace(
        cfg=cfg,
        seeds=[0],
        out=tmp_path / "fit",
        inputs={"pretrain": tmp_path / "pre"},
        lab=env.lab,
        device=env.device,
        progress=lambda m: None,
    )
    full.fit_step(ctx, lambda n: _ConvNeXtLike(n))  # type: ignore[arg-type]
    report = STUDY.step("evaluate").implementation("full")(
        SimpleNamespace(inputs={"fit": tmp_path / "fit"}, seeds=[0], profile="full")  # type: ignore[arg-type]
    )
    assert "deviations" not in report.tables
    for arm in ("linear_probe", "full_ft", "flora_0.5", "lora_0.5"):
        assert 0.0 <= report.metrics[f"{arm}/acc"][0] <= 1.0
    assert report.metrics["linear_probe/params"][0] == 0.0
    assert 0.0 < report.metrics["flora_0.5/budget_frac"][0] <= 0.5
    # full FT also trains the depthwise convs and biases, beyond the adaptable weights
    assert report.metrics["full_ft/budget_frac"][0] > 1.0
    results = {c.id: c.check(Metrics(report.metrics)) for c in CLAIMS}
    assert len(results) == len(CLAIMS) and all(r.tests for r in results.values())
