"""geo_sae maths (Nagar et al., Adv. Space Res. 2024; arXiv 2404.02180): a procedural
multispectral "geology" scene, the PCA / autoencoder / stacked-autoencoder encoders, k-means
with a majority filter. Small plain-torch training loops (thousands of tiny steps: a Lightning
Trainer's per-step overhead would dominate the miniature's budget)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import uniform_filter
from scipy.spatial import cKDTree
from torch import Tensor, nn

from subspacelab.geometry import fit_pca

ABSORPTIONS_UM = (0.9, 1.4, 1.9, 2.2, 2.33)  # iron, OH, water, Al-OH clay, carbonate


@dataclass(frozen=True)
class Scene:
    """Bands (H×W×B in [0, 1]) and the ground-truth unit raster (H×W)."""

    bands: np.ndarray
    units: np.ndarray


def _signatures(rng: np.random.Generator, n: int, wl: np.ndarray) -> np.ndarray:
    """Smooth continuum + Gaussian absorption features, one reflectance spectrum per row."""
    out = []
    x = (wl - wl.mean()) / np.ptp(wl)
    for _ in range(n):
        spec = 0.35 + rng.uniform(-0.15, 0.15) * x + rng.uniform(-0.2, 0.2) * x**2
        spec = spec + rng.uniform(0.0, 0.15)
        for center in rng.choice(ABSORPTIONS_UM, size=2, replace=False):
            spec = spec - rng.uniform(0.05, 0.2) * np.exp(-((wl - center) ** 2) / (2 * 0.08**2))
        out.append(np.clip(spec, 0.03, 0.95))
    return np.array(out)


def _km(r: np.ndarray) -> np.ndarray:
    return (1.0 - r) ** 2 / (2.0 * r)


def _km_inverse(f: np.ndarray) -> np.ndarray:
    return 1.0 + f - np.sqrt(f**2 + 2.0 * f)


def make_scene(
    size: int, n_units: int, n_bands: int, mixing: str, noise: float, seed: int
) -> Scene:
    """Procedural scene: Voronoi units with folded sinusoidal layering; each pixel mixes its
    unit with the nearest other unit (weight falling off from the boundary), vegetation and
    regolith. ``mixing="nonlinear"``: intimate (Kubelka–Munk space) mixing plus a bilinear
    term; ``"linear"``: abundance-weighted sum. Then multiplicative topographic shading and
    Gaussian sensor noise."""
    if mixing not in ("linear", "nonlinear"):
        raise ValueError(f"mixing must be 'linear' or 'nonlinear', got {mixing!r}")
    rng = np.random.default_rng(seed)
    wl = np.linspace(0.45, 2.35, n_bands)
    yy, xx = np.mgrid[0:size, 0:size] / size
    fold = 0.06 * np.sin(2 * np.pi * (3 * xx + rng.uniform())) + 0.03 * np.sin(
        2 * np.pi * (7 * yy + rng.uniform())
    )
    pts = np.stack([xx.ravel(), (yy + fold).ravel()], axis=1)
    centers = rng.uniform(0, 1, size=(n_units * 3, 2))
    cell_unit = np.concatenate([np.arange(n_units), rng.integers(0, n_units, 2 * n_units)])
    dist, idx = cKDTree(centers).query(pts, k=centers.shape[0])
    units = cell_unit[idx[:, 0]]
    # nearest cell of another unit, and how close the pixel is to that boundary
    other = np.argmax(cell_unit[idx] != units[:, None], axis=1)
    rows = np.arange(units.size)
    neighbour = cell_unit[idx[rows, other]]
    gap = dist[rows, other] - dist[:, 0]
    w_nb = 0.45 * np.exp(-gap / 0.03)
    layering = 0.5 + 0.5 * np.sin(2 * np.pi * 12 * (yy + 2 * fold).ravel())
    sig = _signatures(rng, n_units, wl)
    veg = np.clip(0.05 + 0.4 / (1 + np.exp(-(wl - 0.72) / 0.02)) - 0.1 * (wl > 1.5), 0.03, 0.6)
    regolith = np.clip(0.25 + 0.1 * (wl - 0.45), 0.03, 0.9)
    a_veg = rng.beta(1.2, 8.0, units.size) * (0.5 + 0.5 * layering)
    a_reg = rng.beta(1.5, 6.0, units.size)
    a_unit = np.maximum(1.0 - w_nb - a_veg - a_reg, 0.05)
    total = a_unit + w_nb + a_veg + a_reg
    ab = np.stack([a_unit, w_nb, a_veg, a_reg], axis=1) / total[:, None]
    ends = np.stack(
        [
            sig[units],
            sig[neighbour],
            np.broadcast_to(veg, sig[units].shape),
            np.broadcast_to(regolith, sig[units].shape),
        ],
        axis=1,
    )  # n×4×B
    if mixing == "linear":
        refl = np.einsum("ne,neb->nb", ab, ends)
    else:
        refl = _km_inverse(np.einsum("ne,neb->nb", ab, _km(ends)))
        refl = refl + 0.5 * ab[:, 0:1] * ab[:, 2:3] * ends[:, 0] * ends[:, 2]
    terrain = sum(
        rng.uniform(0.02, 0.06)
        * np.sin(2 * np.pi * (f * xx + rng.uniform()))
        * np.cos(2 * np.pi * (f * yy + rng.uniform()))
        for f in (1, 2, 4)
    )
    slope_y, slope_x = np.gradient(terrain.reshape(size, size) * size)
    shade = np.clip(
        0.85 + 0.15 * (slope_x - slope_y) / np.sqrt(2 + slope_x**2 + slope_y**2), 0.5, 1
    )
    refl = refl * shade.ravel()[:, None] + noise * rng.standard_normal(refl.shape)
    return Scene(
        refl.reshape(size, size, n_bands).astype(np.float32),
        units.reshape(size, size).astype(np.int64),
    )


def minmax(x: np.ndarray) -> np.ndarray:
    """Per-band min-max scaling of pixels (rows) to [0, 1]."""
    lo, hi = x.min(axis=0, keepdims=True), x.max(axis=0, keepdims=True)
    return ((x - lo) / np.maximum(hi - lo, 1e-12)).astype(np.float32)


def pca_codes(x: np.ndarray, variance: float) -> np.ndarray:
    """Project on the principal components explaining ≥ ``variance`` of the variance."""
    t = torch.from_numpy(x).double()
    res = fit_pca(t, threshold=variance)
    return ((t - res.mean) @ res.components).numpy()


class AutoEncoder(nn.Module):
    """Dense SELU autoencoder with a sigmoid output; ``code_layer`` picks the encoder layer
    whose activations are the features (the last one by default)."""

    def __init__(self, widths: list[int], code_layer: int = -1) -> None:
        super().__init__()
        enc: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            enc.append(nn.Sequential(nn.Linear(a, b), nn.SELU()))
        dec: list[nn.Module] = []
        rev = widths[::-1]
        for i, (a, b) in enumerate(itertools.pairwise(rev)):
            last = i == len(rev) - 2
            dec += [nn.Linear(a, b), nn.Sigmoid() if last else nn.SELU()]
        self.encoder = nn.ModuleList(enc)
        self.decoder = nn.Sequential(*dec)
        self.code_layer = code_layer % len(enc)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(reconstruction, bottleneck code, features of ``code_layer``)."""
        acts = []
        h = x
        for layer in self.encoder:
            h = layer(h)
            acts.append(h)
        return self.decoder(h), h, acts[self.code_layer]


