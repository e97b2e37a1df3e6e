"""The report card's probes of one classifier: pure and IO-free."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from subspacelab.geometry import effective_rank, orthonormalize, principal_angles
from subspacelab.probes import collapse as nc
from subspacelab.probes import hessian as hs


def class_subspaces(h: Tensor, y: Tensor, num_classes: int, rank: int) -> Tensor:
    """Each class's feature subspace: the top-``rank`` right singular vectors of its
    (uncentred) features, shape (C, d, rank)."""
    out = []
    for c in range(num_classes):
        v = torch.linalg.svd(h[y == c].double(), full_matrices=False).Vh[:rank].T
        out.append(orthonormalize(v))
    return torch.stack(out)


def mean_pairwise_angle_deg(bases: Tensor) -> tuple[float, float]:
    """Mean and minimum (over class pairs) of the mean principal angle, in degrees."""
    i, j = torch.triu_indices(bases.shape[0], bases.shape[0], offset=1)
    ang = torch.rad2deg(principal_angles(bases[i], bases[j]).mean(dim=-1))
    return float(ang.mean()), float(ang.min())


def probe_classifier(
    trunk: nn.Module,
    head: nn.Module,
    x: Tensor,
    y: Tensor,
    num_classes: int,
    *,
    class_rank: int,
    top_k: int,
    head_bases: Tensor | None,
) -> dict[str, float]:
    """NC1-NC4, effective rank, class-subspace angles and the top Hessian eigenvalues of
    ``head(trunk(x))``.

    The features and NC probes are computed in float64. The Hessian (CE, all parameters, eval
    mode) is applied in float32 and its eigenvalues found by ARPACK in float64: a float64 conv
    HVP costs ~3x more on a CPU and the top eigenvalues agree to ~1e-7 relative (checked on the
    mini gcr networks); ``tol`` stays 1e-6.
    """
    model = nn.Sequential(trunk, head).float().eval()
    fn, theta = hs.flat_model(model)
    hvp = hs.hvp_fn(fn, theta, x.float(), y, "ce")
    top = hs.lanczos_top(
        lambda v: hvp(v.to(theta.device)).cpu(), theta.numel(), top_k, dtype=torch.float32, tol=1e-6
    )
    model.double()
    x = x.double()
    with torch.no_grad():
        h = trunk(x)
        logits = head(h)
    means = nc.class_means(h, y, num_classes)
    row: dict[str, float] = {
        "train_error": float((logits.argmax(1) != y).double().mean()),
        "nc1": nc.nc1(h, y, num_classes),
        "nc2_etf": nc.nc2_etf(means),
        "nc4": nc.nc4(h, logits, means),
        "effective_rank": effective_rank(h - h.mean(dim=0)),
    }
    row["feature_angle_mean"], row["feature_angle_min"] = mean_pairwise_angle_deg(
        class_subspaces(h, y, num_classes, class_rank)
    )
    if head_bases is not None:
        row["head_angle_mean"], row["head_angle_min"] = mean_pairwise_angle_deg(head_bases.double())
    for i, lam in enumerate(top):
        row[f"hessian_l{i + 1}"] = float(lam)
    return row
