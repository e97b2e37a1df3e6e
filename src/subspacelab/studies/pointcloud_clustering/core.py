"""pointcloud_clustering's model and scores (arXiv 2307.14605): the segmentation net with its
optional cluster-contrast module, the training loss of each arm (CE + Lovász-softmax, plus the
cluster contrast), and the test-time scores (mIoU, per-class IoU, sub-type NMI)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from subspacelab.shapes.edgeconv import EdgeSegNet, knn
from subspacelab.shapes.segloss import ClusterContrast, confusion, iou, lovasz_softmax

ARMS = ("baseline", "cluster")
IGNORE = 255  # SemanticKITTI's unlabeled points (the miniature has none)


def graphs(points: Tensor, k: int, batch: int = 16) -> Tensor:
    """The xyz k-NN graph of every scan, (S, N, k) (rotation about z leaves it unchanged)."""
    return torch.cat([knn(points[s : s + batch], k) for s in range(0, len(points), batch)])


def split_tensors(
    points: np.ndarray, labels: np.ndarray, subtypes: np.ndarray, k: int
) -> dict[str, Tensor]:
    """One split as the steps save it: points, classes, sub-types and the k-NN graph."""
    pts = torch.from_numpy(points)
    return {
        "points": pts,
        "labels": torch.from_numpy(labels),
        "subtypes": torch.from_numpy(subtypes),
        "idx": graphs(pts, k),
    }


class SegModel(nn.Module):
    """The backbone and, for the ``cluster`` arm, the loss's sub-centroids and memory queue
    (buffers, saved with the model; the test-time network is ``net`` alone)."""

    def __init__(self, net: EdgeSegNet, cluster: ClusterContrast | None) -> None:
        super().__init__()
        self.net = net
        self.cluster = cluster

    def forward(self, x: Tensor, idx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Logits (B, N, C) and unit embeddings (B, N, D)."""
        return self.net(x, idx)


def seg_loss(
    model: SegModel, scale: float, weight: float
) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """The arm's loss on a batch (points (B, N, 3) in metres, labels (B, N), graph (B, N, k)):
    CE + Lovász-softmax, plus ``weight`` · cluster contrast when the model has one."""

    def loss(points: Tensor, labels: Tensor, idx: Tensor) -> Tensor:
        logits, emb = model(points / scale, idx)
        flat, y = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
        total = F.cross_entropy(flat, y, ignore_index=IGNORE)
        total = total + lovasz_softmax(F.softmax(flat, 1), y, ignore=IGNORE)
        if model.cluster is not None:
            pred = flat.detach().argmax(1)
            total = total + weight * model.cluster(emb.reshape(-1, emb.shape[-1]), y, pred)
        return total

    return loss


@torch.no_grad()
def infer(
    model: SegModel, points: Tensor, idx: Tensor, scale: float, batch: int
) -> tuple[Tensor, Tensor]:
    """Predictions (S, N) and embeddings (S, N, D) of every scan, in eval mode."""
    model.eval()
    preds, embs = [], []
    for s in range(0, len(points), batch):
        logits, emb = model(points[s : s + batch] / scale, idx[s : s + batch])
        preds.append(logits.argmax(-1))
        embs.append(emb)
    return torch.cat(preds), torch.cat(embs)


def scores(pred: Tensor, labels: Tensor, n_classes: int) -> tuple[float, np.ndarray]:
    """mIoU (%) over the classes present and the per-class IoU (%, NaN if absent)."""
    per_class = iou(confusion(pred.reshape(-1), labels.reshape(-1), n_classes, IGNORE))
    return float(per_class.nanmean()) * 100, per_class.numpy() * 100


def nmi(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised mutual information (arithmetic mean normalisation) of two labelings."""
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(a, b))


def kmeans_labels(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means (spherical data, Euclidean) cluster labels: the baseline arm's sub-clusters."""
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(x)


def occupancy_entropy(labels: np.ndarray, k: int) -> float:
    """Entropy of the sub-cluster occupancy divided by log K (1: even use; 0: collapse)."""
    if k < 2:
        return 1.0
    p = np.bincount(labels, minlength=k) / max(len(labels), 1)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / np.log(k))
