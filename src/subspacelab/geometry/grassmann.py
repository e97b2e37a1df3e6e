"""Grassmann class representation: subspace logits and Riemannian SGD on Grassmann manifolds.

Implements the building blocks of *Grassmann Class Representation* (GCR): H. Wang, Z. Li and
W. Zhang, "Get the Best of Both Worlds: Improving Accuracy and Transferability by Grassmann Class
Representation", ICCV 2023, arXiv:2308.01547. Each class ``i`` is a ``k``-dimensional subspace
``span(S_i)`` of the feature space ``R^d``; the logit of a feature ``x`` is
``γ ||S_iᵀ x̂||₂`` with ``x̂ = x / ||x||``. The class subspaces are trained by Riemannian SGD
with a geodesic update (Edelman, Arias & Smith, "The geometry of algorithms with orthogonality
constraints", SIAM J. Matrix Anal. Appl. 20 (1998), Theorem 2.3).

Layout
------
Class subspaces are stored like a ``torch.nn.Linear`` weight of shape ``(C·k, d)``: rows
``[i·k, (i+1)·k)`` hold ``S_iᵀ``. The geometric routines below work on the *batched* view
``(C, d, k)`` (columns of ``S_i`` orthonormal); :func:`weight_to_bases` and
:func:`bases_to_weight` convert between the two.

Precision
---------
:func:`geodesic_step` and :func:`reorthonormalize` always compute internally in float64 and cast
the result back to the input dtype. The matrices are tiny (``d × k`` per class), so the cost is
negligible, while float32 SVD/trigonometry would leave ``||SᵀS − I||`` drifting at the 1e-6 level
per step.
"""

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from subspacelab.geometry.bases import orthonormalize

__all__ = [
    "RiemannianSGD",
    "bases_to_weight",
    "geodesic_step",
    "horizontal_projection",
    "init_class_subspaces",
    "reorthonormalize",
    "subspace_logits",
    "weight_to_bases",
]

_GLOBAL_STATE_KEY = "riemannian_sgd"


def _check_bases(name: str, s: Tensor) -> None:
    if not isinstance(s, Tensor) or not s.is_floating_point():
        raise ValueError(f"{name} must be a real floating-point tensor")
    if s.ndim < 2:
        raise ValueError(f"{name} must have shape (..., d, k), got shape {tuple(s.shape)}")
    if s.shape[-1] > s.shape[-2]:
        raise ValueError(f"{name} must have k <= d in shape (..., d, k), got {tuple(s.shape)}")


def _check_same_shape(s: Tensor, g: Tensor) -> None:
    _check_bases("s", s)
    if g.shape != s.shape:
        raise ValueError(
            f"s and g must have the same shape (..., d, k), got {tuple(s.shape)} and "
            f"{tuple(g.shape)}"
        )


def weight_to_bases(weight: Tensor, num_classes: int, k: int) -> Tensor:
    """Reinterpret a ``(C·k, d)`` Linear-style weight as bases of shape ``(C, d, k)``.

    Args:
        weight: Tensor of shape ``(num_classes * k, d)``; rows ``[i·k, (i+1)·k)`` hold ``S_iᵀ``.
        num_classes: Number of classes ``C``.
        k: Subspace dimension.

    Returns:
        Tensor of shape ``(C, d, k)``; a view (no copy) when ``weight`` is contiguous.
    """
    if weight.ndim != 2 or weight.shape[0] != num_classes * k:
        raise ValueError(
            f"weight must have shape (num_classes * k, d) = ({num_classes} * {k}, d), "
            f"got {tuple(weight.shape)}"
        )
    return weight.reshape(num_classes, k, weight.shape[1]).transpose(1, 2)


def bases_to_weight(s: Tensor) -> Tensor:
    """Inverse of :func:`weight_to_bases`: ``(C, d, k)`` bases to a ``(C·k, d)`` weight.

    Args:
        s: Tensor of shape ``(C, d, k)``.

    Returns:
        Contiguous tensor of shape ``(C * k, d)``.
    """
    if s.ndim != 3:
        raise ValueError(f"s must have shape (C, d, k), got {tuple(s.shape)}")
    c, d, k = s.shape
    return s.transpose(1, 2).reshape(c * k, d)


def horizontal_projection(s: Tensor, g: Tensor) -> Tensor:
    """Project Euclidean gradients onto the horizontal space at ``S``: ``G − S (Sᵀ G)``.

    This is the Riemannian gradient on the Grassmann manifold for orthonormal ``S``.

    Args:
        s: Orthonormal bases of shape ``(..., d, k)`` (typically ``(C, d, k)``).
        g: Euclidean gradients of the same shape.

    Returns:
        Tensor of shape ``(..., d, k)`` with ``Sᵀ · result = 0`` (up to rounding).
    """
    _check_same_shape(s, g)
    return g - s @ (s.transpose(-2, -1) @ g)


