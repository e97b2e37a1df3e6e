"""GCR maths and networks: trunks, the three heads, class separation, subspace angles, probe.

Grassmann Class Representation: H. Wang, Z. Li and W. Zhang, "Get the Best of Both Worlds:
Improving Accuracy and Transferability by Grassmann Class Representation", ICCV 2023,
arXiv:2308.01547. The subspace logits, the Riemannian optimiser and the principal angles come from
:mod:`subspacelab.geometry`; this module holds what is specific to the study. Pure and IO-free.
"""

from __future__ import annotations

import math
from collections.abc import Callable
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


def stratified_holdout(
    y: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Positions (sorted) to fit on and to hold out: ``round(fraction · n_c)`` of each class
    (at least one, and at least one left to fit on) held out at random."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    held = []
    for c in np.unique(y):
        pool = np.flatnonzero(y == c)
        if pool.size < 2:
            raise ValueError(f"class {c} has {pool.size} labelled example(s); need at least 2")
        n = min(max(1, round(fraction * pool.size)), pool.size - 1)
        held.append(rng.choice(pool, size=n, replace=False))
    val = np.sort(np.concatenate(held))
    return np.setdiff1d(np.arange(y.size), val), val


@dataclass(frozen=True)
class ProbeDraw:
    """One labelled draw of a target set: indices into the pool.

    ``train``: the labelled examples; ``val``: the subset of ``train`` held out to choose C;
    ``test``: the examples the probe is scored on.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def lbfgs_batched(
    fun: Callable[[Tensor], tuple[Tensor, Tensor]],
    theta: Tensor,
    *,
    max_iter: int,
    tol: float,
    history: int = 10,
) -> Tensor:
    """Minimise B independent smooth objectives at once: L-BFGS per row, in lockstep.

    ``fun(theta)`` maps parameters of shape (B, p) to the B values and their gradients (B, p).
    Each row keeps its own curvature pairs and its own Armijo backtracking step, and stops
    once every entry of its gradient is below ``tol`` (scipy's ``pgtol``, which scikit-learn's
    lbfgs uses): it stays put from then on, so a row's result does not depend on the others.
    All stop after ``max_iter`` iterations.
    """
    f, g = fun(theta)
    pairs: list[tuple[Tensor, Tensor, Tensor]] = []
    for _ in range(max_iter):
        active = g.abs().amax(dim=1) > tol
        if not bool(active.any()):
            break
        q, alphas = g.clone(), []
        for s, y, rho in reversed(pairs):
            a = rho * (s * q).sum(1)
            q -= a[:, None] * y
            alphas.append(a)
        if pairs:
            s, y, rho = pairs[-1]
            scale = torch.where(rho > 0, (s * y).sum(1) / (y * y).sum(1).clamp_min(1e-300), 1.0)
        else:
            scale = 1.0 / g.norm(dim=1).clamp_min(1.0)
        d = scale[:, None] * q
        for (s, y, rho), a in zip(pairs, reversed(alphas), strict=True):
            d += s * (a - rho * (y * d).sum(1))[:, None]
        d = -d
        slope = (g * d).sum(1)
        steep = slope >= 0  # not a descent direction (round-off): fall back to the gradient
        d[steep] = -g[steep]
        slope = torch.where(steep, -(g * g).sum(1), slope)
        d[~active], slope[~active] = 0.0, 0.0  # converged rows stay where they are
        t = torch.ones_like(f)
        for _ in range(50):
            f_new, g_new = fun(theta + t[:, None] * d)
            ok = f_new <= f + 1e-4 * t * slope
            if bool(ok.all()):
                break
            t = torch.where(ok, t, 0.5 * t)
        s, y = t[:, None] * d, g_new - g
        sy = (s * y).sum(1)
        pairs.append((s, y, torch.where(sy > 1e-12, 1.0 / sy.clamp_min(1e-12), 0.0)))
        pairs = pairs[-history:]
        theta, f, g = theta + s, f_new, g_new
    return theta


def softmax_l2_fit(
    x: Tensor,
    y: Tensor,
    c: Tensor,
    num_classes: int,
    *,
    max_iter: int,
    tol: float = 1e-4,
    start: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """L2-regularised multinomial logistic regression, many independent problems at once.

    Problem (r, m) minimises scikit-learn's ``LogisticRegression`` objective
    ``C_rm Σ_i CE(W x_ri + b, y_ri) + ½‖W‖²_F`` (intercept unpenalised), divided by ``C_rm n``
    as scikit-learn scales it, by :func:`lbfgs_batched` in float64 with scikit-learn's default
    ``tol``. One batched solve replaces a scikit-learn fit per draw and C.

    Args:
        x: Features of shape (R, n, d), shared by the M problems of each r.
        y: Labels of shape (R, n) in ``0..num_classes-1``.
        c: Inverse regularisation strengths of shape (R, M), positive.
        start: Initial weights (R, M, K, d) and intercepts (R, M, K); zeros by default. The
            optimum is unique (up to a common shift of the intercepts), so a start only saves
            iterations.

    Returns:
        Weights of shape (R, M, K, d) and intercepts of shape (R, M, K).
    """
    x, c = x.to(torch.float64), c.to(torch.float64)
    (r, n, d), m, k = x.shape, c.shape[1], num_classes
    if y.shape != (r, n) or c.shape[0] != r or not bool((c > 0).all()):
        raise ValueError(
            f"x (R, n, d), y (R, n), c (R, M) > 0; got {x.shape}, {y.shape}, {c.shape}"
        )
    hot = nn.functional.one_hot(y.long(), k).to(torch.float64)[:, :, None]  # (R, n, 1, K)
    lam = (1.0 / (c * n))[..., None, None]  # (R, M, 1, 1)
    xt = x.transpose(1, 2)

    def loss_grad(theta: Tensor) -> tuple[Tensor, Tensor]:
        t = theta.view(r, m, k * d + k)
        w, b = t[..., : k * d].reshape(r, m * k, d), t[..., k * d :]
        logits = torch.bmm(x, w.transpose(1, 2)).view(r, n, m, k) + b[:, None]
        lse = torch.logsumexp(logits, dim=-1, keepdim=True)
        ce = (lse[..., 0] - (logits * hot).sum(-1)).mean(1)  # (R, M)
        resid = ((logits - lse).exp() - hot) / n  # (R, n, M, K)
        w4 = w.view(r, m, k, d)
        gw = torch.bmm(xt, resid.view(r, n, m * k)).transpose(1, 2).reshape(r, m, k, d)
        loss = ce + 0.5 * (lam * w4.square()).sum((-1, -2))
        grad = torch.cat([(gw + lam * w4).reshape(r, m, k * d), resid.sum(1)], dim=-1)
        return loss.reshape(-1), grad.reshape(r * m, -1)

    theta0 = torch.zeros(r * m, k * d + k, dtype=torch.float64)
    if start is not None:
        theta0 = torch.cat([start[0].reshape(r * m, k * d), start[1].reshape(r * m, k)], 1)
    theta = lbfgs_batched(loss_grad, theta0.double(), max_iter=max_iter, tol=tol).view(
        r, m, k * d + k
    )
    return theta[..., : k * d].reshape(r, m, k, d), theta[..., k * d :]


def _standardise(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-problem mean and standard deviation (StandardScaler's: population std, 1 if 0)."""
    mean = x.mean(dim=-2, keepdim=True)
    std = x.std(dim=-2, keepdim=True, correction=0)
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def _predict(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """Class predictions (R, M, n') of features (R, n', d) under weights (R, M, K, d)."""
    return (torch.einsum("rnd,rmkd->rmnk", x, w) + b[:, :, None]).argmax(-1)


@dataclass(frozen=True)
class ProbeResult:
    """Linear-probe test accuracy (percent) and the regularisation chosen on validation."""

    accuracy: float
    c: float
    val_accuracy: float


def linear_probe(
    x: np.ndarray,
    y: np.ndarray,
    draws: list[ProbeDraw],
    *,
    c_grid: list[float],
    max_iter: int,
) -> list[ProbeResult]:
    """L2-regularised multinomial logistic regression on frozen features, for every draw.

    Per draw: features are standardised with the statistics of the examples each fit sees
    (a StandardScaler in the pipeline); every ``C`` of the grid is fit on the labelled
    examples outside ``val`` and scored on ``val`` (ties go to the smaller C, the stronger
    regularisation); the chosen C is refit on the whole labelled set and scored on ``test``.
    Draws of equal sizes are solved together by :func:`softmax_l2_fit`; the grid is walked as a
    regularisation path from the smallest C, each fit started from the previous solution (as
    scikit-learn's ``LogisticRegressionCV`` does), and the refit starts from the fit part's
    solution at the chosen C.

    Args:
        x: Features of the target pool, shape (N, d).
        y: Labels of the pool, shape (N,), in ``0..K-1``.
    """
    grid = sorted(c_grid)
    k = int(y.max()) + 1
    xt, yt = torch.from_numpy(np.asarray(x, dtype=np.float64)), torch.from_numpy(y).long()
    out: dict[int, ProbeResult] = {}
    groups: dict[tuple[int, int, int], list[int]] = {}
    for i, d in enumerate(draws):
        groups.setdefault((d.train.size, d.val.size, d.test.size), []).append(i)
    for members in groups.values():
        sel = [draws[i] for i in members]
        fit_idx = [np.setdiff1d(d.train, d.val) for d in sel]
        # phase 1: every C on the fit part, scored on the held-out part
        xf, yf = xt[np.stack(fit_idx)], yt[np.stack(fit_idx)]
        mean, std = _standardise(xf)
        path, start = [], None
        for c in grid:  # the regularisation path, each C started from the previous solution
            c_col = torch.full((len(sel), 1), c, dtype=torch.float64)
            start = softmax_l2_fit((xf - mean) / std, yf, c_col, k, max_iter=max_iter, start=start)
            path.append(start)
        w, b = torch.cat([p[0] for p in path], 1), torch.cat([p[1] for p in path], 1)
        val = np.stack([d.val for d in sel])
        hits = _predict((xt[val] - mean) / std, w, b) == yt[val][:, None]
        val_acc = hits.double().mean(-1)  # (R, M)
        best = val_acc.argmax(-1)  # the first maximum: the smallest C
        # phase 2: the chosen C refit on the whole labelled set, scored on the test part
        xl, yl = xt[np.stack([d.train for d in sel])], yt[np.stack([d.train for d in sel])]
        mean, std = _standardise(xl)
        chosen = torch.tensor([[grid[int(j)]] for j in best], dtype=torch.float64)
        rows = torch.arange(len(sel))
        start = (w[rows, best][:, None], b[rows, best][:, None])  # the fit part's solution
        w, b = softmax_l2_fit((xl - mean) / std, yl, chosen, k, max_iter=max_iter, start=start)
        test = np.stack([d.test for d in sel])
        acc = (_predict((xt[test] - mean) / std, w, b)[:, 0] == yt[test]).double().mean(-1)
        for j, i in enumerate(members):
            out[i] = ProbeResult(
                100.0 * float(acc[j]), float(chosen[j, 0]), 100.0 * float(val_acc[j, best[j]])
            )
    return [out[i] for i in range(len(draws))]
