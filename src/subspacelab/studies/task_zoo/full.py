"""Full-scale task zoo: CLIP ViT-B/32 fine-tuned on the 8 vision tasks of Task Arithmetic.

The merge-bench of dc_merge (arXiv:2603.06242) and concrete_merge (arXiv:2312.06173) at the
paper's scale, following the standard task-vector setup (Ilharco et al., arXiv:2212.04089):
SUN397, Stanford Cars, RESISC45, EuroSAT, SVHN, GTSRB, MNIST and DTD; the image encoder of CLIP
ViT-B/32 (open_clip, OpenAI weights) is fine-tuned per task through a frozen zero-shot
classification head built from the class names and prompt templates, with AdamW and a cosine
schedule with warm-up. Every task vector therefore lives in the image encoder.

* :func:`data_step` downloads each task's published archives (checksums pinned in params.yaml,
  an empty pin makes the download refuse to run), extracts them safely and writes
  ``<task>/index.json`` (class names and ``[path, label]`` per split; MNIST and SVHN, which ship
  as arrays, are written out as PNG files so every task is a folder of images).
* :func:`zoo_step` builds the zero-shot heads and fine-tunes one encoder per task and regime
  (full fine-tuning, or LoRA on every MLP linear layer merged back into the weights;
  :mod:`~subspacelab.studies.task_zoo.lightning`), saving the same safetensors layout as the
  miniature zoo (``base.*``, ``head.h1.<task>.*``, ``ft.h1.<regime>.<task>.*``) plus
  ``"backbone": "open_clip"`` in ``index.json``.

The merging toolkit reads the zoo back (:func:`subspacelab.merging.clip_zoo.load_clip_zoo`), so
dc_merge and concrete_merge run unchanged. open_clip and Pillow are optional (the ``full``
extra) and imported only where they are used.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from subspacelab.api import DownloadError, StepContext, StepOutput, write_json
from subspacelab.data.download import Resource, fetch, safe_extract
from subspacelab.data.mnist import load_mnist
from subspacelab.merging.algebra import StateDict
from subspacelab.merging.clip_zoo import (
    BACKBONE,
    ImageEncoder,
    ImageFiles,
    Samples,
    TaskIndex,
    clip_model,
    read_task,
)

if TYPE_CHECKING:
    from subspacelab.studies.task_zoo.config import TaskZooConfig

VISION_TASKS = ("SUN397", "Cars", "RESISC45", "EuroSAT", "SVHN", "GTSRB", "MNIST", "DTD")

# Published download locations (the checksums are pinned in params.yaml, with their sources).
# RESISC45 ships as a RAR archive (not extractable by the standard library): its URL is the
# torchgeo mirror, and the user extracts it by hand into <root>/RESISC45/NWPU-RESISC45/.
URLS: dict[str, dict[str, str]] = {
    "SUN397": {
        "SUN397.tar.gz": "http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz",
        "Partitions.zip": "https://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip",
    },
    "Cars": {
        "car_devkit.tgz": "https://ai.stanford.edu/~jkrause/cars/car_devkit.tgz",
        "cars_train.tgz": "https://ai.stanford.edu/~jkrause/car196/cars_train.tgz",
        "cars_test.tgz": "https://ai.stanford.edu/~jkrause/car196/cars_test.tgz",
        "cars_test_annos_withlabels.mat": (
            "https://ai.stanford.edu/~jkrause/car196/cars_test_annos_withlabels.mat"
        ),
    },
    "RESISC45": {
        f"resisc45-{s}.txt": (
            f"https://storage.googleapis.com/remote_sensing_representations/resisc45-{s}.txt"
        )
        for s in ("train", "val", "test")
    },
    "EuroSAT": {
        "EuroSAT.zip": "https://huggingface.co/datasets/torchgeo/eurosat/resolve/"
        "c877bcd43f099cd0196738f714544e355477f3fd/EuroSAT.zip",
    },
    "SVHN": {
        "train_32x32.mat": "http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
        "test_32x32.mat": "http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
    },
    "GTSRB": {
        name: f"https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/{name}"
        for name in (
            "GTSRB-Training_fixed.zip",
            "GTSRB_Final_Test_Images.zip",
            "GTSRB_Final_Test_GT.zip",
        )
    },
    "MNIST": {},  # subspacelab.data.mnist pins its four files
    "DTD": {
        "dtd-r1.0.1.tar.gz": "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz"
    },
}

# Prompt templates of the task-vectors code (a subset per dataset), "{}" is the class name.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "SUN397": ("a photo of a {}.", "a photo of the {}."),
    "Cars": ("a photo of a {}.", "a photo of the {}.", "a photo of my {}.", "i love my {}!"),
    "RESISC45": (
        "satellite imagery of {}.",
        "aerial imagery of {}.",
        "satellite photo of {}.",
        "aerial photo of {}.",
    ),
    "EuroSAT": (
        "a centered satellite photo of {}.",
        "a centered satellite photo of a {}.",
        "a centered satellite photo of the {}.",
    ),
    "SVHN": ('a photo of the number: "{}".',),
    "GTSRB": (
        'a zoomed in photo of a "{}" traffic sign.',
        'a centered photo of a "{}" traffic sign.',
        'a close up photo of a "{}" traffic sign.',
    ),
    "MNIST": ('a photo of the number: "{}".',),
    "DTD": (
        "a photo of a {} texture.",
        "a photo of a {} pattern.",
        "a photo of a {} thing.",
        "a photo of a {} object.",
    ),
}

EUROSAT_NAMES = {
    "AnnualCrop": "annual crop land",
    "Forest": "forest",
    "HerbaceousVegetation": "brushland or shrubland",
    "Highway": "highway or road",
    "Industrial": "industrial buildings or commercial buildings",
    "Pasture": "pasture land",
    "PermanentCrop": "permanent crop land",
    "Residential": "residential buildings or homes or apartments",
    "River": "river",
    "SeaLake": "lake or sea",
}

GTSRB_NAMES = (
    "red and white circle 20 kph speed limit",
    "red and white circle 30 kph speed limit",
    "red and white circle 50 kph speed limit",
    "red and white circle 60 kph speed limit",
    "red and white circle 70 kph speed limit",
    "red and white circle 80 kph speed limit",
    "end / de-restriction of 80 kph speed limit",
    "red and white circle 100 kph speed limit",
    "red and white circle 120 kph speed limit",
    "red and white circle red car and black car no passing",
    "red and white circle red truck and black car no passing",
    "red and white triangle road intersection warning",
    "white and yellow diamond priority road",
    "red and white upside down triangle yield right-of-way",
    "stop",
    "empty red and white circle",
    "red and white circle no truck entry",
    "red circle with white horizonal stripe no entry",
    "red and white triangle with exclamation mark warning",
    "red and white triangle with black left curve approaching warning",
    "red and white triangle with black right curve approaching warning",
    "red and white triangle with black double curve approaching warning",
    "red and white triangle rough / bumpy road warning",
    "red and white triangle car skidding / slipping warning",
    "red and white triangle with merging / narrow lanes warning",
    "red and white triangle with person digging / construction / road work warning",
    "red and white triangle with traffic light approaching warning",
    "red and white triangle with person walking warning",
    "red and white triangle with child and person walking warning",
    "red and white triangle with bicyle warning",
    "red and white triangle with snowflake / ice warning",
    "red and white triangle with deer warning",
    "white circle with gray strike bar no speed limit",
    "blue circle with white right turn arrow mandatory",
    "blue circle with white left turn arrow mandatory",
    "blue circle with white forward arrow mandatory",
    "blue circle with white forward or right turn arrow mandatory",
    "blue circle with white forward or left turn arrow mandatory",
    "blue circle with white keep right arrow mandatory",
    "blue circle with white keep left arrow mandatory",
    "blue circle with white arrows indicating a traffic circle",
    "white circle with gray strike bar indicating no passing for cars has ended",
    "white circle with gray strike bar indicating no passing for trucks has ended",
)


# ---------------------------------------------------------------- downloads and parsers


def resources(task: str, checksums: dict[str, str]) -> list[Resource]:
    """The pinned :class:`Resource` of every file of ``task``.

    ``checksums`` maps a file name to ``"md5:<hex>"`` or ``"sha256:<hex>"``; a missing or empty
    pin raises DownloadError (nothing unverified is ever downloaded).
    """
    out = []
    for name, url in URLS[task].items():
        pin = checksums.get(name, "")
        algo, _, digest = pin.partition(":")
        if algo not in ("md5", "sha256") or not digest:
            raise DownloadError(
                f"{name}: no published checksum is pinned (task_zoo.full.data.vision.checksums); "
                "pin one before downloading"
            )
        out.append(Resource(url, name, **{algo: digest}))
    return out


def _split_train_val(samples: Samples, fraction: float, cap: int) -> tuple[Samples, Samples]:
    """Hold out ``min(cap, fraction · n)`` training samples as validation (fixed seed 0, as the
    task-vectors code does)."""
    n_val = min(cap, round(fraction * len(samples)))
    order = np.random.default_rng(0).permutation(len(samples))
    val = {int(i) for i in order[:n_val]}
    return (
        [s for i, s in enumerate(samples) if i not in val],
        [s for i, s in enumerate(samples) if i in val],
    )


def _save_png(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _arrays_to_pngs(root: Path, split: str, x: np.ndarray, y: np.ndarray) -> Samples:
    samples = []
    for i, (img, label) in enumerate(zip(x, y, strict=True)):
        rel = f"{split}/{int(label)}/{i:06d}.png"
        _save_png(img, root / rel)
        samples.append((rel, int(label)))
    return samples


def parse_mnist(raw: Path, out: Path) -> TaskIndex:
    """MNIST's four IDX files in ``raw`` -> PNG files under ``out``."""
    split = load_mnist(raw)
    to_u8 = lambda x: (x[:, 0] * 255).round().astype(np.uint8)  # noqa: E731
    return TaskIndex(
        [str(d) for d in range(10)],
        {
            "train": _arrays_to_pngs(out, "train", to_u8(split.x_train), split.y_train),
            "test": _arrays_to_pngs(out, "test", to_u8(split.x_test), split.y_test),
        },
    )


