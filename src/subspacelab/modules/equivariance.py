"""The equivariance error of any model under a group action.

For a map f and group elements g acting on inputs by ρ_in(g) and on outputs by ρ_out(g),

    e_eq(f, x, g) = ‖f(ρ_in(g) x) − ρ_out(g) f(x)‖ / ‖ρ_out(g) f(x)‖,

averaged over the batch and maximised over the elements given (Bronstein et al., "Geometric
Deep Learning", arXiv:2104.13478). ρ_out = identity measures invariance. An exactly
equivariant model gives round-off; the error is scale-free, so models compare across widths.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

Action = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Element:
    """One group element: its name and its action on the model's inputs and outputs."""

    name: str
    on_input: Action
    on_output: Action


def identity(t: Tensor) -> Tensor:
    """The trivial action (for invariance: ρ_out = identity)."""
    return t


def rot90(k: int) -> Action:
    """Rotation by k·90° of the last two (spatial) axes: the C4 action on images and maps."""
    return lambda t: torch.rot90(t, k, dims=(-2, -1))


def c4(invariant: bool = False) -> list[Element]:
    """The three non-trivial rotations of C4, acting on outputs as on inputs (or trivially)."""
    return [
        Element(f"rot{90 * k}", rot90(k), identity if invariant else rot90(k)) for k in (1, 2, 3)
    ]


def equivariance_error(
    model: nn.Module | Callable[[Tensor], Tensor],
    x: Tensor,
    elements: Sequence[Element],
    eps: float = 1e-12,
) -> dict[str, float]:
    """e_eq per element (mean over the batch of the per-sample relative error) and ``max``.
    Evaluates without gradient and, for an ``nn.Module``, in eval mode (the mode is restored)."""
    if not elements:
        raise ValueError("equivariance_error needs at least one group element")
    was = model.training if isinstance(model, nn.Module) else None
    if isinstance(model, nn.Module):
        model.eval()
    try:
        with torch.no_grad():
            fx = model(x)
            errors = {}
            for g in elements:
                want = g.on_output(fx)
                got = model(g.on_input(x))
                if got.shape != want.shape:
                    raise ValueError(
                        f"{g.name}: f(gx) has shape {tuple(got.shape)}, g f(x) {tuple(want.shape)}"
                    )
                diff = (got - want).flatten(1).norm(dim=1)
                scale = want.flatten(1).norm(dim=1).clamp_min(eps)
                errors[g.name] = float((diff / scale).mean())
    finally:
        if was is not None and isinstance(model, nn.Module):
            model.train(was)
    errors["max"] = max(errors.values())
    return errors
