"""The maths of xfactors (XFACTORS, anonymous ICML 2026 submission, no arXiv id).

* :class:`XFactors` — two conv encoders, E_s for the residual subspace S (d_s) and E_t for the
  factor subspaces T_1..T_K (d_i each), Gaussian posteriors, one conv decoder on [z_s; z_t];
* :func:`xfactors_loss` — MSE(x̂, x) + w_KL(β_s KL_s + β_t KL_t) + Σ_i λ_i SupNCE(z_t[T_i], y_i);
* :func:`sup_nce` — the supervised InfoNCE of §3 (positives: same value of the factor);
* :class:`BetaVAE` — the baseline with the same encoder/decoder, Bernoulli likelihood + β·KL;
* :class:`SupervisedHeads` — an encoder whose d_i-dimensional blocks feed per-factor
  classifiers (the label-supervision control of §6);
* :class:`FactorProbe` — a CNN classifier of every factor, trained on real images, that reads
  the factor-swap decodes;
* :func:`swap_blocks` — replace block T_i of A's code by B's.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _down_layers(size: int, widths: Sequence[int]) -> tuple[nn.Sequential, int]:
    """Stride-2 3×3 convs (BatchNorm, ReLU) from 1×size×size down to 2×2: (the stack, flat
    features)."""
    n = int(math.log2(size)) - 1
    if 2**n * 2 != size or n < 1:
        raise ValueError(f"image size must be a power of two >= 4, got {size}")
    chans = [1] + [widths[min(i, len(widths) - 1)] for i in range(n)]
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(chans):
        layers += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.BatchNorm2d(b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Flatten()), chans[-1] * 4


class ConvEncoder(nn.Module):
    """Conv stack (widths e.g. [32, 32, 64, 64], one stride-2 layer per halving down to 2×2)
    -> 128 -> ``out`` (2·latent for a Gaussian posterior)."""

    def __init__(self, size: int, widths: Sequence[int], out: int) -> None:
        super().__init__()
        self.features, flat = _down_layers(size, widths)
        self.head = nn.Sequential(nn.Linear(flat, 128), nn.ReLU(), nn.Linear(128, out))

    def forward(self, x: Tensor) -> Tensor:
        """(N, size, size) -> (N, out)."""
        return self.head(self.features(x[:, None]))


class ConvDecoder(nn.Module):
    """latent -> 128 -> C×2×2 -> transposed convs doubling to size×size: logits (N, size, size)."""

    def __init__(self, size: int, widths: Sequence[int], latent: int) -> None:
        super().__init__()
        n = int(math.log2(size)) - 1
        chans = [*[widths[min(i, len(widths) - 1)] for i in range(n)][::-1], 1]
        self.top = chans[0]
        self.head = nn.Sequential(
            nn.Linear(latent, 128), nn.ReLU(), nn.Linear(128, self.top * 4), nn.ReLU()
        )
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(chans)):
            layers.append(nn.ConvTranspose2d(a, b, 4, stride=2, padding=1))
            if i < n - 1:
                layers += [nn.BatchNorm2d(b), nn.ReLU()]
        self.body = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        """(N, latent) -> logits (N, size, size)."""
        return self.body(self.head(z).view(-1, self.top, 2, 2))[:, 0]


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) = −½Σ(1 + log σ² − μ² − σ²), log σ² clamped to ±20, summed over
    dimensions and averaged over the batch."""
    logvar = logvar.clamp(-20.0, 20.0)
    return (-0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(-1)).mean()


def reparameterise(mu: Tensor, logvar: Tensor) -> Tensor:
    """z = μ + σ·ε."""
    return mu + (0.5 * logvar.clamp(-20.0, 20.0)).exp() * torch.randn_like(mu)


def sup_nce(z: Tensor, labels: Tensor, tau: float) -> Tensor:
    """Supervised InfoNCE on one factor: normalise z, s_ab = z_a·z_b/τ (clamped to ±100), the
    diagonal masked; loss_a = −[logsumexp_{b∈pos(a)} s_ab − logsumexp_{b≠a} s_ab], positives
    sharing a's label, averaged over anchors with >= 1 positive (0 when none has one)."""
    zn = F.normalize(z, dim=-1)
    s = (zn @ zn.T / tau).clamp(-100.0, 100.0)
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    neg_inf = torch.finfo(s.dtype).min
    lse_pos = torch.logsumexp(s.masked_fill(~pos, neg_inf), dim=1)
    lse_all = torch.logsumexp(s.masked_fill(eye, neg_inf), dim=1)
    has = pos.any(dim=1)
    if not has.any():
        return s.new_zeros(())
    return (lse_all - lse_pos)[has].mean()


