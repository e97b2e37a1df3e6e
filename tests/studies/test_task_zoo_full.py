"""task_zoo full profile: the 8 task parsers on tiny files in the real formats, pinned
downloads, the zero-shot head, fine-tuning through Lightning with a stand-in encoder for CLIP,
and the zoo read back by load_zoo (merging.clip_zoo, tested on its own in
tests/merging/test_clip_zoo.py) and merged by dc_merge unchanged."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat
from torch import nn

from subspacelab.config import study_config
from subspacelab.data.download import DownloadError, fetch
from subspacelab.data.mnist import IMAGES_MAGIC, LABELS_MAGIC, MNIST_RESOURCES
from subspacelab.io import save_tensors, write_json
from subspacelab.merging import clip_zoo
from subspacelab.merging.bench import ZOO_SLUG, load_zoo
from subspacelab.nets.training import LocalEnv, state_dict_cpu
from subspacelab.studies.dc_merge.config import MergeConfig
from subspacelab.studies.dc_merge.study import run_merges
from subspacelab.studies.task_zoo import full, lightning
from subspacelab.studies.task_zoo.config import TaskZooConfig
from tests.helpers import tiny_params

RNG = np.random.default_rng(0)


def _jpeg(w: int = 12, h: int = 10) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(RNG.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _ppm() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(RNG.integers(0, 255, (9, 9, 3), dtype=np.uint8)).save(buf, format="PPM")
    return buf.getvalue()


def _zip(path: Path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)


def _tar(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def _idx(path: Path, magic: int, arr: np.ndarray) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


def _check(index: clip_zoo.TaskIndex, out: Path, n_classes: int, counts: dict[str, int]) -> None:
    assert len(index.classnames) == n_classes
    assert {s: len(r) for s, r in index.splits.items()} == counts
    for rows in index.splits.values():
        for path, label in rows:
            assert 0 <= label < n_classes
            assert (out / path).is_file() or Path(path).is_file()


def test_parse_mnist(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    files = {k: raw / r.filename for k, r in MNIST_RESOURCES.items()}
    _idx(files["train_images"], IMAGES_MAGIC, RNG.integers(0, 255, (5, 28, 28)))
    _idx(files["train_labels"], LABELS_MAGIC, np.array([0, 1, 2, 3, 9]))
    _idx(files["test_images"], IMAGES_MAGIC, RNG.integers(0, 255, (2, 28, 28)))
    _idx(files["test_labels"], LABELS_MAGIC, np.array([4, 5]))
    index = full.parse_mnist(raw, out)
    _check(index, out, 10, {"train": 5, "test": 2})
    assert [y for _, y in index.splits["test"]] == [4, 5]
    assert Image.open(out / index.splits["train"][0][0]).size == (28, 28)


def test_parse_svhn_maps_ten_to_zero(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    for split, labels in (("train", [10, 1, 2]), ("test", [10, 3])):
        x = RNG.integers(0, 255, (32, 32, 3, len(labels)), dtype=np.uint8)
        savemat(str(raw / f"{split}_32x32.mat"), {"X": x, "y": np.array(labels)[:, None]})
    index = full.parse_svhn(raw, out)
    _check(index, out, 10, {"train": 3, "test": 2})
    assert [y for _, y in index.splits["train"]] == [0, 1, 2]


def test_parse_eurosat(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    files = {f"2750/{c}/{c}_{i}.jpg": _jpeg() for c in ("AnnualCrop", "SeaLake") for i in range(10)}
    _zip(raw / "EuroSAT.zip", files)
    index = full.parse_eurosat(raw, out)
    _check(index, out, 2, {"train": 18, "test": 2})
    assert index.classnames == ["annual crop land", "lake or sea"]


def test_parse_gtsrb(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    _zip(
        raw / "GTSRB-Training_fixed.zip",
        {f"GTSRB/Training/{c:05d}/00000_0000{i}.ppm": _ppm() for c in (0, 42) for i in range(2)},
    )
    _zip(
        raw / "GTSRB_Final_Test_Images.zip",
        {f"GTSRB/Final_Test/Images/0000{i}.ppm": _ppm() for i in range(3)},
    )
    gt = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n" + "".join(
        f"0000{i}.ppm;9;9;0;0;8;8;{c}\n" for i, c in enumerate((5, 42, 0))
    )
    _zip(raw / "GTSRB_Final_Test_GT.zip", {"GT-final_test.csv": gt.encode()})
    index = full.parse_gtsrb(raw, out)
    _check(index, out, 43, {"train": 4, "test": 3})
    assert sorted({y for _, y in index.splits["train"]}) == [0, 42]
    assert [y for _, y in index.splits["test"]] == [5, 42, 0]


def test_parse_dtd_partition_one(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    files = {
        f"dtd/images/{c}/{c}_{i}.jpg": _jpeg() for c in ("banded", "zig_zagged") for i in range(3)
    }
    files["dtd/labels/train1.txt"] = b"banded/banded_0.jpg\nzig_zagged/zig_zagged_0.jpg\n"
    files["dtd/labels/val1.txt"] = b"banded/banded_1.jpg\n"
    files["dtd/labels/test1.txt"] = b"zig_zagged/zig_zagged_2.jpg\nbanded/banded_2.jpg\n"
    _tar(raw / "dtd-r1.0.1.tar.gz", files)
    index = full.parse_dtd(raw, out)
    _check(index, out, 2, {"train": 3, "test": 2})
    assert index.classnames == ["banded", "zig zagged"]
    assert [y for _, y in index.splits["test"]] == [1, 0]


def test_parse_sun397_partition_one(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    keys = ["/a/abbey", "/b/bakery/shop"]
    files = {"SUN397/ClassName.txt": ("\n".join(keys) + "\n").encode()}
    for k in keys:
        for i in range(2):
            files[f"SUN397{k}/sun_{i}.jpg"] = _jpeg()
    _tar(raw / "SUN397.tar.gz", files)
    _zip(
        raw / "Partitions.zip",
        {
            "Training_01.txt": b"/a/abbey/sun_0.jpg\n/b/bakery/shop/sun_0.jpg\n",
            "Testing_01.txt": b"/b/bakery/shop/sun_1.jpg\n",
        },
    )
    index = full.parse_sun397(raw, out)
    _check(index, out, 2, {"train": 2, "test": 1})
    assert index.classnames == ["abbey", "bakery shop"]
    assert index.splits["test"][0][1] == 1


def test_parse_cars(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    dt = [("fname", object), ("class", object)]
    buf = io.BytesIO()
    savemat(
        buf, {"class_names": np.array(["AM General Hummer SUV 2000", "Audi R8 2012"], dtype=object)}
    )
    train = np.array([("00001.jpg", 1), ("00002.jpg", 2)], dtype=dt)
    buf_tr = io.BytesIO()
    savemat(buf_tr, {"annotations": train})
    _tar(
        raw / "car_devkit.tgz",
        {"devkit/cars_meta.mat": buf.getvalue(), "devkit/cars_train_annos.mat": buf_tr.getvalue()},
    )
    _tar(raw / "cars_train.tgz", {f"cars_train/0000{i}.jpg": _jpeg() for i in (1, 2)})
    _tar(raw / "cars_test.tgz", {"cars_test/00001.jpg": _jpeg()})
    savemat(
        str(raw / "cars_test_annos_withlabels.mat"),
        {"annotations": np.array([("00001.jpg", 2)], dtype=dt)},
    )
    index = full.parse_cars(raw, out)
    _check(index, out, 2, {"train": 2, "test": 1})
    assert [y for _, y in index.splits["train"]] == [0, 1] and index.splits["test"][0][1] == 1


def test_parse_resisc45_needs_extracted_images(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    with pytest.raises(DownloadError, match="NWPU-RESISC45"):
        full.parse_resisc45(raw, out)
    for c in ("airplane", "golf_course"):
        (raw / "NWPU-RESISC45" / c).mkdir(parents=True)
        for i in range(2):
            (raw / "NWPU-RESISC45" / c / f"{c}_{i:03d}.jpg").write_bytes(_jpeg())
    (raw / "resisc45-train.txt").write_text("airplane_000.jpg\n")
    (raw / "resisc45-val.txt").write_text("golf_course_000.jpg\n")
    (raw / "resisc45-test.txt").write_text("golf_course_001.jpg\nairplane_001.jpg\n")
    index = full.parse_resisc45(raw, out)
    _check(index, out, 2, {"train": 2, "test": 2})
    assert index.classnames == ["airplane", "golf course"]


def test_prepare_task_carves_validation_and_reads_back(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    for split, n in (("train", 40), ("test", 4)):
        x = RNG.integers(0, 255, (32, 32, 3, n), dtype=np.uint8)
        savemat(str(raw / f"{split}_32x32.mat"), {"X": x, "y": (np.arange(n) % 10 + 1)[:, None]})
    full.prepare_task("SVHN", raw, out, val_fraction=0.25, max_val=6)
    index = clip_zoo.read_task(out)
    assert {s: len(r) for s, r in index.splits.items()} == {"train": 34, "val": 6, "test": 4}
    assert not {p for p, _ in index.splits["train"]} & {p for p, _ in index.splits["val"]}
    x, y = clip_zoo.load_images(index.splits["val"], 16)
    assert x.shape == (6, 3, 16, 16) and x.dtype == torch.uint8 and y.dtype == torch.long


def test_resources_refuse_unpinned_files_and_fetch_verifies(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"Partitions\.zip"):
        full.resources("SUN397", {"SUN397.tar.gz": "md5:" + "0" * 32, "Partitions.zip": ""})
    params = tiny_params(["task_zoo"])
    cfg = study_config(TaskZooConfig, params, "task_zoo", "full")
    assert cfg.data.vision is not None and cfg.model.clip is not None
    pins = dict(cfg.data.vision.checksums)
    for task in ("Cars", "RESISC45", "EuroSAT", "SVHN", "GTSRB", "DTD"):
        assert [r.filename for r in full.resources(task, pins)] == list(full.URLS[task])
    src = tmp_path / "EuroSAT.zip"
    src.write_bytes(b"not the archive")
    (res,) = full.resources("EuroSAT", pins)
    local = type(res)(src.as_uri(), res.filename, md5=res.md5)
    with pytest.raises(DownloadError, match="md5 mismatch"):
        fetch(local, tmp_path / "dl")


def test_zero_shot_head_is_scaled_normalised_prompt_mean() -> None:
    table = {
        "a cat.": [1.0, 0.0],
        "the cat.": [3.0, 4.0],
        "a dog.": [0.0, 2.0],
        "the dog.": [0.0, 1.0],
    }

    def encode(prompts: list[str]) -> torch.Tensor:
        return torch.tensor([table[p] for p in prompts])

    head = full.zero_shot_head(encode, ["cat", "dog"], ("a {}.", "the {}."), logit_scale=100.0)
    cat = torch.nn.functional.normalize(torch.tensor([1.6, 0.8]), dim=0)
    assert torch.allclose(head["weight"][0], 100 * cat)
    assert torch.allclose(head["weight"][1], torch.tensor([0.0, 100.0]))
    assert torch.equal(head["bias"], torch.zeros(2))


class _Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.c_fc, self.c_proj = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.c_proj(torch.relu(self.c_fc(x)))


class _StandIn(nn.Module):
    """A tiny image tower in place of CLIP's: patchify conv, one MLP block, projection."""

    def __init__(self, d: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, d, 4, stride=4)
        self.mlp = _Block(d)
        self.proj = nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.mlp(self.conv1(x).mean((2, 3))))


