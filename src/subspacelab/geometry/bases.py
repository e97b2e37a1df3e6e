"""Orthonormal bases, projections, principal angles and effective rank.

Conventions
-----------
A *basis* is a matrix ``S`` of shape ``(d, k)`` (``k <= d``) whose **columns** span a
``k``-dimensional subspace of ``R^d``. Data points are **rows**: ``x`` has shape ``(..., d)``.
Most routines accept extra leading batch dimensions on bases, ``(..., d, k)``.

Principal angles follow Björck & Golub, "Numerical methods for computing angles between linear
subspaces", Math. Comp. 27 (1973), with the small-angle sine refinement of Knyazev & Argentati,
"Principal angles between subspaces in an A-based scalar product", SIAM J. Sci. Comput. 23
(2002). The effective rank is that of Roy & Vetterli, "The effective rank: a measure of effective
dimensionality", EUSIPCO 2007.
"""

import torch
from torch import Tensor

__all__ = [
    "effective_rank",
    "grassmann_distance",
    "is_orthonormal",
    "orthonormality_error",
    "orthonormalize",
    "principal_angles",
    "project",
    "projection_residual",
]


def _check_floating(name: str, t: Tensor) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a real floating-point tensor, got dtype {t.dtype}")


def _check_basis(name: str, s: Tensor) -> None:
    _check_floating(name, s)
    if s.ndim < 2:
        raise ValueError(f"{name} must have shape (..., d, k), got shape {tuple(s.shape)}")
    d, k = s.shape[-2], s.shape[-1]
    if k > d:
        raise ValueError(
            f"{name} must have at most as many columns as rows (k <= d), got shape {tuple(s.shape)}"
        )


def orthonormalize(a: Tensor) -> Tensor:
    """Orthonormal basis of the column span of ``a`` via reduced QR with a deterministic sign.

    The sign of each column of ``Q`` is chosen so that ``diag(R) >= 0``; with that convention
    the factorisation ``a = Q R`` is unique for full-column-rank ``a`` and a matrix that is
    already orthonormal is returned (up to rounding) unchanged rather than with flipped columns.

    Args:
        a: Tensor of shape ``(..., d, k)`` with ``k <= d``. Computed in ``a``'s dtype.

    Returns:
        ``Q`` of shape ``(..., d, k)`` with orthonormal columns and ``span(Q) = span(a)`` when
        ``a`` has full column rank.
    """
    _check_basis("a", a)
    q, r = torch.linalg.qr(a, mode="reduced")
    diag = torch.diagonal(r, dim1=-2, dim2=-1)
    sign = torch.where(diag < 0, -1.0, 1.0).to(q.dtype)
    return q * sign.unsqueeze(-2)


def orthonormality_error(s: Tensor) -> Tensor:
    """Frobenius norm ``||SᵀS − I||_F``, computed in float64.

    Args:
        s: Tensor of shape ``(..., d, k)``.

    Returns:
        float64 tensor of shape ``(...)`` (a 0-dim tensor for a single basis).
    """
    _check_basis("s", s)
    s64 = s.to(torch.float64)
    gram = s64.transpose(-2, -1) @ s64
    eye = torch.eye(s.shape[-1], dtype=torch.float64, device=s.device)
    return torch.linalg.matrix_norm(gram - eye, ord="fro")


def is_orthonormal(s: Tensor, atol: float = 1e-6) -> bool:
    """Whether every basis in ``s`` satisfies ``||SᵀS − I||_F <= atol``.

    Args:
        s: Tensor of shape ``(..., d, k)``.
        atol: Absolute tolerance on the Frobenius orthonormality error.
    """
    if atol < 0:
        raise ValueError(f"atol must be non-negative, got {atol}")
    return bool((orthonormality_error(s) <= atol).all())


def _check_rows_against_basis(x: Tensor, basis: Tensor) -> None:
    _check_floating("x", x)
    _check_basis("basis", basis)
    if basis.ndim != 2:
        raise ValueError(f"basis must have shape (d, k), got shape {tuple(basis.shape)}")
    if x.ndim < 1 or x.shape[-1] != basis.shape[0]:
        raise ValueError(
            f"x must have shape (..., d) with d = basis.shape[0] = {basis.shape[0]}, "
            f"got x shape {tuple(x.shape)}"
        )


def project(x: Tensor, basis: Tensor) -> Tensor:
    """Coordinates of the rows of ``x`` in an orthonormal ``basis``: ``x @ S``.

    Args:
        x: Tensor of shape ``(..., d)`` (rows are points).
        basis: Orthonormal basis of shape ``(d, k)``.

    Returns:
        Tensor of shape ``(..., k)``.
    """
    _check_rows_against_basis(x, basis)
    return x @ basis