def geodesic_step(s: Tensor, g: Tensor, lr: float) -> Tensor:
    """Move ``S`` a distance ``lr`` along the Grassmann geodesic in the direction ``−G``.

    With the thin SVD ``G = U Σ Vᵀ`` (``full_matrices=False``) the geodesic of Edelman et al.
    is ``S(t) = (S V cos(tΣ) − U sin(tΣ)) Vᵀ`` evaluated at ``t = lr``. It is evaluated here in
    the algebraically equal form ``S + S V (cos(tΣ) − I) Vᵀ − U sin(tΣ) Vᵀ`` with
    ``cos x − 1 = −2 sin²(x/2)``, which avoids the rounding of ``V Vᵀ`` and therefore returns
    ``S`` *exactly* for ``lr = 0`` (or ``G = 0``) and is more accurate for small steps.

    ``G`` must be horizontal (``SᵀG = 0``, see :func:`horizontal_projection`) and ``S``
    orthonormal for the result to be orthonormal. Computed in float64, cast back to ``s.dtype``.

    Args:
        s: Orthonormal bases of shape ``(..., d, k)``.
        g: Horizontal direction of the same shape (the step goes along ``−g``).
        lr: Step length ``t``.

    Returns:
        Tensor of shape ``(..., d, k)`` and dtype ``s.dtype``.
    """
    _check_same_shape(s, g)
    if lr == 0:
        return s.clone()
    s64 = s.to(torch.float64)
    u, sigma, vh = torch.linalg.svd(g.to(torch.float64), full_matrices=False)
    theta = lr * sigma  # (..., k)
    cos_minus_one = -2.0 * torch.sin(0.5 * theta).square()
    sin = torch.sin(theta)
    v = vh.transpose(-2, -1)
    # S V (cos − 1) Vᵀ − U sin Vᵀ  ==  (S V (cos − 1) − U sin) Vᵀ
    delta = ((s64 @ v) * cos_minus_one.unsqueeze(-2) - u * sin.unsqueeze(-2)) @ vh
    return (s64 + delta).to(s.dtype)


def reorthonormalize(s: Tensor) -> Tensor:
    """Re-orthonormalise each basis by QR with ``diag(R) >= 0`` (computed in float64).

    For a nearly orthonormal ``S`` the sign convention gives ``R ≈ I``, so the result stays close
    to ``S`` column by column (no sign flips that would invalidate momentum buffers).

    Args:
        s: Tensor of shape ``(..., d, k)``, typically ``(C, d, k)``.

    Returns:
        Tensor of the same shape and dtype with orthonormal columns.
    """
    _check_bases("s", s)
    return orthonormalize(s.to(torch.float64)).to(s.dtype)


