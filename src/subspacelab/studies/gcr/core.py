"""GCR maths and networks: trunks, the three heads, class separation, subspace angles, probe.

Grassmann Class Representation: H. Wang, Z. Li and W. Zhang, "Get the Best of Both Worlds:
Improving Accuracy and Transferability by Grassmann Class Representation", ICCV 2023,
arXiv:2308.01547. The subspace logits, the Riemannian optimiser and the principal angles come from
:mod:`subspacelab.geometry`; this module holds what is specific to the study. Pure and IO-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from subspacelab.geometry import (
    init_class_subspaces,
    principal_angles,
    subspace_logits,
    weight_to_bases,
)
from subspacelab.studies.gcr.config import HEAD_PATTERN


@dataclass(frozen=True)
class HeadSpec:
    """A head named in params: ``softmax``, ``cosine`` or ``gcr<k>``."""

    name: str
    kind: str  # softmax | cosine | gcr
    k: int  # subspace dimension (gcr); 1 otherwise

    @property
    def is_subspace(self) -> bool:
        """Whether the head's weight holds class subspaces (trained by Riemannian SGD)."""
        return self.kind == "gcr"


def parse_head(name: str) -> HeadSpec:
    """Parse a head name; ValueError naming the allowed forms otherwise."""
    match = HEAD_PATTERN.match(name)
    if match is None:
        raise ValueError(f"unknown head {name!r}; allowed: softmax, cosine, gcr<k> (k >= 1)")
    if match.group(2):
        return HeadSpec(name, "gcr", int(match.group(2)))
    return HeadSpec(name, name, 1)


