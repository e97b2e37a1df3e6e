"""Random-subspace training for measuring intrinsic dimension.

Implements the reparametrisation ``θ_D = θ₀ + P θ_d`` of C. Li, H. Farkhoor, R. Liu and
J. Yosinski, "Measuring the Intrinsic Dimension of Objective Landscapes", ICLR 2018,
arXiv:1804.08838, with three random projections ``P : R^d → R^D``:

* :class:`DenseProjection` — i.i.d. Gaussian columns normalised to unit length.
* :class:`SparseProjection` — the very sparse random projection of P. Li, T. Hastie and
  K. Church, "Very Sparse Random Projections", KDD 2006 (entries ``±sqrt(s)`` with probability
  ``1/(2s)`` each, ``s = sqrt(D)`` by default), columns normalised to unit length.
* :class:`FastfoodProjection` — the Fastfood transform of Q. Le, T. Sarlós and A. Smola,
  "Fastfood — Approximating Kernel Expansions in Loglinear Time", ICML 2013, as used in the
  intrinsic-dimension reference code: ``P θ = (H G Π H B pad(θ))[:D] / (||G||₂ sqrt(D))``.

All randomness comes from an explicit ``torch.Generator`` (same seed and dtype → same projection)
and every random quantity is a registered buffer, so ``state_dict()`` fully determines ``P``.

The module also provides the toy problem of §2 of the paper (:func:`toy_objective`) and its
closed-form least-squares floor inside a random subspace (:func:`toy_min_loss`).
"""

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DenseProjection",
    "FastfoodProjection",
    "RandomProjection",
    "SparseProjection",
    "SubspaceModel",
    "fwht",
    "make_projection",
    "toy_min_loss",
    "toy_objective",
]

PROJECTION_KINDS: tuple[str, ...] = ("dense", "sparse", "fastfood")

TOY_DIM = 1000
TOY_BLOCKS = 10


