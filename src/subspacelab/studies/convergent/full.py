"""The full profile of ``convergent`` (Li et al., arXiv:1511.07543): torchvision's AlexNet on
ImageNet, whose conv1 and conv2 units are matched as in the paper.

torchvision is an optional dependency (``pip install 'subspacelab[full]'``), imported only when
a network is built.
"""

from __future__ import annotations

from torch import Tensor, nn


class AlexNetUnits(nn.Module):
    """torchvision's AlexNet (random init) exposing its post-ReLU conv1 and conv2 maps, with
    the spatial positions flattened: shapes (n, 64, 55·55) and (n, 192, 27·27) at 224 px."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        try:
            from torchvision.models import alexnet
        except ImportError as exc:
            raise ImportError(
                "the convergent full profile needs torchvision: pip install 'subspacelab[full]'"
            ) from exc
        self.net = alexnet(weights=None, num_classes=classes)

    def activations(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Post-ReLU conv1 and conv2 maps of images (n, 3, H, W), positions flattened."""
        f = self.net.features
        a1 = f[1](f[0](x))
        a2 = f[4](f[3](f[2](a1)))
        return a1.flatten(2), a2.flatten(2)

    def forward(self, x: Tensor) -> Tensor:
        """Logits."""
        return self.net(x)