def train_autoencoder(
    x: np.ndarray,
    widths: list[int],
    epochs: int,
    batch: int,
    lr: float,
    l1: float,
    seed: int,
    code_layer: int = -1,
    max_train: int | None = None,
) -> tuple[AutoEncoder, list[float]]:
    """Adam on MSE + ``l1``·mean|code| (the activity regulariser), shuffled mini-batches;
    trained on at most ``max_train`` pixels drawn at random. Returns the model and the loss
    per epoch."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = AutoEncoder(widths, code_layer)
    data = torch.from_numpy(x)
    if max_train is not None and data.shape[0] > max_train:
        data = data[torch.randperm(data.shape[0], generator=gen)[:max_train]]
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for _ in range(epochs):
        total = 0.0
        for idx in torch.randperm(data.shape[0], generator=gen).split(batch):
            xb = data[idx]
            recon, code, _ = model(xb)
            loss = torch.mean((recon - xb) ** 2) + l1 * code.abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        history.append(total / data.shape[0])
    return model, history


@torch.no_grad()
def encode(model: AutoEncoder, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(reconstruction, features of the code layer) for all rows of ``x``."""
    recon, _, feats = model(torch.from_numpy(x))
    return recon.numpy(), feats.numpy()


def mode_filter(labels: np.ndarray, size: int, k: int) -> np.ndarray:
    """Majority filter: each pixel takes the most frequent label in its size×size window."""
    counts = np.stack(
        [uniform_filter((labels == c).astype(np.float64), size, mode="nearest") for c in range(k)]
    )
    return counts.argmax(axis=0)
