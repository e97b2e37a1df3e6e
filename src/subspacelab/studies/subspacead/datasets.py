"""Full-profile data and backbone of SubspaceAD: MVTec-AD, VisA (1cls split), DINOv2 tokens.

Lendering, Akdag & Bondarev, "SubspaceAD: Training-Free Few-Shot Anomaly Detection via Subspace
Modeling", CVPR 2026, arXiv:2602.23013.

* MVTec-AD (Bergmann et al., CVPR 2019) needs a manual licence acceptance: the user places
  ``mvtec_anomaly_detection.tar.xz`` in the archive folder; its SHA-256 is checked before a safe
  extraction. Layout: ``<category>/train/good/*.png``, ``test/<defect>/*.png``,
  ``ground_truth/<defect>/<stem>_mask.png``.
* VisA (Zou et al., ECCV 2022) is downloaded from the Amazon S3 bucket and re-split with its own
  ``split_csv/1cls.csv`` (columns ``object,split,label,image,mask``) into the same layout, with
  ``good``/``bad`` defect folders and binarised masks ``ground_truth/bad/<stem>.png``.
* :class:`DinoV2Tokens` — DINOv2-with-registers patch tokens, mean of the chosen hidden layers,
  CLS and register tokens dropped. ``transformers`` is imported lazily (GPU-cluster extra).
"""

from __future__ import annotations

import csv
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from subspacelab.data.download import DownloadError, Resource, fetch, safe_extract, verify

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class CategoryFiles:
    """Image files of one category in the MVTec layout.

    ``masks[i]`` is the GT mask of ``test[i]`` (None for good images).
    """

    train: list[Path]
    test: list[Path]
    labels: np.ndarray
    masks: list[Path | None]


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def list_categories(root: Path) -> list[str]:
    """Category folders under ``root`` (those with ``train/good``), sorted."""
    return sorted(p.name for p in root.iterdir() if (p / "train" / "good").is_dir())


def category_files(root: Path, category: str) -> CategoryFiles:
    """Train/test files and GT masks of one category in the MVTec layout (MVTec or VisA-1cls).

    Raises FileNotFoundError naming the file when a defective test image has no mask.
    """
    base = root / category
    train = _images(base / "train" / "good")
    if not train:
        raise FileNotFoundError(f"{base / 'train' / 'good'}: no training images")
    test: list[Path] = []
    masks: list[Path | None] = []
    labels: list[int] = []
    for defect_dir in sorted(p for p in (base / "test").iterdir() if p.is_dir()):
        for img in _images(defect_dir):
            test.append(img)
            if defect_dir.name == "good":
                masks.append(None)
                labels.append(0)
                continue
            gt = base / "ground_truth" / defect_dir.name
            candidates = [gt / f"{img.stem}_mask.png", gt / f"{img.stem}.png"]
            found = next((c for c in candidates if c.is_file()), None)
            if found is None:
                raise FileNotFoundError(f"{img}: no ground-truth mask (looked for {candidates[0]})")
            masks.append(found)
            labels.append(1)
    if not test:
        raise FileNotFoundError(f"{base / 'test'}: no test images")
    return CategoryFiles(train, test, np.array(labels, dtype=np.int64), masks)


def load_image(path: Path, size: int) -> np.ndarray:
    """RGB uint8 ``(size, size, 3)``, resized (bicubic, aspect ignored) as the paper's processor."""
    from PIL import Image

    with Image.open(path) as img:
        rgb = img.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(rgb, dtype=np.uint8)


def load_mask(path: Path | None, size: int) -> np.ndarray:
    """Binary uint8 mask ``(size, size)``, nearest-neighbour resize; zeros for ``None``."""
    from PIL import Image

    if path is None:
        return np.zeros((size, size), dtype=np.uint8)
    with Image.open(path) as img:
        small = img.convert("L").resize((size, size), Image.Resampling.NEAREST)
    return (np.asarray(small) > 0).astype(np.uint8)


def prepare_mvtec(archive: Path, sha256: str, dest: Path) -> list[str]:
    """Verify the manually placed MVTec-AD archive and extract it into ``dest``.

    The archive is never deleted (it cannot be re-downloaded without a licence click).
    """
    if not archive.is_file():
        raise DownloadError(
            f"{archive}: missing. MVTec-AD needs a licence acceptance: download "
            "mvtec_anomaly_detection.tar.xz from https://www.mvtec.com/company/research/"
            f"datasets/mvtec-ad and place it at {archive}"
        )
    verify(archive, Resource(url=archive.as_uri(), filename=archive.name, sha256=sha256))
    safe_extract(archive, dest)
    return list_categories(dest)


