"""The full profile of ``diveup`` (Liu & Fan, arXiv 2603.13571, spec §7): the released
upsamplers on real foundation-model features and real segmentation sets.

* data — PASCAL VOC 2012 (``VOCdevkit/VOC2012``: JPEGImages, SegmentationClass palette PNGs,
  ImageSets/Segmentation/{train,val}.txt; 21 classes, 255 = void) or ADE20K
  (``ADEChallengeData2016``: images/ and annotations/ {training, validation}; 150 classes,
  0 = other, ignored) or COCO-Stuff 164k (images/ and annotations/ {train2017, val2017}; 182
  ids, 255 = unlabeled), read from the user's copy, resized square;
* experts — the backbones through timm (DINOv2-S/14, SigLIP-B/16, CLIP ViT-B/16, DINOv2-B/14 in
  the roles A, B, C, D), each weight file checked against its SHA-256 pin;
* fit — nothing is trained (the official training code is not released): the released weights
  of DiveUp (``diveup``) and of NAF (``selfrecon``: the same architecture trained by
  self-reconstruction), fetched against their pins and loaded into the official modules through
  ``torch.hub`` at pinned commits (NATTEN needed);
* report — the mini report's probe, mIoU, boundary F1 and spike ratio (spikes: tokens whose
  norm exceeds ``train.spike_threshold`` × the median, the VFMs' own high-norm artifacts).

Heavy imports (PIL, timm, the hub code) happen inside functions (the ``full`` extra).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from subspacelab.api import StepOutput, sha256_file, write_json

if TYPE_CHECKING:
    from subspacelab.api import StepContext
    from subspacelab.studies.diveup.config import DiveupConfig, FullData

    Ctx = StepContext[DiveupConfig]

LICENCES = "\n".join(
    [
        "| what | licence | where |",
        "|---|---|---|",
        "| DiveUp code and weights | MIT (README badge; no LICENSE file) "
        "| github.com/Xiaoqiong-Liu/DiveUp |",
        "| NAF code and weights | Apache-2.0 | github.com/valeoai/NAF |",
        "| PASCAL VOC 2012 | images under Flickr terms; annotations for research "
        "| host.robots.ox.ac.uk/pascal/VOC |",
        "| ADE20K (SceneParsing) | non-commercial research and education only "
        "| groups.csail.mit.edu/vision/datasets/ADE20K |",
        "| COCO-Stuff | annotations CC BY 4.0, images Flickr terms "
        "| github.com/nightrome/cocostuff |",
        "| DINOv2 weights | Apache-2.0 | facebookresearch/dinov2 |",
        "| CLIP / SigLIP weights | MIT (OpenAI CLIP) / Apache-2.0 (SigLIP) | via timm |",
    ]
)
CLASSES = {"voc": 21, "ade20k": 150, "coco_stuff": 182}
ADE_SPLITS = {"train": "training", "val": "validation"}


def _resized(image_path: Path, label_path: Path, size: int, void: int) -> tuple[Tensor, Tensor]:
    """One image (3, size, size) uint8 (bilinear) and its label map (size, size) int64
    (nearest; ``void`` -> -1, ignored)."""
    from PIL import Image

    with Image.open(image_path) as im:
        rgb = np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
    with Image.open(label_path) as lab:
        if lab.mode not in ("P", "L"):
            raise ValueError(f"{label_path}: a class-index PNG (mode P or L), got mode {lab.mode}")
        idx = np.asarray(lab.resize((size, size), Image.Resampling.NEAREST)).astype(np.int64)
    idx[idx == void] = -1
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1), torch.from_numpy(idx)


def _stack(
    pairs: list[tuple[Path, Path]], size: int, void: int, shift: int
) -> tuple[Tensor, Tensor]:
    if not pairs:
        raise ValueError("no image/label pairs found")
    images, labels = zip(*(_resized(i, lab, size, void) for i, lab in pairs), strict=True)
    y = torch.stack(labels)
    return torch.stack(images), torch.where(y >= 0, y - shift, y)


def voc_split(root: Path, split: str, size: int, max_images: int | None) -> tuple[Tensor, Tensor]:
    """VOC 2012 segmentation ``split`` (train / val) under ``root``/VOCdevkit/VOC2012: images
    (n, 3, size, size) uint8 and labels (n, size, size) in 0..20, void (255) -1."""
    base = root / "VOCdevkit" / "VOC2012"
    listing = base / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not listing.is_file():
        raise FileNotFoundError(f"{listing} missing: unpack VOCtrainval_11-May-2012.tar in {root}")
    ids = [s.strip() for s in listing.read_text().splitlines() if s.strip()][:max_images]
    for i in ids:
        if "/" in i or "\\" in i or i.startswith("."):
            raise ValueError(f"{listing}: bad image id {i!r}")
    pairs = [
        (base / "JPEGImages" / f"{i}.jpg", base / "SegmentationClass" / f"{i}.png") for i in ids
    ]
    missing = [str(p) for pair in pairs for p in pair if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} VOC files missing, e.g. {missing[0]}")
    return _stack(pairs, size, 255, 0)


def ade20k_split(
    root: Path, split: str, size: int, max_images: int | None
) -> tuple[Tensor, Tensor]:
    """ADE20K SceneParsing ``split`` (train / val) under ``root``/ADEChallengeData2016:
    images (n, 3, size, size) uint8 and labels (n, size, size) in 0..149 (file value − 1),
    "other" (0) -1."""
    base = root / "ADEChallengeData2016"
    folder = ADE_SPLITS[split]
    images = sorted((base / "images" / folder).glob("*.jpg"))[:max_images]
    if not images:
        raise FileNotFoundError(
            f"no images in {base / 'images' / folder}: unpack ADEChallengeData2016.zip in {root}"
        )
    pairs = [(p, base / "annotations" / folder / f"{p.stem}.png") for p in images]
    missing = [str(lab) for _, lab in pairs if not lab.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} ADE20K annotations missing, e.g. {missing[0]}")
    return _stack(pairs, size, 0, 1)


def coco_stuff_split(
    root: Path, split: str, size: int, max_images: int | None
) -> tuple[Tensor, Tensor]:
    """COCO-Stuff 164k ``split`` (train / val) in the layout of its README (images/{train2017,
    val2017}/*.jpg from COCO, annotations/{train2017,val2017}/*.png from
    stuffthingmaps_trainval2017.zip): labels 0..181 (the PNG values), unlabeled (255) -1."""
    folder = f"{split}2017"
    images = sorted((root / "images" / folder).glob("*.jpg"))[:max_images]
    if not images:
        raise FileNotFoundError(
            f"no images in {root / 'images' / folder}: unpack COCO's {folder}.zip there"
        )
    pairs = [(p, root / "annotations" / folder / f"{p.stem}.png") for p in images]
    missing = [str(lab) for _, lab in pairs if not lab.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} COCO-Stuff label maps missing, e.g. {missing[0]}")
    return _stack(pairs, size, 255, 0)


READERS = {"voc": voc_split, "ade20k": ade20k_split, "coco_stuff": coco_stuff_split}


def read_split(full: FullData, root: Path, split: str) -> tuple[Tensor, Tensor]:
    """The configured set's ``split`` (train / val)."""
    reader = READERS[full.dataset]
    return reader(root / full.root, split, full.image_size, full.max_images)


def data_full(ctx: Ctx) -> StepOutput:
    """The real set's train and val splits, stored as the mini data step's tensors."""
    full = ctx.cfg.data.full
    assert full is not None  # the full profile's check
    x_tr, y_tr = read_split(full, ctx.root, "train")
    x_te, y_te = read_split(full, ctx.root, "val")
    for seed in ctx.seeded():
        ctx.save(f"seed{seed}", {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te})
    return StepOutput({"train_images": float(len(x_tr)), "test_images": float(len(x_te))})


class Backbone(nn.Module):
    """A timm ViT as an expert: normalised input, patch tokens (b, C, H/p, W/p) without the
    prefix (class / register) tokens, and the spike mask of its own high-norm tokens."""

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def tokens(self, image: Tensor) -> Tensor:
        """Patch tokens of ``image`` (b, 3, H, W) in [0, 1]."""
        x = self.model.forward_features((image - self.mean) / self.std)
        skip = int(getattr(self.model, "num_prefix_tokens", 0))
        patch = self.model.patch_embed.patch_size
        h, w = image.shape[-2] // patch[0], image.shape[-1] // patch[1]
        return x[:, skip:].transpose(1, 2).reshape(x.shape[0], -1, h, w)


def load_backbone(name: str, sha256: str) -> Backbone:
    """timm's ``name`` with pretrained weights (downloaded by timm / huggingface_hub), its weight
    file checked against ``sha256``; any input size (``dynamic_img_size``)."""
    import timm
    from huggingface_hub import hf_hub_download

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not cfg.hf_hub_id:
        raise ValueError(f"{name}: not a timm model with Hugging Face weights")
    path = Path(
        hf_hub_download(cfg.hf_hub_id, getattr(cfg, "hf_hub_filename", None) or "model.safetensors")
    )
    got = sha256_file(path)
    if got != sha256:
        raise ValueError(f"{name}: weights {path.name} have sha256 {got}, pinned {sha256}")
    model = timm.create_model(
        name, pretrained=True, dynamic_img_size=True, pretrained_cfg_overlay={"file": str(path)}
    )
    return Backbone(model.eval(), tuple(cfg.mean), tuple(cfg.std))


def experts_full(ctx: Ctx) -> StepOutput:
    """Every backbone loaded against its pin; their widths and patch sizes recorded."""
    m = ctx.cfg.model
    manifest: dict[str, Any] = {}
    for name, sha in zip(m.backbones, m.backbone_sha256, strict=True):
        b = load_backbone(name, sha)
        manifest[name] = {
            "width": int(b.model.num_features),
            "patch": list(b.model.patch_embed.patch_size),
            "sha256": sha,
        }
        ctx.progress(f"{name}: {manifest[name]}")
    write_json(ctx.out / "backbones.json", manifest)
    return StepOutput()


def released_model(repo: str, revision: str, entry: str, state: dict[str, Tensor]) -> nn.Module:
    """The official module (``torch.hub`` at the pinned commit ``revision`` of ``repo``) with
    the released ``state`` loaded strictly."""
    model = torch.hub.load(f"{repo}:{revision}", entry, pretrained=False, trust_repo=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def fit_full(ctx: Ctx) -> StepOutput:
    """The two released checkpoints fetched against their pins (weights-only loads), checked to
    load into the official modules, and stored as safetensors."""
    from subspacelab.data.download import Resource, fetch

    r = ctx.cfg.model.released
    assert r is not None  # the full profile's check
    for arm, url, sha in (
        ("diveup", r.diveup_url, r.diveup_sha256),
        ("selfrecon", r.naf_url, r.naf_sha256),
    ):
        path = fetch(
            Resource(url, url.rsplit("/", 1)[-1], sha256=sha),
            ctx.root / "models" / "diveup-released",
            ctx.progress,
        )
        state = torch.load(path, map_location="cpu", weights_only=True)
        repo, rev = (
            (r.diveup_repo, r.diveup_revision) if arm == "diveup" else (r.naf_repo, r.naf_revision)
        )
        released_model(repo, rev, "diveup" if arm == "diveup" else "naf", state)
        ctx.save(f"released/{arm}", state, kind="models")
    return StepOutput()


Upsample = Callable[[Tensor, Tensor], Tensor]


def full_upsamplers(ctx: Ctx) -> dict[str, Upsample]:
    """The released arms as ``(image, tokens) -> upsampled`` at the image's size."""
    r = ctx.cfg.model.released
    assert r is not None
    arms: dict[str, Upsample] = {}
    for arm, repo, rev, entry in (
        ("selfrecon", r.naf_repo, r.naf_revision, "naf"),
        ("diveup", r.diveup_repo, r.diveup_revision, "diveup"),
    ):
        state = ctx.load(f"released/{arm}", step="fit", kind="models")
        model = released_model(repo, rev, entry, state).to(ctx.device)
        arms[arm] = lambda image, feats, m=model: m(
            image, feats, output_size=tuple(image.shape[-2:])
        )
    return arms