class ConvTrunk(nn.Module):
    """1-D CNN on signals of shape (n, L): conv-BN-ReLU blocks, then global average pooling.

    BatchNorm is essential (spec pitfall: without it the normalised-feature gradients blow up).
    The first conv keeps the resolution (stride 1), every later one has stride ``stride``;
    padding is ``kernel_size // 2``.
    """

    def __init__(self, channels: list[int], kernel_size: int, stride: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = 1
        for i, out in enumerate(channels):
            step = 1 if i == 0 else stride
            layers += [
                nn.Conv1d(width, out, kernel_size, step, padding=kernel_size // 2, bias=False),
                nn.BatchNorm1d(out),
                nn.ReLU(inplace=True),
            ]
            width = out
        self.body = nn.Sequential(*layers)
        self.feature_dim = width

    def forward(self, x: Tensor) -> Tensor:
        """Penultimate features of shape (n, d) from signals of shape (n, L)."""
        return self.body(x.unsqueeze(1)).mean(dim=-1)


class LinearHead(nn.Module):
    """Plain softmax classifier: ``W x + b``."""

    def __init__(self, d: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits of shape (n, C)."""
        return self.fc(x)


class CosineHead(nn.Module):
    """Cosine softmax (NormFace-style): ``γ cos(w_i, x)``."""

    def __init__(self, d: int, num_classes: int, gamma: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, d) / math.sqrt(d))
        self.gamma = gamma

    def forward(self, x: Tensor) -> Tensor:
        """Logits of shape (n, C)."""
        w = nn.functional.normalize(self.weight, dim=1)
        return self.gamma * nn.functional.normalize(x, dim=1) @ w.T


class GrassmannHead(nn.Module):
    """GCR head: class i is span(S_i), ``S_i`` a d x k orthonormal basis; logit ``γ‖S_iᵀ x̂‖``.

    ``weight`` has the Linear layout (C·k, d): rows ``[ik, (i+1)k)`` hold ``S_iᵀ``. It must be
    optimised by :class:`subspacelab.geometry.RiemannianSGD`, never by a Euclidean optimiser.
    """

    def __init__(self, d: int, num_classes: int, k: int, gamma: float) -> None:
        super().__init__()
        self.num_classes, self.k, self.gamma = num_classes, k, gamma
        # N(0, 1) blocks orthonormalised by QR, drawn from the global (seeded) generator
        self.weight = nn.Parameter(init_class_subspaces(num_classes, d, k))

    def forward(self, x: Tensor) -> Tensor:
        """Logits of shape (n, C)."""
        return subspace_logits(x, self.weight, self.num_classes, self.k, self.gamma)

    def bases(self) -> Tensor:
        """Class bases of shape (C, d, k)."""
        return weight_to_bases(self.weight.detach(), self.num_classes, self.k)


def build_head(spec: HeadSpec, d: int, num_classes: int, gamma: float) -> nn.Module:
    """The head module a :class:`HeadSpec` names."""
    if spec.kind == "softmax":
        return LinearHead(d, num_classes)
    if spec.kind == "cosine":
        return CosineHead(d, num_classes, gamma)
    if spec.k > d:
        raise ValueError(f"head {spec.name}: k={spec.k} exceeds the feature dimension d={d}")
    return GrassmannHead(d, num_classes, spec.k, gamma)


class Classifier(nn.Module):
    """A trunk producing penultimate features and a head producing logits."""

    def __init__(self, trunk: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        """Logits of shape (n, C)."""
        return self.head(self.trunk(x))


def subspace_parameters(model: Classifier) -> list[nn.Parameter]:
    """The class-subspace parameters (Riemannian SGD, no weight decay); empty for vector heads."""
    return [model.head.weight] if isinstance(model.head, GrassmannHead) else []


def euclidean_parameters(model: Classifier) -> list[nn.Parameter]:
    """Every parameter that is not a class subspace (plain SGD with weight decay)."""
    special = {id(p) for p in subspace_parameters(model)}
    return [p for p in model.parameters() if id(p) not in special]


def cosine_schedule(epoch: int, epochs: int) -> float:
    """Per-epoch cosine annealing factor ``(1 + cos(π e / E)) / 2`` (the official configs)."""
    return 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


def class_separation_r2(features: Tensor, labels: Tensor) -> float:
    """Class separation R² = 1 − mean within-class / mean overall cosine distance.

    The definition of Kornblith et al. (NeurIPS 2021) that the GCR paper uses: with cosine
    distance ``1 − cos(x, y)``, the within-class mean averages all pairs of each class, then the
    classes; the overall mean averages every class pair (j, k) equally. With ``μ_j`` the mean of
    the L2-normalised features of class j these are ``1 − ‖μ_j‖²`` and ``1 − ‖mean_j μ_j‖²``.

    Args:
        features: Tensor of shape (n, d).
        labels: int tensor of shape (n,); every class present is used.
    """
    if features.ndim != 2 or labels.shape != (features.shape[0],):
        raise ValueError(f"features (n, d) and labels (n,), got {features.shape}, {labels.shape}")
    unit = nn.functional.normalize(features.to(torch.float64), dim=1)
    classes = torch.unique(labels)
    if classes.numel() < 2:
        raise ValueError("class separation needs at least two classes")
    means = torch.stack([unit[labels == c].mean(dim=0) for c in classes])
    within = 1.0 - means.square().sum(dim=1).mean()
    overall = 1.0 - means.mean(dim=0).square().sum()
    return float(1.0 - within / overall)


def pairwise_class_angles(bases: Tensor) -> Tensor:
    """Principal angles (radians) between every pair i < j of class subspaces.

    Args:
        bases: Tensor of shape (C, d, k).

    Returns:
        Tensor of shape (C (C − 1) / 2, k).
    """
    i, j = torch.triu_indices(bases.shape[0], bases.shape[0], offset=1)
    return principal_angles(bases[i], bases[j])


def top1_error(logits: Tensor, labels: Tensor) -> float:
    """Top-1 error in percent."""
    return float(100.0 * (logits.argmax(dim=1) != labels).double().mean())


def select_classes(
    x: np.ndarray, y: np.ndarray, classes: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the given classes, relabelled 0..len(classes)-1 in the order given."""
    mask = np.isin(y, classes)
    remap = {c: i for i, c in enumerate(classes)}
    return x[mask], np.array([remap[int(v)] for v in y[mask]], dtype=np.int64)


def sample_shots(
    y: np.ndarray, shots: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``shots`` random indices per class (sorted) and the remaining indices (sorted)."""
    picked = []
    for c in np.unique(y):
        pool = np.flatnonzero(y == c)
        if pool.size <= shots:
            raise ValueError(f"class {c} has {pool.size} examples; need more than {shots} shots")
        picked.append(rng.choice(pool, size=shots, replace=False))
    train = np.sort(np.concatenate(picked))
    return train, np.setdiff1d(np.arange(y.size), train)


def input_stats(x: np.ndarray) -> tuple[float, float]:
    """Scalar mean and standard deviation of the source training inputs (for standardising)."""
    std = float(x.std())
    if not std > 0:
        raise ValueError("constant inputs cannot be standardised")
    return float(x.mean()), std


@dataclass(frozen=True)
class ProbeResult:
    """Linear-probe test accuracy (percent) and the regularisation chosen on validation."""

    accuracy: float
    c: float
    val_accuracy: float


def linear_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    c_grid: list[float],
    val_fraction: float,
    max_iter: int,
    seed: int,
) -> ProbeResult:
    """L2-regularised multinomial logistic regression on frozen features.

    Features are standardised with the labelled set's statistics. The inverse regularisation
    ``C`` is chosen on a stratified validation split of the labelled set (ties go to the smaller
    C, the stronger regularisation), then the probe is refit on the whole labelled set.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def probe(c: float) -> object:
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))

    fit_idx, val_idx = train_test_split(
        np.arange(y_train.size), test_size=val_fraction, random_state=seed, stratify=y_train
    )
    best_c, best_acc = None, -1.0
    for c in sorted(c_grid):
        model = probe(c).fit(x_train[fit_idx], y_train[fit_idx])
        acc = float((model.predict(x_train[val_idx]) == y_train[val_idx]).mean())
        if acc > best_acc:
            best_c, best_acc = c, acc
    model = probe(best_c).fit(x_train, y_train)
    test_acc = float((model.predict(x_test) == y_test).mean())
    return ProbeResult(100.0 * test_acc, float(best_c), 100.0 * best_acc)