def resplit_visa(raw: Path, dest: Path) -> list[str]:
    """Re-split an extracted VisA tree into the MVTec layout with ``split_csv/1cls.csv``.

    Rows ``object,split,label,image,mask``: images go to ``<object>/<split>/{good,bad}/``, masks
    of anomalous test images (binarised: any non-zero value is a defect) to
    ``<object>/ground_truth/bad/<stem>.png``.
    """
    from PIL import Image

    split_csv = raw / "split_csv" / "1cls.csv"
    if not split_csv.is_file():
        raise FileNotFoundError(f"{split_csv}: missing; is {raw} an extracted VisA_20220922.tar?")
    with split_csv.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    needed = {"object", "split", "label", "image", "mask"}
    if not rows or not needed <= set(rows[0]):
        raise ValueError(f"{split_csv}: expected columns {sorted(needed)}")
    for row in rows:
        label = "good" if row["label"] == "normal" else "bad"
        src = raw / row["image"]
        if not src.is_file():
            raise FileNotFoundError(f"{src}: listed in {split_csv} but missing")
        target = dest / row["object"] / row["split"] / label / src.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        if row["split"] == "test" and label == "bad":
            mask_src = raw / row["mask"]
            if not row["mask"] or not mask_src.is_file():
                raise FileNotFoundError(f"{src}: anomalous test image without mask {mask_src}")
            mask_dst = dest / row["object"] / "ground_truth" / "bad" / f"{src.stem}.png"
            mask_dst.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(mask_src) as m:
                binary = (np.asarray(m.convert("L")) > 0).astype(np.uint8) * 255
            Image.fromarray(binary).save(mask_dst)
    return list_categories(dest)


def prepare_visa(
    url: str, sha256: str, archive_dir: Path, dest: Path, progress: Callable[[str], None]
) -> list[str]:
    """Download (checksum-pinned) and extract VisA, then re-split it into ``dest`` (1cls)."""
    archive = fetch(Resource(url, "VisA_20220922.tar", sha256=sha256), archive_dir, progress)
    raw = dest.parent / f".{dest.name}.raw"
    safe_extract(archive, raw)
    try:
        return resplit_visa(raw, dest)
    finally:
        shutil.rmtree(raw, ignore_errors=True)


def sample_shots(files: Sequence[Path], k: int, seed: int) -> list[Path]:
    """``k`` training images drawn without replacement by ``seed`` (all when fewer exist)."""
    if k >= len(files):
        return list(files)
    idx = np.random.default_rng(seed).choice(len(files), size=k, replace=False)
    return [files[i] for i in sorted(idx)]


class DinoV2Tokens(nn.Module):
    """Patch tokens of a HuggingFace DINOv2(-with-registers) model: the mean of ``layers``.

    ``layers`` index ``hidden_states`` (so −12…−18 as in the paper); the CLS and register
    tokens come first in the sequence and are dropped before reshaping to the patch grid.
    """

    def __init__(
        self, name: str, revision: str, layers: Sequence[int], device: torch.device
    ) -> None:
        super().__init__()
        if not _COMMIT.match(revision):
            raise ValueError(
                f"features.hf_revision: got {revision!r}; pin the 40-hex commit of {name} "
                "(huggingface.co/<model>/commits/main) so the full run is reproducible"
            )
        from transformers import AutoModel  # lazy: GPU-cluster dependency

        self.model = AutoModel.from_pretrained(name, revision=revision).eval().to(device)
        self.model.requires_grad_(False)
        self.layers = list(layers)
        self.device = device
        cfg = self.model.config
        self.patch = int(cfg.patch_size)
        self.n_front = 1 + int(getattr(cfg, "num_register_tokens", 0))
        self.register_buffer("pix_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("pix_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        """Tokens ``(B, G, G, D)`` of images ``(B, 3, H, W)`` in [0, 1], ``G = H / patch``."""
        x = (images.to(self.device) - self.pix_mean.to(self.device)) / self.pix_std.to(self.device)
        out = self.model(pixel_values=x, output_hidden_states=True)
        grid = images.shape[-1] // self.patch
        n = grid * grid
        hidden = [out.hidden_states[i][:, self.n_front : self.n_front + n] for i in self.layers]
        tokens = torch.stack(hidden).float().mean(dim=0)
        return tokens.reshape(images.shape[0], grid, grid, -1)