def parse_svhn(raw: Path, out: Path) -> TaskIndex:
    """SVHN's ``{train,test}_32x32.mat`` (X: 32×32×3×N, y in 1..10 with 10 for the digit 0)."""
    from scipy.io import loadmat

    splits = {}
    for split in ("train", "test"):
        mat = loadmat(str(raw / f"{split}_32x32.mat"))
        x = np.transpose(mat["X"], (3, 0, 1, 2)).astype(np.uint8)
        y = mat["y"].reshape(-1).astype(np.int64) % 10
        splits[split] = _arrays_to_pngs(out, split, x, y)
    return TaskIndex([str(d) for d in range(10)], splits)


def parse_eurosat(raw: Path, out: Path) -> TaskIndex:
    """EuroSAT RGB (``2750/<Class>/*.jpg``): no official split, so a fixed seeded 80/20
    train/test split (validation is carved from train later)."""
    root = out / "images"
    safe_extract(raw / "EuroSAT.zip", root)
    classes = sorted(p.name for p in (root / "2750").iterdir() if p.is_dir())
    samples = [
        (str(p.relative_to(out)), c)
        for c, name in enumerate(classes)
        for p in sorted((root / "2750" / name).glob("*.jpg"))
    ]
    order = np.random.default_rng(0).permutation(len(samples))
    n_test = len(samples) // 10
    test = {int(i) for i in order[:n_test]}
    return TaskIndex(
        [EUROSAT_NAMES.get(c, c) for c in classes],
        {
            "train": [s for i, s in enumerate(samples) if i not in test],
            "test": [s for i, s in enumerate(samples) if i in test],
        },
    )