def _is_power_of_two(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0


def fwht(x: Tensor) -> Tensor:
    """Unnormalised fast Walsh–Hadamard transform along the last dimension.

    Computes ``x @ H`` (``H`` symmetric, Sylvester/natural ordering as in
    ``scipy.linalg.hadamard``) with ``log2(L)`` butterfly stages, ``O(L log L)`` work.
    Differentiable; since ``H`` is symmetric the gradient is again a transform. Note
    ``H @ H = L · I``.

    Args:
        x: Tensor of shape ``(..., L)`` with ``L`` a power of two.

    Returns:
        Tensor of shape ``(..., L)``.
    """
    if x.ndim < 1:
        raise ValueError("x must have at least one dimension")
    n = x.shape[-1]
    if not _is_power_of_two(n):
        raise ValueError(f"the last dimension must be a power of two, got {n}")
    batch = x.shape[:-1]
    y = x
    h = 1
    while h < n:
        y = y.reshape(*batch, n // (2 * h), 2, h)
        a, b = y[..., 0, :], y[..., 1, :]
        y = torch.stack((a + b, a - b), dim=-2)
        h *= 2
    return y.reshape(*batch, n)


class RandomProjection(nn.Module):
    """Base class of linear maps ``R^d → R^D``, ``θ_d ↦ P θ_d``.

    Subclasses implement :meth:`forward` for inputs of shape ``(..., d)`` (a single ``θ_d`` of
    shape ``(d,)`` is the common case) returning ``(..., D)``.

    Attributes:
        D: Output (full parameter) dimension.
        d: Input (subspace) dimension.
    """

    def __init__(self, D: int, d: int) -> None:
        """Record and validate the dimensions."""
        super().__init__()
        if D < 1 or d < 1:
            raise ValueError(f"D and d must be positive, got D={D}, d={d}")
        self.D = int(D)
        self.d = int(d)

    def _check_input(self, theta_d: Tensor) -> None:
        if theta_d.ndim < 1 or theta_d.shape[-1] != self.d:
            raise ValueError(f"theta_d must have shape (..., {self.d}), got {tuple(theta_d.shape)}")

    def _reference(self) -> Tensor:
        return next(b for b in self.buffers() if b.is_floating_point())

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the projection's buffers (and of its output)."""
        return self._reference().dtype

    @property
    def device(self) -> torch.device:
        """Device of the projection's buffers."""
        return self._reference().device

    def forward(self, theta_d: Tensor) -> Tensor:
        """Map ``θ_d`` of shape ``(..., d)`` to ``P θ_d`` of shape ``(..., D)``."""
        raise NotImplementedError

    def as_matrix(self) -> Tensor:
        """The explicit ``(D, d)`` matrix ``P`` (built by applying the map to the identity)."""
        ref = self._reference()
        eye = torch.eye(self.d, dtype=ref.dtype, device=ref.device)
        with torch.no_grad():
            return self.forward(eye).transpose(0, 1).contiguous()

    def extra_repr(self) -> str:
        """Show the dimensions in ``repr``."""
        return f"D={self.D}, d={self.d}"


class DenseProjection(RandomProjection):
    """Dense Gaussian projection with unit-norm columns, stored as a ``(D, d)`` buffer."""

    def __init__(
        self,
        D: int,
        d: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        """Draw ``P ~ N(0, 1)^{D×d}`` from ``generator`` and normalise its columns."""
        super().__init__(D, d)
        device = generator.device if generator is not None else None
        mat = torch.randn(D, d, generator=generator, dtype=dtype, device=device)
        mat = mat / torch.linalg.vector_norm(mat, dim=0, keepdim=True)
        self.matrix: Tensor
        self.register_buffer("matrix", mat)

    def forward(self, theta_d: Tensor) -> Tensor:
        """Return ``P θ_d`` with shape ``(..., D)``."""
        self._check_input(theta_d)
        return theta_d @ self.matrix.transpose(0, 1)

    def as_matrix(self) -> Tensor:
        """The stored ``(D, d)`` matrix (a copy)."""
        return self.matrix.clone()


def _bernoulli_positions(total: int, p: float, generator: torch.Generator | None) -> Tensor:
    """Sorted positions of successes among ``total`` i.i.d. Bernoulli(p) trials, O(#successes).

    Uses geometric gaps (inverse-CDF sampling) so that memory and time scale with the number of
    non-zeros rather than with ``total``.
    """
    if p >= 1.0:
        return torch.arange(total, dtype=torch.int64)
    log1mp = math.log1p(-p)
    chunks: list[Tensor] = []
    last = -1
    while True:
        expected = (total - 1 - last) * p
        m = int(expected + 6.0 * math.sqrt(expected) + 16)
        u = torch.rand(m, generator=generator, dtype=torch.float64)
        gaps = torch.floor(torch.log1p(-u) / log1mp).clamp(max=float(total)) + 1
        pos = last + torch.cumsum(gaps.to(torch.int64), dim=0)
        inside = pos < total
        chunks.append(pos[inside])
        if not bool(inside.all()):
            break
        last = int(pos[-1])
    return torch.cat(chunks)


class SparseProjection(RandomProjection):
    """Very sparse random projection (Li, Hastie & Church, KDD 2006) with unit-norm columns.

    Each entry is ``±sqrt(s)`` with probability ``1/(2s)`` each and ``0`` otherwise, with
    ``density = 1/s`` defaulting to ``1/sqrt(D)``. Each of the ``d`` columns is then normalised
    to unit Euclidean norm over all ``D`` rows, i.e. its non-zeros become ``±1/sqrt(nnz_j)``. A
    column that comes out empty (only likely for tiny ``D``) is redrawn, so ``P`` is sampled
    conditionally on every column being non-zero.

    Stored in index form: buffers ``rows``, ``cols`` (int64) and ``values``; the product is a
    gather followed by ``index_add`` (no dense ``D × d`` matrix is ever formed).
    """

    def __init__(
        self,
        D: int,
        d: int,
        generator: torch.Generator | None = None,
        density: float | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        """Sample the sparsity pattern and signs from ``generator`` (on the CPU)."""
        super().__init__(D, d)
        if density is None:
            density = 1.0 / math.sqrt(D)
        if not 0.0 < density <= 1.0:
            raise ValueError(f"density must be in (0, 1], got {density}")
        if generator is not None and generator.device.type != "cpu":
            raise ValueError("SparseProjection samples on the CPU: pass a CPU generator")
        self.density = float(density)
        pos = _bernoulli_positions(D * d, self.density, generator)
        cols = torch.div(pos, D, rounding_mode="floor")
        rows = pos - cols * D
        counts = torch.bincount(cols, minlength=d)
        if bool((counts == 0).any()):
            keep_rows, keep_cols = [rows], [cols]
            for j in torch.nonzero(counts == 0).flatten().tolist():
                while True:
                    mask = torch.rand(D, generator=generator, dtype=torch.float64) < density
                    if bool(mask.any()):
                        break
                new_rows = torch.nonzero(mask).flatten()
                keep_rows.append(new_rows)
                keep_cols.append(torch.full_like(new_rows, j))
            rows, cols = torch.cat(keep_rows), torch.cat(keep_cols)
            order = torch.argsort(cols * D + rows)
            rows, cols = rows[order], cols[order]
            counts = torch.bincount(cols, minlength=d)
        signs = torch.randint(0, 2, (rows.numel(),), generator=generator).to(torch.float64) * 2 - 1
        values = signs / counts.to(torch.float64).sqrt()[cols]
        self.rows: Tensor
        self.cols: Tensor
        self.values: Tensor
        self.register_buffer("rows", rows)
        self.register_buffer("cols", cols)
        self.register_buffer("values", values.to(dtype))

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # The number of non-zeros is random, so resize the index buffers to the incoming ones
        # before the default (shape-checked) copy.
        for name in ("rows", "cols", "values"):
            incoming = state_dict.get(prefix + name)
            current = getattr(self, name)
            if isinstance(incoming, Tensor) and incoming.shape != current.shape:
                setattr(self, name, current.new_empty(incoming.shape))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def nnz(self) -> int:
        """Number of stored non-zeros."""
        return int(self.values.numel())

    def forward(self, theta_d: Tensor) -> Tensor:
        """Return ``P θ_d`` with shape ``(..., D)``."""
        self._check_input(theta_d)
        src = theta_d[..., self.cols] * self.values
        out = theta_d.new_zeros(*theta_d.shape[:-1], self.D, dtype=src.dtype)
        return out.index_add(-1, self.rows, src)


class FastfoodProjection(RandomProjection):
    """Fastfood projection ``P θ = (H G Π H B pad_L(θ))[:D] / (||G||₂ sqrt(D))``.

    ``L = 2^ceil(log2 D)``; ``θ`` is zero-padded to length ``L`` (so ``d <= L`` is required);
    ``B`` is a random ``±1`` diagonal, ``H`` the unnormalised Walsh–Hadamard transform
    (:func:`fwht`), ``Π`` a random permutation (applied as a gather ``v[perm]``) and ``G`` an
    ``N(0, 1)`` diagonal. This matches the intrinsic-dimension reference implementation, whose
    divisor ``sqrt(L ||G||²) · sqrt(D / L)`` equals ``||G||₂ sqrt(D)``; columns then have norm
    close to (not exactly) one. Cost ``O(L log L)`` time and ``O(L)`` memory.
    """

    def __init__(
        self,
        D: int,
        d: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        """Draw ``B``, then ``Π``, then ``G`` from ``generator``."""
        super().__init__(D, d)
        length = 1 << max(0, math.ceil(math.log2(D)))
        if length < D:  # guard against float round-off in log2
            length *= 2
        if d > length:
            raise ValueError(
                f"FastfoodProjection needs d <= L = 2^ceil(log2 D) = {length}, got d={d}"
            )
        self.L = length
        device = generator.device if generator is not None else None
        b = torch.randint(0, 2, (length,), generator=generator, device=device).to(dtype) * 2 - 1
        perm = torch.randperm(length, generator=generator, device=device)
        g = torch.randn(length, generator=generator, dtype=torch.float64, device=device)
        divisor = torch.linalg.vector_norm(g) * math.sqrt(D)
        self.B: Tensor
        self.perm: Tensor
        self.G: Tensor
        self.divisor: Tensor
        self.register_buffer("B", b)
        self.register_buffer("perm", perm)
        self.register_buffer("G", g.to(dtype))
        self.register_buffer("divisor", divisor.to(dtype))

    def forward(self, theta_d: Tensor) -> Tensor:
        """Return ``P θ_d`` with shape ``(..., D)``."""
        self._check_input(theta_d)
        v = F.pad(theta_d, (0, self.L - self.d)) * self.B
        v = fwht(v)
        v = v[..., self.perm] * self.G
        v = fwht(v)
        return v[..., : self.D] / self.divisor

    def extra_repr(self) -> str:
        """Show the dimensions in ``repr``."""
        return f"D={self.D}, d={self.d}, L={self.L}"


def make_projection(
    kind: str,
    D: int,
    d: int,
    seed: int,
    dtype: torch.dtype = torch.float32,
) -> RandomProjection:
    """Build a projection of the given ``kind`` from a fresh CPU generator seeded with ``seed``.

    Args:
        kind: One of ``"dense"``, ``"sparse"``, ``"fastfood"``.
        D: Full dimension.
        d: Subspace dimension.
        seed: Seed of the ``torch.Generator``.
        dtype: Floating dtype of the buffers.

    Returns:
        The projection module (on the CPU; move it with ``.to``).
    """
    generator = torch.Generator().manual_seed(seed)
    if kind == "dense":
        return DenseProjection(D, d, generator, dtype=dtype)
    if kind == "sparse":
        return SparseProjection(D, d, generator, dtype=dtype)
    if kind == "fastfood":
        return FastfoodProjection(D, d, generator, dtype=dtype)
    raise ValueError(
        f"unknown projection kind {kind!r}; allowed kinds: {', '.join(PROJECTION_KINDS)}"
    )


class SubspaceModel(nn.Module):
    """Train a module only inside the random affine subspace ``θ₀ + P θ_d``.

    The wrapped module is deep-copied; every parameter of the copy is turned into a buffer that
    holds the frozen initial value ``θ₀`` (so ``state_dict()`` carries ``θ₀`` under
    ``base.<name>``, next to the base's own buffers). The only trainable parameter is ``theta_d``
    (shape ``(d,)``, initialised to 0). :meth:`forward` evaluates the base with
    ``torch.func.functional_call`` on ``θ₀ + P θ_d``, where the ``D``-vector ``P θ_d`` is split
    over the parameters in ``named_parameters()`` order (tied parameters count once) and
    reshaped. Frozen (``requires_grad=False``) parameters of the base are included in ``D``.
    """

    def __init__(
        self,
        base: nn.Module,
        d: int | None = None,
        kind: str = "dense",
        seed: int = 0,
        projection: RandomProjection | None = None,
    ) -> None:
        """Wrap ``base``; give either ``d`` (with ``kind``/``seed``) or a ready ``projection``."""
        super().__init__()
        base = copy.deepcopy(base)
        unique = list(base.named_parameters())
        if not unique:
            raise ValueError("base module has no parameters")
        all_named = list(base.named_parameters(remove_duplicate=False))
        canonical = {id(p): name for name, p in unique}
        frozen = {id(p): p.detach() for _, p in unique}
        self._names: list[str] = [name for name, _ in unique]
        self._shapes: list[torch.Size] = [p.shape for _, p in unique]
        self._numels: list[int] = [p.numel() for _, p in unique]
        self._aliases: dict[str, str] = {
            name: canonical[id(p)] for name, p in all_named if canonical[id(p)] != name
        }
        total = sum(self._numels)
        for name, p in all_named:
            module_path, _, attr = name.rpartition(".")
            owner = base.get_submodule(module_path)
            del owner._parameters[attr]
            owner.register_buffer(attr, frozen[id(p)], persistent=name not in self._aliases)
        self.base = base

        dtype = unique[0][1].dtype
        if projection is None:
            if d is None:
                raise ValueError("give the subspace dimension d or a projection")
            projection = make_projection(kind, total, d, seed, dtype=dtype)
            projection = projection.to(unique[0][1].device)
        else:
            if total != projection.D:
                raise ValueError(
                    f"projection.D = {projection.D} does not match the base's {total} parameters"
                )
            if d is not None and d != projection.d:
                raise ValueError(f"d = {d} does not match projection.d = {projection.d}")
        self.projection = projection
        self.theta_d = nn.Parameter(
            torch.zeros(projection.d, dtype=projection.dtype, device=projection.device)
        )

    @property
    def D(self) -> int:
        """Number of (unique) parameters of the base module."""
        return self.projection.D

    @property
    def d(self) -> int:
        """Subspace dimension."""
        return self.projection.d

    def initial_parameters(self) -> dict[str, Tensor]:
        """The frozen ``θ₀`` per parameter name (the stored buffers, not copies)."""
        return {name: self.base.get_buffer(name) for name in self._names}

    def full_parameters(self) -> dict[str, Tensor]:
        """``θ₀ + P θ_d`` per parameter name (differentiable w.r.t. ``theta_d``)."""
        offset = self.projection(self.theta_d)
        chunks = torch.split(offset, self._numels)
        out: dict[str, Tensor] = {}
        for name, shape, chunk in zip(self._names, self._shapes, chunks, strict=True):
            theta0 = self.base.get_buffer(name)
            out[name] = theta0 + chunk.view(shape).to(theta0.dtype)
        return out

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Evaluate the base module at ``θ₀ + P θ_d``."""
        params = self.full_parameters()
        for alias, name in self._aliases.items():
            params[alias] = params[name]
        return torch.func.functional_call(self.base, params, args, kwargs)


def _toy_targets(dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.arange(1, TOY_BLOCKS + 1, dtype=dtype, device=device)


def toy_objective(theta: Tensor) -> Tensor:
    """Toy problem of Li et al. (2018), §2: 10 blocks of 100 coordinates summing to 1, …, 10.

    ``loss(θ) = Σ_{j=1}^{10} (Σ_{i in block j} θ_i − j)²``. The solution set is an affine
    subspace of codimension 10, so the intrinsic dimension is exactly 10.

    Args:
        theta: Tensor of shape ``(..., 1000)``.

    Returns:
        Tensor of shape ``(...)``.
    """
    if theta.ndim < 1 or theta.shape[-1] != TOY_DIM:
        raise ValueError(f"theta must have shape (..., {TOY_DIM}), got {tuple(theta.shape)}")
    sums = theta.unflatten(-1, (TOY_BLOCKS, TOY_DIM // TOY_BLOCKS)).sum(dim=-1)
    return (sums - _toy_targets(theta.dtype, theta.device)).square().sum(dim=-1)


def toy_min_loss(projection: RandomProjection, theta0: Tensor) -> float:
    """Closed-form minimum of :func:`toy_objective` over ``θ₀ + P θ_d`` (float64 least squares).

    With ``A`` the ``10 × 1000`` block-sum matrix, ``M = A P`` and ``r = targets − A θ₀`` the
    floor is ``||r − M M⁺ r||²``, computed from an SVD of ``M`` with the usual numerical-rank
    cut-off ``σ > max(σ) · max(M.shape) · eps``. It is (numerically) zero iff ``rank(M) = 10``,
    which for a random ``P`` happens with probability one exactly when ``d >= 10``.

    Args:
        projection: A projection with ``D = 1000``.
        theta0: Starting point of shape ``(1000,)``.

    Returns:
        The minimal loss as a Python float.
    """
    if projection.D != TOY_DIM:
        raise ValueError(f"projection.D must be {TOY_DIM}, got {projection.D}")
    if theta0.shape != (TOY_DIM,):
        raise ValueError(f"theta0 must have shape ({TOY_DIM},), got {tuple(theta0.shape)}")
    p = projection.as_matrix().to(torch.float64)
    m = p.view(TOY_BLOCKS, TOY_DIM // TOY_BLOCKS, projection.d).sum(dim=1)  # (10, d)
    theta0 = theta0.detach().to(device=p.device, dtype=torch.float64)
    sums = theta0.view(TOY_BLOCKS, -1).sum(dim=1)
    r = _toy_targets(torch.float64, p.device) - sums
    u, s, _ = torch.linalg.svd(m, full_matrices=False)
    tol = s.max() * max(m.shape) * torch.finfo(torch.float64).eps
    u_r = u[:, s > tol]
    residual = r - u_r @ (u_r.transpose(0, 1) @ r)
    return float(residual.square().sum())
