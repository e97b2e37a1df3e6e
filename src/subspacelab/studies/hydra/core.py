"""Hydra/SimLAP (arXiv 2410.18200): the model, the pair sampler, the gated contrastive loss and
the evaluation's spectra; tested in tests/studies/test_hydra.py.

For anchor i of class y₁ and its partner class y₂ (drawn per anchor), with the projector's
output z and the class-pair gate γ_i = γ(y₁(i), y₂(i)) (``subspacelab.modules.gates``):
ℓ_ij = cos(γ_i ⊙ z_i, γ_i ⊙ z_j)/τ, centred over j; positives P_i = {j ≠ i : y_j = y₂(i)},
negatives N_i = {j : y_j ∉ {y₁(i), y₂(i)}} (same-class-as-anchor samples are neither), and

    L = Σ_i Σ_{j∈P_i} [log(exp ℓ_ij + Σ_{k∈N_i} exp ℓ_ik) − ℓ_ij] / |P|,   |P| = Σ_i |P_i|,

plus the cross-entropy of a linear head on the *detached* representation r (a probe trained
alongside). The cosine never builds the (b, b, d) gated tensor:
cos(γ_i⊙z_i, γ_i⊙z_j) = ((γ_i²⊙z_i)·z_j) / (‖γ_i⊙z_i‖ · sqrt(γ_i²·z_j²)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from subspacelab.modules.gates import ClassPairGate, OpenGate

PAIRS = ("arbitrary", "distinct", "identical")
EPS = 1e-8


@dataclass(frozen=True)
class Arm:
    """One arm: how the partner class is drawn (``None``: plain cross-entropy, no contrast) and
    whether the class-pair gate filters the features (else γ ≡ 1)."""

    pairs: str | None
    gated: bool


ARMS: dict[str, Arm] = {
    "simlap_arbitrary": Arm("arbitrary", gated=True),
    "simlap_distinct": Arm("distinct", gated=True),
    "distinct_nogate": Arm("distinct", gated=False),
    "supcon": Arm("identical", gated=False),
    "ce": Arm(None, gated=False),
}
CONTRASTIVE = tuple(a for a, arm in ARMS.items() if arm.pairs is not None)
GATED = tuple(a for a, arm in ARMS.items() if arm.gated)


def partners(y: Tensor, kind: str, classes: int, gen: torch.Generator) -> Tensor:
    """The partner class y₂ per anchor: ``arbitrary`` — the labels of the batch in a random
    order; ``distinct`` — a uniformly drawn other class; ``identical`` — y itself (SupCon)."""
    if kind == "identical":
        return y.clone()
    if kind == "arbitrary":
        return y[torch.randperm(len(y), generator=gen)]
    if kind == "distinct":
        return (y + torch.randint(1, classes, (len(y),), generator=gen)) % classes
    raise ValueError(f"unknown pair type {kind!r}; allowed: {', '.join(PAIRS)}")


def gated_logits(z: Tensor, gate: Tensor, temperature: float) -> Tensor:
    """ℓ_ij = cos(γ_i ⊙ z_i, γ_i ⊙ z_j)/τ for z (b, d) and the anchors' gates (b, d)."""
    g2 = gate * gate
    num = (z * g2) @ z.T
    norm_i = (g2 * z * z).sum(1, keepdim=True).clamp_min(EPS).sqrt()
    norm_j = (g2 @ (z * z).T).clamp_min(EPS).sqrt()
    return num / (norm_i * norm_j) / temperature