def parse_gtsrb(raw: Path, out: Path) -> TaskIndex:
    """GTSRB: ``Training/000NN/*.ppm`` folders and the final test images with their GT csv."""
    safe_extract(raw / "GTSRB-Training_fixed.zip", out / "train")
    safe_extract(raw / "GTSRB_Final_Test_Images.zip", out / "test")
    safe_extract(raw / "GTSRB_Final_Test_GT.zip", out / "gt")
    train = [
        (str(p.relative_to(out)), int(p.parent.name))
        for p in sorted((out / "train").rglob("*.ppm"))
    ]
    images = {p.name: p for p in (out / "test").rglob("*.ppm")}
    gt_file = next((out / "gt").rglob("*.csv"))
    with gt_file.open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter=";"))
    test = [(str(images[r["Filename"]].relative_to(out)), int(r["ClassId"])) for r in rows]
    return TaskIndex(list(GTSRB_NAMES), {"train": train, "test": test})


def parse_dtd(raw: Path, out: Path) -> TaskIndex:
    """DTD r1.0.1, partition 1: train = train1 + val1, test = test1."""
    safe_extract(raw / "dtd-r1.0.1.tar.gz", out / "extracted")
    dtd = out / "extracted" / "dtd"
    classes = sorted(p.name for p in (dtd / "images").iterdir() if p.is_dir())

    def read(*names: str) -> Samples:
        lines = [ln.strip() for n in names for ln in (dtd / "labels" / n).read_text().split()]
        return [
            (str((dtd / "images" / ln).relative_to(out)), classes.index(ln.split("/")[0]))
            for ln in lines
            if ln
        ]

    return TaskIndex(
        [c.replace("_", " ") for c in classes],
        {"train": read("train1.txt", "val1.txt"), "test": read("test1.txt")},
    )