def _toy_task(tmp_path: Path, n: int = 24) -> tuple[list[tuple[str, int]], dict[str, torch.Tensor]]:
    samples = []
    for i in range(n):
        label = i % 2
        img = np.full((8, 8, 3), 200 if label else 30, dtype=np.uint8)
        img = np.clip(img + RNG.integers(-20, 20, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(tmp_path / f"{i}.png")
        samples.append((str(tmp_path / f"{i}.png"), label))
    head = {
        "weight": 10 * torch.nn.functional.normalize(torch.randn(2, 8), dim=1),
        "bias": torch.zeros(2),
    }
    return samples, head


def _finetune(
    encoder: nn.Module, head: dict, samples: list, regime: str
) -> dict[str, torch.Tensor]:
    return lightning.finetune(
        LocalEnv(),
        encoder,
        head,
        clip_zoo.ImageFiles(samples, 8),
        regime=regime,
        steps=6,
        batch_size=8,
        lr=0.01,
        weight_decay=0.1,
        warmup=2,
        lora_rank=2,
        lora_scale=1.0,
        seed=0,
    )


def test_finetune_fft_and_lora_through_lightning(tmp_path: Path) -> None:
    torch.manual_seed(0)
    samples, head = _toy_task(tmp_path)
    encoder = clip_zoo.ImageEncoder(_StandIn())
    before = state_dict_cpu(encoder)
    fft = _finetune(encoder, head, samples, "fft")
    assert set(fft) == set(before)
    assert torch.equal(
        state_dict_cpu(encoder)["encoder.conv1.weight"], before["encoder.conv1.weight"]
    )
    assert not torch.equal(fft["encoder.conv1.weight"], before["encoder.conv1.weight"])
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            _finetune(encoder, head, samples, "fft").values(), fft.values(), strict=True
        )
    )
    lora = _finetune(encoder, head, samples, "lora")
    assert set(lora) == set(before)  # LoRA merged back: the encoder's own keys
    changed = {k for k in before if not torch.equal(lora[k], before[k])}
    assert changed == {"encoder.mlp.c_fc.weight", "encoder.mlp.c_proj.weight"}
    delta = lora["encoder.mlp.c_fc.weight"] - before["encoder.mlp.c_fc.weight"]
    assert int(torch.linalg.matrix_rank(delta)) <= 2


