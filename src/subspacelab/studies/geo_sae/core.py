"""geo_sae maths (Nagar et al., Adv. Space Res. 2024; arXiv 2404.02180): a procedural
multispectral "geology" scene, the PCA / autoencoder / stacked-autoencoder encoders, k-means
with a majority filter. The autoencoders of every scene and seed are tiny and independent, so
each stage of the stack trains all of them in one Lightning run as one stacked model (batched
matmuls; ``fit`` of :mod:`subspacelab.api`, imported where it trains)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy.ndimage import uniform_filter
from scipy.spatial import cKDTree
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from subspacelab.geometry import fit_pca

if TYPE_CHECKING:
    from subspacelab.api import Batch, TrainEnv

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


def pca_codes(x: np.ndarray, dim: int) -> tuple[np.ndarray, float, int]:
    """The projection on the top ``dim`` principal components, the fraction of the variance they
    explain, and how many components the spec's 90 %-of-variance rule would have kept."""
    t = torch.from_numpy(x).double()
    res = fit_pca(t, k=dim)
    ratios = res.explained_variance_ratio
    rule = int(torch.searchsorted(torch.cumsum(ratios, 0), torch.tensor(0.9, dtype=ratios.dtype)))
    return ((t - res.mean) @ res.components).numpy(), float(ratios[:dim].sum()), rule + 1


class StackedAutoEncoders(nn.Module):
    """``len(seeds)`` independent dense SELU autoencoders of the same ``widths`` (sigmoid
    output), evaluated together with batched matmuls: input and output are (models, rows,
    features). Model m is initialised exactly as ``nn.Linear`` layers built after
    ``torch.manual_seed(seeds[m])`` (encoder first, then decoder). ``code_layer`` picks the
    encoder layer whose activations are the features (the last one by default)."""

    def __init__(self, widths: list[int], seeds: list[int], code_layer: int = -1) -> None:
        super().__init__()
        if len(widths) < 2 or not seeds:
            raise ValueError("need at least two widths and one seed")
        shapes = [*itertools.pairwise(widths), *itertools.pairwise(widths[::-1])]
        per_model = []
        for seed in seeds:
            torch.manual_seed(seed)
            per_model.append([nn.Linear(a, b) for a, b in shapes])
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([m[i].weight.detach().T for m in per_model]))
            for i in range(len(shapes))
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.stack([m[i].bias.detach()[None] for m in per_model]))
            for i in range(len(shapes))
        )
        self.depth = len(widths) - 1
        self.code_layer = code_layer % self.depth

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(reconstruction, bottleneck code, features of ``code_layer``), each (models, rows, ·)."""
        h = x
        feats = h
        for i in range(self.depth):
            h = torch.selu(torch.baddbmm(self.biases[i], h, self.weights[i]))
            if i == self.code_layer:
                feats = h
        code = h
        for i in range(self.depth, 2 * self.depth):
            h = torch.baddbmm(self.biases[i], h, self.weights[i])
            h = torch.sigmoid(h) if i == 2 * self.depth - 1 else torch.selu(h)
        return h, code, feats


class _StepBatches(Dataset[tuple[Tensor]]):
    """Step i: every model's i-th mini-batch, stacked to (models, rows, features)."""

    def __init__(self, data: list[Tensor], order: list[list[Tensor]]) -> None:
        self.data, self.order = data, order

    def __len__(self) -> int:
        return len(self.order[0])

    def __getitem__(self, step: int) -> tuple[Tensor]:
        return (torch.stack([d[o[step]] for d, o in zip(self.data, self.order, strict=True)]),)


def train_autoencoders(
    env: TrainEnv,
    xs: list[np.ndarray],
    widths: list[int],
    epochs: int,
    batch: int,
    lr: float,
    l1: float,
    seeds: list[int],
    code_layer: int = -1,
    max_train: int | None = None,
) -> tuple[StackedAutoEncoders, list[list[float]]]:
    """One autoencoder per (data ``xs[m]``, ``seeds[m]``), all trained in one Lightning run:
    Adam on MSE + ``l1``·mean|code|, shuffled mini-batches (each model its own subset of at
    most ``max_train`` rows, all of them when it is None, and its own shuffles, drawn from a
    generator seeded with its seed).
    Adam is per parameter element, so this is the same as training each model alone. Returns
    the stacked models and each model's mean loss per epoch."""
    if len(xs) != len(seeds) or not xs:
        raise ValueError(f"need one seed per dataset, got {len(xs)} datasets, {len(seeds)} seeds")
    from subspacelab.api import LossModule, fit

    data, order = [], []
    for x, seed in zip(xs, seeds, strict=True):
        gen = torch.Generator().manual_seed(seed)
        d = torch.from_numpy(x)
        if max_train is not None and d.shape[0] > max_train:
            d = d[torch.randperm(d.shape[0], generator=gen)[:max_train]]
        data.append(d)
        order.append(
            [
                i
                for _ in range(epochs)
                for i in torch.randperm(d.shape[0], generator=gen).split(batch)
            ]
        )
    if len({d.shape for d in data}) != 1:
        raise ValueError(f"the models must train on equal shapes, got {[d.shape for d in data]}")
    model = StackedAutoEncoders(widths, seeds, code_layer)
    per_step: list[Tensor] = []

    def loss(net: nn.Module, batch: Batch) -> Tensor:
        xb = batch[0]
        recon, code, _ = net(xb)
        each = ((recon - xb) ** 2).mean(dim=(1, 2)) + l1 * code.abs().mean(dim=(1, 2))
        per_step.append(each.detach() * xb.shape[1])
        return each.sum()

    loader = DataLoader(_StepBatches(data, order), batch_size=None)
    fit(env, LossModule(model, loss, lr=lr), loader, epochs=1, label="autoencoders")
    n, steps = data[0].shape[0], len(order[0]) // epochs
    sums = torch.stack(per_step).reshape(epochs, steps, len(xs)).sum(dim=1) / n
    return model, sums.T.tolist()


@torch.no_grad()
def encode(model: StackedAutoEncoders, xs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(reconstructions, features of the code layer), each (models, rows, ·), of every model
    on its own rows ``xs[m]``."""
    recon, _, feats = model(torch.from_numpy(np.stack(xs)))
    return recon.numpy(), feats.numpy()


def mode_filter(labels: np.ndarray, size: int, k: int) -> np.ndarray:
    """Majority filter: each pixel takes the most frequent label in its size×size window."""
    counts = np.stack(
        [uniform_filter((labels == c).astype(np.float64), size, mode="nearest") for c in range(k)]
    )
    return counts.argmax(axis=0)