def parse_resisc45(raw: Path, out: Path) -> TaskIndex:
    """RESISC45 (``NWPU-RESISC45/<class>/<class>_NNN.jpg``, extracted by hand into ``raw``) with
    the split files of "In-domain representation learning for remote sensing"; train + val form
    the training set."""
    images = raw / "NWPU-RESISC45"
    if not images.is_dir():
        raise DownloadError(
            f"{images}: missing; extract NWPU-RESISC45.rar (md5 d824acb73957502b00efd559fc6cfbbb, "
            "torchgeo) there"
        )
    classes = sorted(p.name for p in images.iterdir() if p.is_dir())

    def read(*splits: str) -> Samples:
        names = [ln for s in splits for ln in (raw / f"resisc45-{s}.txt").read_text().split()]
        out_ = []
        for name in names:
            cls = name.rsplit("_", 1)[0]
            out_.append((str((images / cls / name).resolve()), classes.index(cls)))
        return out_

    return TaskIndex(
        [c.replace("_", " ") for c in classes],
        {"train": read("train", "val"), "test": read("test")},
    )


def parse_sun397(raw: Path, out: Path) -> TaskIndex:
    """SUN397 with the official partition 1 (``Training_01.txt`` / ``Testing_01.txt``)."""
    safe_extract(raw / "SUN397.tar.gz", out / "extracted")
    safe_extract(raw / "Partitions.zip", out / "partitions")
    sun = out / "extracted" / "SUN397"
    keys = [ln.strip() for ln in (sun / "ClassName.txt").read_text().split("\n") if ln.strip()]
    index = {k: i for i, k in enumerate(keys)}

    def read(name: str) -> Samples:
        part = next((out / "partitions").rglob(name))
        rows = [ln.strip() for ln in part.read_text().split("\n") if ln.strip()]
        return [
            (str((sun / r.lstrip("/")).relative_to(out)), index[r.rsplit("/", 1)[0]]) for r in rows
        ]

    names = [" ".join(k.split("/")[2:]).replace("_", " ") for k in keys]
    return TaskIndex(names, {"train": read("Training_01.txt"), "test": read("Testing_01.txt")})


def parse_cars(raw: Path, out: Path) -> TaskIndex:
    """Stanford Cars: devkit annotations (1-based classes) and the labelled test annotations."""
    from scipy.io import loadmat

    safe_extract(raw / "car_devkit.tgz", out / "devkit")
    safe_extract(raw / "cars_train.tgz", out / "train")
    safe_extract(raw / "cars_test.tgz", out / "test")
    devkit = out / "devkit" / "devkit"
    meta = loadmat(str(devkit / "cars_meta.mat"), squeeze_me=True)
    names = [str(n) for n in meta["class_names"]]

    def read(mat: Path, folder: str) -> Samples:
        annos = np.atleast_1d(loadmat(str(mat), squeeze_me=True)["annotations"])
        return [(f"{folder}/cars_{folder}/{a['fname']}", int(a["class"]) - 1) for a in annos]

    return TaskIndex(
        names,
        {
            "train": read(devkit / "cars_train_annos.mat", "train"),
            "test": read(raw / "cars_test_annos_withlabels.mat", "test"),
        },
    )


PARSERS: dict[str, Callable[[Path, Path], TaskIndex]] = {
    "SUN397": parse_sun397,
    "Cars": parse_cars,
    "RESISC45": parse_resisc45,
    "EuroSAT": parse_eurosat,
    "SVHN": parse_svhn,
    "GTSRB": parse_gtsrb,
    "MNIST": parse_mnist,
    "DTD": parse_dtd,
}


def prepare_task(
    task: str,
    raw: Path,
    out: Path,
    val_fraction: float,
    max_val: int,
) -> TaskIndex:
    """Parse ``task``'s downloaded files in ``raw`` into ``out`` and write ``out/index.json``
    with train/val/test (validation carved from train)."""
    parsed = PARSERS[task](raw, out)
    train, val = _split_train_val(parsed.splits["train"], val_fraction, max_val)
    index = TaskIndex(
        parsed.classnames, {"train": train, "val": val, "test": parsed.splits["test"]}
    )
    write_json(out / "index.json", {"classnames": index.classnames, "splits": index.splits})
    return index


# ---------------------------------------------------------------- zero-shot heads


