"""Streaming float64 moments and PCA with an explained-variance rank rule.

:class:`StreamingMoments` accumulates ``(count, mean, M2)`` in float64 with the pairwise update of
Chan, Golub & LeVeque, "Updating formulae and a pairwise algorithm for computing sample
variances", COMPSTAT 1982 (each incoming batch is itself centred two-pass, then merged), so the
covariance of arbitrarily many batches is as accurate as a one-shot two-pass computation.

:func:`explained_variance_rank` is the rank rule of SubspaceAD: Lendering et al., "SubspaceAD",
CVPR 2026, arXiv:2602.23013 — the smallest ``k`` whose leading eigenvalues explain at least a
fraction ``threshold`` of the total variance.
"""

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "PCAResult",
    "StreamingMoments",
    "explained_variance_rank",
    "fit_pca",
    "pca_from_moments",
]


class StreamingMoments:
    """Running count, mean and centred second moment ``M2 = Σ (x − μ)(x − μ)ᵀ`` in float64.

    The dimension ``d`` and device are fixed by the first non-empty batch (or by ``d`` and
    ``device`` given to the constructor). All statistics are stored in float64 regardless of the
    input dtype.
    """

    def __init__(self, d: int | None = None, device: torch.device | str | None = None) -> None:
        """Create empty moments, optionally fixing the dimension ``d`` and device up front."""
        if d is not None and d < 1:
            raise ValueError(f"d must be positive, got {d}")
        self._d = d
        self._device = torch.device(device) if device is not None else None
        self._count = 0
        self._mean: Tensor | None = None
        self._m2: Tensor | None = None

    @property
    def d(self) -> int | None:
        """Feature dimension, or ``None`` before the first batch."""
        return self._d

    @property
    def count(self) -> int:
        """Number of rows seen."""
        return self._count

    @property
    def mean(self) -> Tensor:
        """Running mean, float64 tensor of shape ``(d,)``."""
        if self._mean is None:
            raise ValueError("no data seen yet: the mean is undefined")
        return self._mean

    @property
    def m2(self) -> Tensor:
        """Centred scatter matrix ``Σ (x − μ)(x − μ)ᵀ``, float64 tensor of shape ``(d, d)``."""
        if self._m2 is None:
            raise ValueError("no data seen yet: M2 is undefined")
        return self._m2

    def covariance(self, ddof: int = 1) -> Tensor:
        """Covariance ``M2 / (count − ddof)``, float64 tensor of shape ``(d, d)``.

        Args:
            ddof: Delta degrees of freedom (1 gives the unbiased sample covariance).
        """
        if ddof < 0:
            raise ValueError(f"ddof must be non-negative, got {ddof}")
        if self._count - ddof <= 0:
            raise ValueError(
                f"covariance with ddof={ddof} needs more than {ddof} rows, got {self._count}"
            )
        return self.m2 / (self._count - ddof)

    def _merge_stats(self, count: int, mean: Tensor, m2: Tensor) -> None:
        if count == 0:
            return
        if self._count == 0 or self._mean is None or self._m2 is None:
            self._count, self._mean, self._m2 = count, mean.clone(), m2.clone()
            return
        total = self._count + count
        delta = mean - self._mean
        self._mean = self._mean + delta * (count / total)
        self._m2 = self._m2 + m2 + torch.outer(delta, delta) * (self._count * count / total)
        self._count = total

    def _check_dim(self, d: int, device: torch.device) -> None:
        if self._d is None:
            self._d = d
        elif d != self._d:
            raise ValueError(f"expected {self._d} features, got {d}")
        if self._device is None:
            self._device = device

    def update(self, batch: Tensor) -> "StreamingMoments":
        """Add a batch of rows.

        Args:
            batch: Tensor of shape ``(n, d)``; ``n = 0`` is a no-op. Converted to float64.

        Returns:
            ``self``, for chaining.
        """
        if not isinstance(batch, Tensor) or batch.ndim != 2:
            shape = tuple(batch.shape) if isinstance(batch, Tensor) else type(batch).__name__
            raise ValueError(f"batch must be a tensor of shape (n, d), got {shape}")
        if batch.is_complex():
            raise ValueError("complex batches are not supported")
        self._check_dim(batch.shape[1], batch.device)
        n = batch.shape[0]
        if n == 0:
            return self
        x = batch.detach().to(device=self._device, dtype=torch.float64)
        mean = x.mean(dim=0)
        xc = x - mean
        self._merge_stats(n, mean, xc.transpose(0, 1) @ xc)
        return self

    def merge(self, other: "StreamingMoments") -> "StreamingMoments":
        """Merge another accumulator into this one in place (Chan et al.).

        Args:
            other: Moments over a disjoint set of rows with the same ``d``.

        Returns:
            ``self``, for chaining.
        """
        if not isinstance(other, StreamingMoments):
            raise TypeError(f"can only merge StreamingMoments, got {type(other).__name__}")
        if other.count == 0:
            return self
        self._check_dim(other.mean.shape[0], other.mean.device)
        self._merge_stats(other.count, other.mean.to(self._device), other.m2.to(self._device))
        return self