def init_class_subspaces(
    num_classes: int,
    d: int,
    k: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Random class subspaces in the ``(C·k, d)`` weight layout.

    Draws i.i.d. ``N(0, 1)`` blocks ``(C, d, k)`` (Haar-distributed spans) and orthonormalises
    each by QR in float64.

    Args:
        num_classes: Number of classes ``C``.
        d: Ambient (feature) dimension.
        k: Subspace dimension, ``1 <= k <= d``.
        generator: Source of randomness (on the device where the tensor is created).
        dtype: Output dtype.

    Returns:
        Tensor of shape ``(C * k, d)``; rows ``[i·k, (i+1)·k)`` are ``S_iᵀ``.
    """
    if num_classes < 1 or d < 1 or k < 1:
        raise ValueError(f"num_classes, d, k must be positive, got {num_classes}, {d}, {k}")
    if k > d:
        raise ValueError(f"subspace dimension k={k} cannot exceed the ambient dimension d={d}")
    device = generator.device if generator is not None else None
    blocks = torch.randn(num_classes, d, k, generator=generator, dtype=torch.float64, device=device)
    return bases_to_weight(orthonormalize(blocks)).to(dtype)


def subspace_logits(x: Tensor, weight: Tensor, num_classes: int, k: int, gamma: float) -> Tensor:
    """GCR logits ``γ ||S_iᵀ x̂||₂`` for L2-normalised features ``x̂``.

    Args:
        x: Features of shape ``(n, d)``.
        weight: Class subspaces of shape ``(num_classes * k, d)`` (rows ``[i·k, (i+1)·k)`` are
            ``S_iᵀ``).
        num_classes: Number of classes ``C``.
        k: Subspace dimension.
        gamma: Logit scale ``γ``.

    Returns:
        Logits of shape ``(n, C)``. Invariant under ``S_i → S_i R`` for orthogonal ``R``.
    """
    if x.ndim != 2:
        raise ValueError(f"x must have shape (n, d), got {tuple(x.shape)}")
    if weight.ndim != 2 or weight.shape[0] != num_classes * k or weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"weight must have shape (num_classes * k, d) = ({num_classes * k}, {x.shape[1]}), "
            f"got {tuple(weight.shape)}"
        )
    x_hat = torch.nn.functional.normalize(x, p=2.0, dim=1)
    coords = (x_hat @ weight.transpose(0, 1)).view(x.shape[0], num_classes, k)
    return gamma * torch.linalg.vector_norm(coords, ord=2, dim=-1)


class RiemannianSGD(torch.optim.Optimizer):
    """Riemannian SGD with momentum for class subspaces stored in the ``(C·k, d)`` layout.

    Per step and parameter (viewed as ``S`` of shape ``(C, d, k)``; GCR, arXiv:2308.01547):

    1. Momentum on the *Euclidean* gradient: ``b ← μ b + ∇L`` (``b = ∇L`` on the first step;
       no weight decay, no parallel transport of ``b``).
    2. Horizontal projection ``H = b − S Sᵀ b``.
    3. Geodesic step ``S ← geodesic_step(S, H, lr)`` (float64 internally).
    4. Every ``reorth_every``-th call of :meth:`step` (counted by a global step counter kept in
       ``optimizer.state`` and hence in ``state_dict()``): QR re-orthonormalisation.

    Param-group options: ``lr``, ``momentum`` (default 0.9), ``reorth_every`` (default 1),
    ``num_classes`` and ``k``. One of ``num_classes``/``k`` may be ``None`` and is then inferred
    from the parameter's first dimension ``C·k``; if both are ``None`` the group is rejected.
    Parameters must be 2-D with shape ``(num_classes * k, d)`` and ``k <= d``.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.9,
        reorth_every: int = 1,
        num_classes: int | None = None,
        k: int | None = None,
    ) -> None:
        """Create the optimizer; see the class docstring for the options."""
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "reorth_every": reorth_every,
            "num_classes": num_classes,
            "k": k,
        }
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group after validating its options and parameter shapes."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        lr, momentum, every = group["lr"], group["momentum"], group["reorth_every"]
        if not lr >= 0:
            raise ValueError(f"lr must be non-negative, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"reorth_every must be a positive int, got {every!r}")
        for p in group["params"]:
            self._layout(group, p)

    @staticmethod
    def _layout(group: dict[str, Any], p: Tensor) -> tuple[int, int]:
        if p.ndim != 2:
            raise ValueError(
                f"RiemannianSGD parameters must have shape (num_classes * k, d), got "
                f"{tuple(p.shape)}"
            )
        rows, d = p.shape
        c, k = group["num_classes"], group["k"]
        if c is None and k is None:
            raise ValueError("each param group needs num_classes or k (or both)")
        if c is None:
            if k < 1 or rows % k:
                raise ValueError(f"parameter rows {rows} are not a multiple of k={k}")
            c = rows // k
        elif k is None:
            if c < 1 or rows % c:
                raise ValueError(f"parameter rows {rows} are not a multiple of num_classes={c}")
            k = rows // c
        if c * k != rows:
            raise ValueError(
                f"parameter of shape {tuple(p.shape)} does not match num_classes * k = {c} * {k}"
            )
        if k > d:
            raise ValueError(f"subspace dimension k={k} exceeds the feature dimension d={d}")
        return c, k

    @property
    def global_step(self) -> int:
        """Number of completed :meth:`step` calls (persisted in ``state_dict()``)."""
        return int(self.state.get(_GLOBAL_STATE_KEY, {}).get("step", 0))

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Perform one optimisation step.

        Args:
            closure: Optional callable that re-evaluates the model and returns the loss; it is
                run with gradients enabled.

        Returns:
            The closure's loss, or ``None``.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            global_state = self.state[_GLOBAL_STATE_KEY]
            step = int(global_state.get("step", 0)) + 1
            global_state["step"] = step
            for group in self.param_groups:
                lr, momentum = group["lr"], group["momentum"]
                reorth = step % group["reorth_every"] == 0
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    if p.grad.is_sparse:
                        raise RuntimeError("RiemannianSGD does not support sparse gradients")
                    c, k = self._layout(group, p)
                    grad = p.grad
                    if momentum != 0:
                        state = self.state[p]
                        buf = state.get("momentum_buffer")
                        if buf is None:
                            buf = grad.detach().clone()
                            state["momentum_buffer"] = buf
                        else:
                            buf.mul_(momentum).add_(grad)
                        direction = buf
                    else:
                        direction = grad
                    s = weight_to_bases(p, c, k).to(torch.float64)
                    h = horizontal_projection(s, weight_to_bases(direction, c, k).to(s.dtype))
                    s_new = geodesic_step(s, h, lr)
                    if reorth:
                        s_new = orthonormalize(s_new)
                    p.copy_(bases_to_weight(s_new))
        return loss