@torch.no_grad()
def zero_shot_head(
    encode_text: Callable[[list[str]], Tensor],
    classnames: Sequence[str],
    templates: Sequence[str],
    logit_scale: float,
) -> StateDict:
    """The frozen zero-shot head of the task-vectors setup: per class, the mean of the
    normalised text embeddings of its prompts, normalised again, times CLIP's logit scale."""
    rows = []
    for name in classnames:
        emb = F.normalize(encode_text([t.format(name) for t in templates]).float(), dim=-1)
        rows.append(F.normalize(emb.mean(0), dim=0))
    weight = logit_scale * torch.stack(rows)
    return {"weight": weight, "bias": torch.zeros(len(rows))}


def clip_text_encoder(model: Any, arch: str) -> Callable[[list[str]], Tensor]:
    """A function from prompts to CLIP text embeddings."""
    import open_clip  # optional: the `full` extra

    tokenizer = open_clip.get_tokenizer(arch)
    device = next(model.parameters()).device
    return lambda prompts: model.encode_text(tokenizer(prompts).to(device))


def data_step(ctx: StepContext[TaskZooConfig]) -> StepOutput:
    """Download, verify and prepare every task of ``data.vision``; metrics: image counts."""
    v = ctx.cfg.data.vision
    if v is None:
        raise ValueError("task_zoo.full.data.vision: must be set for the full profile")
    cache = Path(v.root).expanduser()
    counts: dict[str, float] = {}
    for task in v.tasks:
        raw = cache / task
        raw.mkdir(parents=True, exist_ok=True)
        if task == "MNIST":
            from subspacelab.data.mnist import fetch_mnist

            fetch_mnist(raw, ctx.progress)
        else:
            for res in resources(task, dict(v.checksums)):
                fetch(res, raw, ctx.progress)
        index = prepare_task(task, raw, ctx.out / task, v.val_fraction, v.max_val)
        for s, rows in index.splits.items():
            counts[f"{task}_{s}"] = float(len(rows))
        ctx.progress(f"{task}: " + ", ".join(f"{s} {len(r)}" for s, r in index.splits.items()))
    return StepOutput(metrics=counts)


def zoo_step(ctx: StepContext[TaskZooConfig]) -> StepOutput:
    """Zero-shot heads and fine-tuned encoders of every task and regime, per seed."""
    from subspacelab.api import state_dict_cpu
    from subspacelab.studies.task_zoo.lightning import finetune

    v, c, t = ctx.cfg.data.vision, ctx.cfg.model.clip, ctx.cfg.train.clip
    if v is None or c is None or t is None:
        raise ValueError("task_zoo.full: data.vision, model.clip and train.clip must be set")
    model = clip_model(c.arch, c.pretrained).to(ctx.device)
    base = ImageEncoder(model.visual).to(ctx.device)
    text = clip_text_encoder(model, c.arch)
    scale = float(model.logit_scale.exp())
    heads = {}
    for task in v.tasks:
        ti = read_task(ctx.inputs["data"] / task)
        heads[task] = {
            k: w.cpu()
            for k, w in zero_shot_head(text, ti.classnames, TEMPLATES[task], scale).items()
        }
    del model.transformer  # the text tower is no longer needed
    for seed in ctx.seeds:
        tensors = {f"base.{k}": w for k, w in state_dict_cpu(base).items()}
        for task in v.tasks:
            tensors.update({f"head.h1.{task}.{k}": w for k, w in heads[task].items()})
            data = ImageFiles(read_task(ctx.inputs["data"] / task).splits["train"], c.image_size)
            for regime in t.regimes:
                ft = finetune(
                    ctx,
                    base,
                    {k: w.to(ctx.device) for k, w in heads[task].items()},
                    data,
                    regime=regime,
                    steps=t.steps,
                    batch_size=t.batch_size,
                    lr=t.lr if regime == "fft" else t.lora_lr,
                    weight_decay=t.weight_decay,
                    warmup=t.warmup_steps,
                    lora_rank=c.lora_rank,
                    lora_scale=c.lora_scale,
                    seed=seed,
                    workers=t.workers,
                    label=f"{task} {regime}",
                )
                tensors.update({f"ft.h1.{regime}.{task}.{k}": w for k, w in ft.items()})
                ctx.progress(f"seed {seed}: fine-tuned {task} ({regime})")
        ctx.save(f"seed{seed}", tensors, kind="zoo")
    write_json(
        ctx.out / "index.json",
        {
            "backbone": BACKBONE,
            "arch": c.arch,
            "pretrained": c.pretrained,
            "image_size": c.image_size,
            "tasks": list(v.tasks),
            "heads": ["h1"],
            "regimes": list(t.regimes),
            "hidden": [],
            "lora_rank": c.lora_rank,
        },
    )
    return StepOutput(metrics={"models": float(len(v.tasks) * len(t.regimes))})
