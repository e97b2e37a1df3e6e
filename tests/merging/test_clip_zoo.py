"""merging.clip_zoo: the full task zoo read back (CLIP's preprocessing, the encoder wrapper, the
zoo on disk as a Zoo whose backbone is the image encoder), with a stand-in for CLIP's tower."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from subspacelab.io import save_tensors, write_json
from subspacelab.merging import clip_zoo
from subspacelab.merging.bench import ZOO_SLUG, load_zoo, task_accuracies, tune_and_test

RNG = np.random.default_rng(0)


def test_image_files_resize_and_centre_crop(tmp_path: Path) -> None:
    img = np.zeros((20, 40, 3), dtype=np.uint8)
    img[:, 10:30] = 255  # the centre 20x20 square is white
    Image.fromarray(img).save(tmp_path / "a.png")
    x, y = clip_zoo.ImageFiles([(str(tmp_path / "a.png"), 3)], 10)[0]
    assert x.shape == (3, 10, 10) and int(y) == 3
    # only the white centre survives the crop (bicubic blurs the outermost columns a little)
    assert int(x[:, :, 1:-1].min()) == 255 and int(x.min()) > 200


def test_image_encoder_normalises_and_chunks() -> None:
    torch.manual_seed(0)
    enc = clip_zoo.ImageEncoder(nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5)), chunk=3)
    x = torch.randint(0, 256, (7, 3, 4, 4), dtype=torch.uint8)
    feats = enc(x)
    assert feats.shape == (7, 5)
    assert torch.allclose(feats.norm(dim=1), torch.ones(7), atol=1e-6)
    # uint8 and [0, 1] floats are the same images; chunking changes nothing
    assert torch.allclose(enc(x.float() / 255.0), feats, atol=1e-6)
    assert torch.allclose(clip_zoo.ImageEncoder(enc.encoder, chunk=100)(x), feats, atol=1e-6)


class _Tower(nn.Module):
    """A tiny stand-in for CLIP's image tower."""

    def __init__(self, d: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, d, 4, stride=4)
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.conv1(x).mean((2, 3)))


def _task(root: Path, n: int = 8) -> None:
    """A prepared task: ``n`` 8x8 images of two classes (dark and bright), index.json."""
    rows = []
    for i in range(n):
        img = np.full((8, 8, 3), 200 if i % 2 else 30, dtype=np.uint8)
        Image.fromarray(img).save(root / f"{i}.png")
        rows.append([f"{i}.png", i % 2])
    write_json(
        root / "index.json",
        {
            "classnames": ["dark", "bright"],
            "splits": {"train": rows[:2], "val": rows, "test": rows},
        },
    )


def test_clip_zoo_loads_back_as_a_zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    data_dir, zoo_dir = tmp_path / "data", tmp_path / "zoo"
    tasks = ["MNIST", "SVHN"]
    base = {k: v.clone() for k, v in clip_zoo.ImageEncoder(_Tower()).state_dict().items()}
    tensors = {f"base.{k}": v for k, v in base.items()}
    for t in tasks:
        (data_dir / t).mkdir(parents=True)
        _task(data_dir / t)
        tensors.update(
            {f"head.h1.{t}.weight": torch.randn(2, 4), f"head.h1.{t}.bias": torch.zeros(2)}
        )
        tensors.update(
            {f"ft.h1.fft.{t}.{k}": v + 0.01 * torch.randn_like(v) for k, v in base.items()}
        )
    zoo_dir.mkdir()
    save_tensors(zoo_dir / "seed0.safetensors", tensors, study=ZOO_SLUG, kind="zoo")
    index = {"backbone": clip_zoo.BACKBONE, "arch": "stand-in", "pretrained": "", "image_size": 8}
    index |= {"tasks": tasks, "heads": ["h1"], "regimes": ["fft"], "hidden": [], "lora_rank": 4}
    write_json(zoo_dir / "index.json", index)
    monkeypatch.setattr(clip_zoo, "clip_encoder", lambda arch, pr: clip_zoo.ImageEncoder(_Tower()))

    zoo = load_zoo(data_dir, zoo_dir, 0)
    assert isinstance(zoo, clip_zoo.ClipZoo) and zoo.tasks == tasks and zoo.arch == "stand-in"
    assert set(zoo.heads) == {"h1"} and set(zoo.finetuned) == {("h1", "fft")}
    assert [x.shape for x in zoo.x["test"]] == [(8, 3, 8, 8)] * 2 and zoo.x["train"] == []
    assert [y.tolist() for y in zoo.y["val"]] == [[0, 1] * 4] * 2
    assert all(torch.equal(zoo.base[k], base[k]) for k in base)
    accs = task_accuracies(zoo.backbone(), zoo.base, zoo.heads["h1"], zoo.x["test"], zoo.y["test"])
    assert len(accs) == 2 and all(0.0 <= a <= 1.0 for a in accs)
    tv = {k: zoo.finetuned[("h1", "fft")][0][k] - zoo.base[k] for k in zoo.base}
    alpha, test = tune_and_test(zoo, "h1", tv, [0.0, 1.0])
    assert alpha in (0.0, 1.0) and len(test) == 2


def test_read_task_makes_paths_absolute(tmp_path: Path) -> None:
    _task(tmp_path, 4)
    index = clip_zoo.read_task(tmp_path)
    assert index.classnames == ["dark", "bright"]
    assert index.splits["test"][1] == (str(tmp_path / "1.png"), 1)
    x, y = clip_zoo.load_images(index.splits["test"], 8)
    assert x.shape == (4, 3, 8, 8) and x.dtype == torch.uint8 and y.tolist() == [0, 1, 0, 1]
    empty_x, empty_y = clip_zoo.load_images([], 8)
    assert empty_x.shape == (0, 3, 8, 8) and empty_y.shape == (0,)