def explained_variance_rank(eigvals: Tensor, threshold: float) -> int:
    """Smallest ``k`` whose top-``k`` eigenvalues explain ``>= threshold`` of the variance.

    ``k = searchsorted(cumEV, threshold) + 1`` clamped to ``[1, d]``, where ``cumEV`` is the
    cumulative explained-variance ratio of the eigenvalues sorted in descending order
    (negative eigenvalues, from round-off, are clamped to 0). E.g. eigenvalues ``[4, 3, 2, 1]``
    have ``cumEV = [0.4, 0.7, 0.9, 1.0]``, so ``threshold = 0.7 → k = 2`` and ``0.71 → 3``.
    All-zero eigenvalues give ``k = 1``.

    Args:
        eigvals: 1-D tensor of ``d`` eigenvalues (any order).
        threshold: Fraction in ``(0, 1]``.

    Returns:
        ``k`` as a Python int.
    """
    if not isinstance(eigvals, Tensor) or eigvals.ndim != 1 or eigvals.numel() == 0:
        raise ValueError("eigvals must be a non-empty 1-D tensor")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    ev = eigvals.detach().to(torch.float64).clamp_min(0.0).sort(descending=True).values
    d = ev.numel()
    cum = ev.cumsum(0)
    total = cum[-1]
    if total <= 0:
        return 1
    ratio = cum / total  # last entry is exactly 1.0
    query = torch.tensor([threshold], dtype=torch.float64, device=ratio.device)
    k = int(torch.searchsorted(ratio, query, right=False)[0]) + 1
    return min(max(k, 1), d)


@dataclass(frozen=True)
class PCAResult:
    """Principal components from :func:`pca_from_moments`.

    Attributes:
        mean: float64 tensor of shape ``(d,)``.
        components: float64 tensor of shape ``(d, k)``; orthonormal columns sorted by descending
            eigenvalue, each signed so that its largest-magnitude entry is positive.
        eigenvalues: float64 tensor of shape ``(d,)``; *all* covariance eigenvalues, descending,
            clamped to ``>= 0``.
        k: Number of retained components.
    """

    mean: Tensor
    components: Tensor
    eigenvalues: Tensor
    k: int

    @property
    def explained_variance_ratio(self) -> Tensor:
        """Eigenvalues divided by their sum, shape ``(d,)`` (zeros if the total is zero)."""
        total = self.eigenvalues.sum()
        if total <= 0:
            return torch.zeros_like(self.eigenvalues)
        return self.eigenvalues / total


def pca_from_moments(
    moments: StreamingMoments, threshold: float | None = None, k: int | None = None
) -> PCAResult:
    """PCA of the sample covariance (``ddof = 1``) held by ``moments``.

    Uses ``torch.linalg.eigh`` in float64. Give at most one of ``threshold`` (rank by
    :func:`explained_variance_rank`) and ``k``; with neither, all ``d`` components are kept.

    Args:
        moments: Accumulated moments with at least two rows.
        threshold: Explained-variance fraction in ``(0, 1]``.
        k: Number of components, ``1 <= k <= d``.

    Returns:
        A :class:`PCAResult`.
    """
    if threshold is not None and k is not None:
        raise ValueError("give at most one of threshold and k")
    cov = moments.covariance(ddof=1)
    d = cov.shape[0]
    evals, evecs = torch.linalg.eigh(cov)
    evals = evals.flip(0).clamp_min(0.0)
    evecs = evecs.flip(1)
    if threshold is not None:
        k = explained_variance_rank(evals, threshold)
    elif k is None:
        k = d
    elif not 1 <= k <= d:
        raise ValueError(f"k must be in [1, {d}], got {k}")
    comps = evecs[:, :k]
    # Deterministic sign: largest-magnitude entry of each component positive.
    idx = comps.abs().argmax(dim=0)
    signs = torch.sign(comps[idx, torch.arange(k, device=comps.device)])
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)
    comps = comps * signs
    return PCAResult(mean=moments.mean.clone(), components=comps, eigenvalues=evals, k=k)


def fit_pca(
    x: Tensor,
    threshold: float | None = None,
    k: int | None = None,
    batch_size: int = 8192,
) -> PCAResult:
    """Convenience: stream ``x`` through :class:`StreamingMoments` and run :func:`pca_from_moments`.

    Args:
        x: Data of shape ``(n, d)``, ``n >= 2``.
        threshold: Explained-variance fraction in ``(0, 1]`` (exclusive with ``k``).
        k: Number of components (exclusive with ``threshold``).
        batch_size: Rows per streamed batch (bounds the float64 working memory).

    Returns:
        A :class:`PCAResult`.
    """
    if not isinstance(x, Tensor) or x.ndim != 2:
        raise ValueError("x must be a tensor of shape (n, d)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    moments = StreamingMoments()
    for start in range(0, x.shape[0], batch_size):
        moments.update(x[start : start + batch_size])
    return pca_from_moments(moments, threshold=threshold, k=k)