class XFactors(nn.Module):
    """E_s -> (μ_s, log σ_s²) of dim d_s; E_t -> (μ_t, log σ_t²) of dim n_T·d_i; decoder on
    [z_s; z_t]. Block i of z_t (dims i·d_i .. (i + 1)·d_i) is T_i."""

    def __init__(self, size: int, widths: Sequence[int], d_s: int, d_i: int, n_t: int) -> None:
        super().__init__()
        self.d_s, self.d_i, self.n_t = d_s, d_i, n_t
        self.enc_s = ConvEncoder(size, widths, 2 * d_s)
        self.enc_t = ConvEncoder(size, widths, 2 * d_i * n_t)
        self.dec = ConvDecoder(size, widths, d_s + d_i * n_t)

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(μ_s, log σ_s², μ_t, log σ_t²)."""
        mu_s, lv_s = self.enc_s(x).chunk(2, dim=-1)
        mu_t, lv_t = self.enc_t(x).chunk(2, dim=-1)
        return mu_s, lv_s, mu_t, lv_t

    def codes(self, x: Tensor) -> Tensor:
        """The mean code [μ_s; μ_t] (what the metrics read)."""
        mu_s, _, mu_t, _ = self.posterior(x)
        return torch.cat([mu_s, mu_t], dim=-1)


def xfactors_loss(
    model: XFactors,
    x: Tensor,
    y_t: Tensor,
    *,
    tau: float,
    w_kl: float,
    beta_s: float,
    beta_t: float,
    nce_weight: float,
) -> dict[str, Tensor]:
    """§3's loss on a batch: ``y_t`` (N, n_T) the labels of the T-factors; λ_i = nce_weight/n_T.
    Returns the total and its terms (``loss``, ``mse``, ``kl_s``, ``kl_t``, ``nce``)."""
    mu_s, lv_s, mu_t, lv_t = model.posterior(x)
    z_s, z_t = reparameterise(mu_s, lv_s), reparameterise(mu_t, lv_t)
    x_hat = torch.sigmoid(model.dec(torch.cat([z_s, z_t], dim=-1)))
    mse = F.mse_loss(x_hat, x)
    kl_s, kl_t = gaussian_kl(mu_s, lv_s), gaussian_kl(mu_t, lv_t)
    d = model.d_i
    nce = (
        sum(sup_nce(z_t[:, i * d : (i + 1) * d], y_t[:, i], tau) for i in range(model.n_t))
        / model.n_t
    )
    loss = mse + w_kl * (beta_s * kl_s + beta_t * kl_t) + nce_weight * nce
    return {"loss": loss, "mse": mse, "kl_s": kl_s, "kl_t": kl_t, "nce": nce}


class BetaVAE(nn.Module):
    """β-VAE (Higgins et al. 2017) with the same encoder and decoder (one latent of ``latent``)."""

    def __init__(self, size: int, widths: Sequence[int], latent: int) -> None:
        super().__init__()
        self.enc = ConvEncoder(size, widths, 2 * latent)
        self.dec = ConvDecoder(size, widths, latent)

    def codes(self, x: Tensor) -> Tensor:
        """μ."""
        return self.enc(x).chunk(2, dim=-1)[0]


def beta_vae_loss(model: BetaVAE, x: Tensor, beta: float) -> Tensor:
    """Bernoulli negative log-likelihood (summed over pixels) + β·KL, averaged over the batch."""
    mu, lv = model.enc(x).chunk(2, dim=-1)
    logits = model.dec(reparameterise(mu, lv))
    nll = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
    return nll + beta * gaussian_kl(mu, lv)


class SupervisedHeads(nn.Module):
    """An encoder to n_T blocks of d_i dims, block i feeding a linear classifier of factor i."""

    def __init__(self, size: int, widths: Sequence[int], d_i: int, classes: Sequence[int]) -> None:
        super().__init__()
        self.d_i = d_i
        self.enc = ConvEncoder(size, widths, d_i * len(classes))
        self.heads = nn.ModuleList([nn.Linear(d_i, c) for c in classes])

    def codes(self, x: Tensor) -> Tensor:
        """The blocks, concatenated."""
        return self.enc(x)

    def logits(self, x: Tensor) -> list[Tensor]:
        """Per factor, its classifier's logits."""
        z, d = self.enc(x), self.d_i
        return [h(z[:, i * d : (i + 1) * d]) for i, h in enumerate(self.heads)]


class FactorProbe(nn.Module):
    """A CNN reading every factor of an image (one linear head per factor)."""

    def __init__(self, size: int, widths: Sequence[int], classes: Sequence[int]) -> None:
        super().__init__()
        self.enc = ConvEncoder(size, widths, 128)
        self.heads = nn.ModuleList([nn.Linear(128, c) for c in classes])

    def logits(self, x: Tensor) -> list[Tensor]:
        """Per factor, logits."""
        h = F.relu(self.enc(x))
        return [head(h) for head in self.heads]


def classification_loss(logits: list[Tensor], y: Tensor) -> Tensor:
    """Σ over factors of the cross-entropy."""
    return sum(F.cross_entropy(lg, y[:, i]) for i, lg in enumerate(logits))  # type: ignore[return-value]


def swap_blocks(code_a: Tensor, code_b: Tensor, start: int, width: int) -> Tensor:
    """A's codes with dims [start, start + width) taken from B's (row by row)."""
    out = code_a.clone()
    out[:, start : start + width] = code_b[:, start : start + width]
    return out