def projection_residual(
    x: Tensor, basis: Tensor, mean: Tensor | None = None, squared: bool = True
) -> Tensor:
    """Per-row distance to the affine subspace ``mean + span(S)``.

    Computes ``r = (x − μ) − (x − μ) S Sᵀ`` explicitly and returns ``||r||²`` (or ``||r||``).
    The explicit residual is used instead of ``||x − μ||² − ||Sᵀ(x − μ)||²``, which suffers
    catastrophic cancellation when points lie close to the subspace.

    Args:
        x: Tensor of shape ``(..., d)``.
        basis: Orthonormal basis of shape ``(d, k)``.
        mean: Optional offset ``μ`` of shape ``(d,)``; zero when ``None``.
        squared: Return the squared norm (default) or the norm.

    Returns:
        Tensor of shape ``(...)``.
    """
    _check_rows_against_basis(x, basis)
    if mean is not None:
        if mean.shape != (basis.shape[0],):
            raise ValueError(
                f"mean must have shape ({basis.shape[0]},), got shape {tuple(mean.shape)}"
            )
        x = x - mean
    residual = x - (x @ basis) @ basis.transpose(0, 1)
    sq = residual.square().sum(dim=-1)
    return sq if squared else sq.sqrt()


def principal_angles(a: Tensor, b: Tensor) -> Tensor:
    """Principal angles (radians, ascending) between ``span(a)`` and ``span(b)``.

    The columns of ``a`` and ``b`` need not be orthonormal: both are orthonormalised by QR
    first. Cosines are the singular values of ``QaᵀQb`` clamped to ``[-1, 1]`` (Björck–Golub).
    Because ``arccos`` loses half the digits for small angles (``θ ≈ sqrt(2(1 − cos θ))``),
    angles below ``π/4`` are instead taken from the sines, the singular values of
    ``Qb − Qa QaᵀQb`` (Knyazev–Argentati), exactly as ``scipy.linalg.subspace_angles`` does.
    Everything is computed in float64 and cast back to the promoted input dtype.

    Args:
        a: Tensor of shape ``(..., n, p)``, ``p <= n``.
        b: Tensor of shape ``(..., n, q)``, ``q <= n``; batch dims broadcast with ``a``'s.

    Returns:
        Tensor of shape ``(..., min(p, q))`` with angles in ``[0, π/2]``, ascending.
    """
    _check_basis("a", a)
    _check_basis("b", b)
    if a.shape[-2] != b.shape[-2]:
        raise ValueError(
            "a and b must live in the same ambient space (same number of rows), got shapes "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )
    out_dtype = torch.promote_types(a.dtype, b.dtype)
    qa = orthonormalize(a.to(torch.float64))
    qb = orthonormalize(b.to(torch.float64))
    # Make qa the wider basis so that the sine matrix below has min(p, q) meaningful columns.
    if qa.shape[-1] < qb.shape[-1]:
        qa, qb = qb, qa
    cross = qa.transpose(-2, -1) @ qb  # (..., p, q), p >= q
    cos = torch.linalg.svdvals(cross).clamp(-1.0, 1.0)  # descending -> angles ascending
    sine_mat = qb - qa @ cross
    sin = torch.linalg.svdvals(sine_mat).clamp(-1.0, 1.0).flip(-1)  # ascending
    small = sin.square() < 0.5  # angle < pi/4
    angles = torch.where(small, torch.arcsin(sin), torch.arccos(cos))
    return angles.to(out_dtype)


def grassmann_distance(a: Tensor, b: Tensor) -> Tensor:
    """Geodesic (arc-length) Grassmann distance ``||θ||₂`` between ``span(a)`` and ``span(b)``.

    Args:
        a: Tensor of shape ``(..., n, p)``.
        b: Tensor of shape ``(..., n, q)``.

    Returns:
        Tensor of shape ``(...)``: the 2-norm of :func:`principal_angles`.
    """
    return torch.linalg.vector_norm(principal_angles(a, b), ord=2, dim=-1)


def effective_rank(x_or_singular_values: Tensor) -> float:
    """Entropy effective rank of Roy & Vetterli (2007): ``exp(H(p))`` with ``p = σ / Σσ``.

    ``H(p) = −Σ p_i log p_i`` with ``0 log 0 = 0``. The result lies in ``[1, min(n, d)]`` for a
    non-zero matrix; a zero matrix (all ``σ = 0``) returns ``0.0`` by convention.

    Args:
        x_or_singular_values: Either a matrix of shape ``(n, d)`` (its singular values are
            computed in float64) or a 1-D tensor of non-negative singular values.

    Returns:
        The effective rank as a Python float.
    """
    t = x_or_singular_values
    _check_floating("x_or_singular_values", t)
    if t.ndim == 2:
        sigma = torch.linalg.svdvals(t.to(torch.float64))
    elif t.ndim == 1:
        sigma = t.to(torch.float64)
        if bool((sigma < 0).any()):
            raise ValueError("singular values must be non-negative")
    else:
        raise ValueError(
            "expected a matrix of shape (n, d) or a 1-D tensor of singular values, "
            f"got shape {tuple(t.shape)}"
        )
    if not bool(torch.isfinite(sigma).all()):
        raise ValueError("singular values must be finite")
    total = sigma.sum()
    if total == 0:
        return 0.0
    p = sigma / total
    entropy = -torch.special.xlogy(p, p).sum()
    return float(torch.exp(entropy))
