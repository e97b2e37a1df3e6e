"""Full-scale pieces of the GCR study (arXiv:2308.01547): ResNet50-D and CIFAR images.

ImageNet itself (the user's archives, their checks and unpacking, the image pipelines) is
:mod:`subspacelab.data.imagenet`. timm (ResNet50-D) is optional (the ``full`` extra) and imported
only when a trunk is built.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from subspacelab.data.imagenet import IMAGENET_MEAN, IMAGENET_STD


class ResizedImages(Dataset):
    """Float NCHW images in [0, 1] (e.g. CIFAR), resized to the backbone's input and normalised.

    Bilinear, antialiased resizing to ``image_size`` and ImageNet normalisation, done in torch so
    the transfer sets need no torchvision.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, image_size: int) -> None:
        if images.ndim != 4 or images.shape[1] != 3 or labels.shape != (images.shape[0],):
            raise ValueError(f"expected (n, 3, H, W) images and (n,) labels, got {images.shape}")
        self.images, self.labels, self.size = images, labels, image_size
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        img = torch.from_numpy(np.ascontiguousarray(self.images[i])).unsqueeze(0)
        img = nn.functional.interpolate(
            img, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False
        )[0]
        return (img - self.mean) / self.std, int(self.labels[i])


class TimmTrunk(nn.Module):
    """A timm backbone without its classifier: globally pooled penultimate features."""

    def __init__(self, name: str) -> None:
        super().__init__()
        try:
            import timm
        except ImportError as exc:
            raise ImportError(
                f"backbone {name!r} needs timm: pip install 'subspacelab[full]'"
            ) from exc
        self.body = timm.create_model(name, pretrained=False, num_classes=0)
        self.feature_dim = int(self.body.num_features)

    def forward(self, x: Tensor) -> Tensor:
        """Pooled features of shape (n, d)."""
        return self.body(x)