def pair_masks(y1: Tensor, y2: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Positives (b, b): y_j = y₂(i), j ≠ i; negatives: y_j ∉ {y₁(i), y₂(i)}."""
    pos = y2[:, None] == y[None, :]
    pos &= ~torch.eye(len(y), dtype=torch.bool, device=y.device)
    neg = (y1[:, None] != y[None, :]) & (y2[:, None] != y[None, :])
    return pos, neg


def multi_positive_loss(logits: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
    """Σ_{i, j∈P_i} [log(exp ℓ_ij + Σ_{k∈N_i} exp ℓ_ik) − ℓ_ij] / |P| on row-centred logits;
    an anchor without positives adds nothing (0 when no anchor has one)."""
    logits = logits - logits.mean(1, keepdim=True)
    neg_lse = torch.logsumexp(logits.masked_fill(~neg, -math.inf), dim=1, keepdim=True)
    terms = torch.logaddexp(logits, neg_lse) - logits
    return (terms * pos).sum() / pos.sum().clamp_min(1)


class Conv1dEncoder(nn.Module):
    """The miniature's backbone: three Conv1d-BN-ReLU layers (stride 1, 2, 2), flatten,
    Linear-ReLU to r ∈ R^rep_dim."""

    def __init__(self, length: int, channels: list[int], kernel: int, rep_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin, n = 1, length
        for c, stride in zip(channels, (1, 2, 2), strict=True):
            layers += [
                nn.Conv1d(cin, c, kernel, stride=stride, padding=kernel // 2),
                nn.BatchNorm1d(c),
                nn.ReLU(),
            ]
            cin, n = c, (n + 2 * (kernel // 2) - kernel) // stride + 1
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Linear(cin * n, rep_dim)

    def forward(self, x: Tensor) -> Tensor:
        """r (b, rep_dim) for signals x (b, length)."""
        return F.relu(self.fc(self.convs(x[:, None, :]).flatten(1)))


def projector(rep_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """h: Linear-BN-ReLU-Linear-LayerNorm (two layers, LayerNorm last, as the authors' head)."""
    return nn.Sequential(
        nn.Linear(rep_dim, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(),
        nn.Linear(hidden, out_dim),
        nn.LayerNorm(out_dim),
    )


class SimLAP(nn.Module):
    """Backbone, projector, gate (class-pair or open) and the linear head on r."""

    def __init__(
        self,
        backbone: nn.Module,
        rep_dim: int,
        proj_hidden: int,
        out_dim: int,
        gate: ClassPairGate | OpenGate,
        classes: int,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = projector(rep_dim, proj_hidden, out_dim)
        self.gate = gate
        self.head = nn.Linear(rep_dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        """The head's logits on the detached representation (inference)."""
        return self.head(self.backbone(x))

    def embed(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(r, z)."""
        r = self.backbone(x)
        return r, self.projector(r)


def arm_loss(
    model: SimLAP,
    arm: Arm,
    x: Tensor,
    y: Tensor,
    *,
    classes: int,
    temperature: float,
    label_smoothing: float,
    gen: torch.Generator,
) -> Tensor:
    """One batch's loss: the gated contrastive loss plus the detached head's cross-entropy,
    or (``arm.pairs is None``) the cross-entropy of the head trained with the backbone."""
    r = model.backbone(x)
    if arm.pairs is None:
        return F.cross_entropy(model.head(r), y, label_smoothing=label_smoothing)
    z = model.projector(r)
    y2 = partners(y, arm.pairs, classes, gen)
    logits = gated_logits(z, model.gate(y, y2), temperature)
    pos, neg = pair_masks(y, y2, y)
    ce = F.cross_entropy(model.head(r.detach()), y, label_smoothing=label_smoothing)
    return multi_positive_loss(logits, pos, neg) + ce


def augment(
    x: Tensor, gen: torch.Generator, shift: int, lo: float, hi: float, noise: float
) -> Tensor:
    """A random shift of up to ``shift`` positions along the last axis (zero fill), amplitude
    scaling uniform in [lo, hi] and Gaussian noise of std ``noise``, per sample."""
    b, n = len(x), x.shape[-1]
    flat = x.reshape(-1, n) if x.dim() == 2 else x.reshape(b, -1, n)
    s = torch.randint(-shift, shift + 1, (b,), generator=gen)
    idx = torch.arange(n)[None, :] - s[:, None]  # out[i, t] = x[i, t - s_i]
    valid = (idx >= 0) & (idx < n)
    idx = idx.clamp(0, n - 1)
    if flat.dim() == 3:
        idx, valid = idx[:, None, :].expand_as(flat), valid[:, None, :]
    shifted = torch.gather(flat, -1, idx) * valid
    scale = lo + (hi - lo) * torch.rand((b,), generator=gen)
    out = shifted.reshape(x.shape) * scale.view(b, *([1] * (x.dim() - 1)))
    return out + noise * torch.randn(x.shape, generator=gen)


def effective_rank(features: Tensor) -> tuple[float, Tensor]:
    """exp(H(σ/Σσ)) of the centred features' singular values σ, and σ/Σσ (descending)."""
    f = features.double()
    s = torch.linalg.svdvals(f - f.mean(0, keepdim=True))
    p = s / s.sum().clamp_min(1e-30)
    h = -(p * p.clamp_min(1e-30).log()).sum()
    return float(h.exp()), p.float()


def gate_similarity(gates: Tensor) -> Tensor:
    """Cosine similarity (classes, classes) between the single-class gates (classes, d)."""
    g = F.normalize(gates.double(), dim=1)
    return (g @ g.T).float()


def soft_confusion(probs: Tensor, y: Tensor, classes: int) -> Tensor:
    """Symmetrised soft confusion: C_ab = (P̄(b | a) + P̄(a | b))/2, P̄(b | a) the mean predicted
    probability of b over the samples of class a (a class without samples is an error)."""
    counts = torch.bincount(y, minlength=classes)
    if bool((counts == 0).any()):
        raise ValueError("soft confusion needs every class in the labels")
    mean = torch.zeros(classes, classes, dtype=torch.float64).index_add_(0, y, probs.double())
    mean /= counts[:, None]
    return ((mean + mean.T) / 2).float()


def spearman_off_diagonal(a: Tensor, b: Tensor) -> float:
    """Spearman's rank correlation between the strictly-upper-triangular entries of two square
    matrices (average ranks for ties)."""
    from scipy.stats import spearmanr

    iu = torch.triu_indices(a.shape[0], a.shape[0], offset=1)
    rho = spearmanr(a[iu[0], iu[1]].numpy(), b[iu[0], iu[1]].numpy()).statistic
    return float(rho)


def linear_probe(
    r_train: Tensor, y_train: Tensor, r_test: Tensor, y_test: Tensor, c: float, max_iter: int
) -> float:
    """Test accuracy of a multinomial logistic regression (L-BFGS, inverse regularisation
    ``c``) fitted on the standardised frozen training features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(r_train.double().numpy())
    clf = LogisticRegression(C=c, max_iter=max_iter)
    clf.fit(scaler.transform(r_train.double().numpy()), y_train.numpy())
    pred = clf.predict(scaler.transform(r_test.double().numpy()))
    return float((torch.from_numpy(pred) == y_test).double().mean())