def test_zoo_loads_back_and_dc_merge_runs_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    data_dir, zoo_dir = tmp_path / "data", tmp_path / "zoo"
    tasks = ["MNIST", "SVHN"]
    encoder = clip_zoo.ImageEncoder(_StandIn())
    tensors = {f"base.{k}": v for k, v in state_dict_cpu(encoder).items()}
    for t in tasks:
        (data_dir / t).mkdir(parents=True)
        samples, head = _toy_task(data_dir / t, 12)
        rel = [(str(Path(p).relative_to(data_dir / t)), y) for p, y in samples]
        write_json(
            data_dir / t / "index.json",
            {
                "classnames": ["a", "b"],
                "splits": {"train": rel[:4], "val": rel[4:8], "test": rel[8:]},
            },
        )
        tensors.update({f"head.h1.{t}.{k}": v for k, v in head.items()})
        ft = _finetune(encoder, head, samples[:4], "fft")
        tensors.update({f"ft.h1.fft.{t}.{k}": v for k, v in ft.items()})
    zoo_dir.mkdir()
    save_tensors(zoo_dir / "seed0.safetensors", tensors, study=ZOO_SLUG, kind="zoo")
    write_json(
        zoo_dir / "index.json",
        {
            "backbone": clip_zoo.BACKBONE,
            "arch": "stand-in",
            "pretrained": "",
            "image_size": 8,
            "tasks": tasks,
            "heads": ["h1"],
            "regimes": ["fft"],
            "hidden": [],
            "lora_rank": 16,
        },
    )
    monkeypatch.setattr(
        clip_zoo, "clip_encoder", lambda arch, pretrained: clip_zoo.ImageEncoder(_StandIn())
    )
    zoo = load_zoo(data_dir, zoo_dir, 0)
    assert isinstance(zoo, clip_zoo.ClipZoo) and zoo.tasks == tasks
    assert [x.shape for x in zoo.x["test"]] == [(4, 3, 8, 8)] * 2 and zoo.x["train"] == []
    m = MergeConfig(
        alpha_grid=[0.5, 1.0],
        ties_density=0.2,
        keep_fraction=0.01,
        rho=5.0,
        heads=["h1"],
        regimes=["fft"],
    )
    res = run_merges(zoo, "h1", "fft", m)
    assert {"ta", "ties", "tsvm"} <= set(res)
    assert all(0.0 <= r["abs"] <= 1.0 for r in res.values())
