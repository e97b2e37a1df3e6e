"""Curvature probes: Hessian-vector products, Lanczos top eigenvalues, the Gauss-Newton split.

After Sagun, Evci, Güney, Dauphin & Bottou, "Empirical Analysis of the Hessian of
Over-Parametrized Neural Networks" (ICLR 2018 workshop, arXiv:1706.04454):
``∇²L = G + R`` with ``G = (1/N) Σ_i J_iᵀ (∇²_f ℓ) J_i`` the generalised Gauss-Newton matrix
and ``R`` the residual term. Small networks get the exact matrices (``torch.func``); large ones
get the top of the spectrum by Lanczos (``scipy.sparse.linalg.eigsh``) on Hessian-vector
products, which is checked against the exact spectrum in the tests and the benchmark.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, eigsh
from torch import Tensor, nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

OutputFn = Callable[[Tensor, Tensor], Tensor]  # (flat params, inputs) -> outputs (n, k)
LOSSES = ("mse", "ce")
HESSIAN_CHUNK = 16  # rows of the exact Hessian per vmapped batch (memory locality)


def flat_model(model: nn.Module) -> tuple[OutputFn, Tensor]:
    """A pure function ``f(theta, x)`` of a flat parameter vector, and the model's current one.

    Buffers (BatchNorm statistics) are held fixed at their current values: put the model in eval
    mode first (spec pitfall).
    """
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    buffers = dict(model.named_buffers())
    theta0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def fn(theta: Tensor, x: Tensor) -> Tensor:
        parts = torch.split(theta, sizes)
        params = {n: t.reshape(s) for n, t, s in zip(names, parts, shapes, strict=True)}
        return functional_call(model, {**params, **buffers}, (x,))

    return fn, theta0


def loss_of_outputs(out: Tensor, y: Tensor, loss: str) -> Tensor:
    """Mean loss over samples: ``mse`` is ``½‖f − onehot(y)‖²`` (so ∇²_f ℓ = I), ``ce`` softmax
    cross-entropy (∇²_f ℓ = diag(p) − ppᵀ)."""
    if loss == "mse":
        target = nn.functional.one_hot(y, out.shape[-1]).to(out.dtype)
        return 0.5 * (out - target).square().sum(dim=-1).mean()
    if loss == "ce":
        return nn.functional.cross_entropy(out, y)
    raise ValueError(f"unknown loss {loss!r}; allowed: {', '.join(LOSSES)}")


def full_loss(fn: OutputFn, x: Tensor, y: Tensor, loss: str) -> Callable[[Tensor], Tensor]:
    """The full-batch training loss as a function of the flat parameters."""
    return lambda theta: loss_of_outputs(fn(theta, x), y, loss)


def exact_hessian(fn: OutputFn, theta: Tensor, x: Tensor, y: Tensor, loss: str) -> Tensor:
    """The full (P, P) Hessian of the full-batch loss (small networks only).

    Reverse-over-reverse (``jacrev`` of the gradient) over chunks of ``HESSIAN_CHUNK`` rows:
    the unchunked vmap materialises (P, n, width) intermediates far beyond the cache and is
    about 3× slower on CPU for P ≈ 1.6k, n = 500.
    """
    h = jacrev(jacrev(full_loss(fn, x, y, loss)), chunk_size=HESSIAN_CHUNK)(theta)
    return 0.5 * (h + h.T)


def per_sample_jacobian(fn: OutputFn, theta: Tensor, x: Tensor) -> Tensor:
    """The Jacobians ``J_i = ∂f(x_i)/∂θ`` of every sample's outputs, shape (n, k, P).

    Each sample is run on its own (``vmap`` over samples of a k-output ``jacrev``), so the cost
    is linear in n; this needs a model whose outputs do not couple samples (no batch statistics:
    eval mode).
    """
    return vmap(jacrev(lambda t, xi: fn(t, xi.unsqueeze(0))[0]), in_dims=(None, 0))(theta, x)


def output_hessian(out: Tensor, loss: str) -> Tensor:
    """Per-sample Hessians of the loss in the outputs, shape (n, k, k)."""
    n, k = out.shape
    if loss == "mse":
        return torch.eye(k, dtype=out.dtype).expand(n, k, k)
    if loss == "ce":
        p = out.softmax(dim=-1)
        return torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)
    raise ValueError(f"unknown loss {loss!r}; allowed: {', '.join(LOSSES)}")


def gauss_newton(fn: OutputFn, theta: Tensor, x: Tensor, loss: str) -> Tensor:
    """The generalised Gauss-Newton matrix ``G = (1/N) Σ_i J_iᵀ (∇²_f ℓ) J_i``, shape (P, P)."""
    jac = per_sample_jacobian(fn, theta, x)  # (n, k, P)
    with torch.no_grad():
        hf = output_hessian(fn(theta, x), loss)
    weighted = torch.einsum("nkl,nlq->nkq", hf, jac).reshape(-1, theta.numel())
    g = jac.reshape(-1, theta.numel()).T @ weighted / x.shape[0]
    return 0.5 * (g + g.T)


def _tanh_mlp_layers(model: nn.Module) -> list[nn.Linear]:
    """The Linear layers of ``Linear → Tanh → … → Linear`` (a clear error for anything else)."""
    mods = list(model.children()) if isinstance(model, nn.Sequential) else [model]
    ok = len(mods) % 2 == 1 and all(
        isinstance(m, nn.Linear if i % 2 == 0 else nn.Tanh) for i, m in enumerate(mods)
    )
    if not ok or any(m.bias is None for m in mods[::2]):
        raise ValueError(
            "mlp_hessian needs nn.Sequential(Linear, Tanh, ..., Linear) with biases, got "
            f"{[type(m).__name__ for m in mods]}"
        )
    return mods[::2]


def _kron_sum(m: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``Σ_i m[i,p,q] a[i,r] b[i,s]`` laid out (p, r, q, s) as a (p·r, q·s) matrix: one GEMM."""
    n, p, q = m.shape
    r, s = a.shape[1], b.shape[1]
    ab = (a[:, :, None] * b[:, None, :]).reshape(n, r * s)
    out = (m.reshape(n, p * q).T @ ab).reshape(p, q, r, s)
    return out.permute(0, 2, 1, 3).reshape(p * r, q * s)


def mlp_hessian(model: nn.Module, x: Tensor, y: Tensor, loss: str) -> tuple[Tensor, Tensor]:
    """The exact Hessian H and Gauss-Newton matrix G of the full-batch loss of a tanh MLP
    (``nn.Sequential(Linear, Tanh, …, Linear)``), in closed form; the same matrices as
    :func:`exact_hessian` and :func:`gauss_newton` (flat parameters in ``named_parameters``
    order), several times faster: a few large matrix products instead of P vmapped
    second-order backward passes.

    With ``z_l = Θ_l ã_{l−1}`` (``ã = [a; 1]``, ``a_l = tanh z_l``, ``f = z_n``), the
    second-order differential of the per-sample loss is
    ``dfᵀ ∇²_f ℓ df + Σ_{l<n} (u_l ⊙ σ''(z_l))ᵀ dz_l² + Σ_{l≥2} 2 δ_lᵀ dΘ_l dã_{l−1}``,
    with ``δ_l = ∂ℓ/∂z_l``, ``u_l = Θ'_{l+1}ᵀ δ_{l+1}`` and ``dz_l = Σ_m B_{lm} dΘ_m ã_{m−1}``
    (``B_{lm} = ∂z_l/∂z_m``). The first term is G; every block of every term is a Kronecker
    product summed over samples (Sagun et al., arXiv:1706.04454, §2 for the split).
    """
    layers = _tanh_mlp_layers(model)
    n_layers, n = len(layers), x.shape[0]
    with torch.no_grad():
        inputs, acts = [], []  # ã_{l−1} (n, in+1) and tanh'(z_l), tanh''(z_l) of hidden layers
        a = x
        for i, lin in enumerate(layers):
            inputs.append(torch.cat([a, torch.ones_like(a[:, :1])], dim=1))
            z = lin(a)
            if i < n_layers - 1:
                a = torch.tanh(z)
                d1 = 1 - a.square()
                acts.append((d1, -2 * a * d1))
        f = z
        hf = output_hessian(f, loss)  # (n, k, k)
        if loss == "mse":
            delta = f - nn.functional.one_hot(y, f.shape[1]).to(f.dtype)
        else:
            delta = f.softmax(dim=1) - nn.functional.one_hot(y, f.shape[1]).to(f.dtype)
        weights = [lin.weight for lin in layers]
        deltas, curv = [delta], []  # δ_l from the top; (u_l ⊙ σ''_l) per hidden layer
        for i in range(n_layers - 2, -1, -1):
            u = deltas[0] @ weights[i + 1]
            curv.insert(0, u * acts[i][1])
            deltas.insert(0, u * acts[i][0])
        # B[l][m] = ∂z_l/∂z_m per sample, (n, W_l, W_m), m ≤ l
        eye = [torch.eye(w.shape[0], dtype=x.dtype).expand(n, -1, -1) for w in weights]
        jac: list[list[Tensor]] = []
        for i in range(n_layers):
            row = [
                torch.einsum("pq,iq,iqm->ipm", weights[i], acts[i - 1][0], jac[i - 1][m])
                for m in range(i)
            ]
            jac.append([*row, eye[i]])
        # quadratic terms: M[m][m'] = Σ_l B_{lm}ᵀ D_l B_{lm'} (G: the output term alone)
        blocks_g: dict[tuple[int, int], Tensor] = {}
        blocks_h: dict[tuple[int, int], Tensor] = {}
        for m in range(n_layers):
            for m2 in range(m, n_layers):
                top = jac[-1]
                mg = torch.einsum("ipm,ipq,iqr->imr", top[m], hf, top[m2])
                mh = mg.clone()
                for li in range(m2, n_layers - 1):
                    b = jac[li]
                    mh += torch.einsum("ipm,ip,ipr->imr", b[m], curv[li], b[m2])
                blocks_g[m, m2] = _kron_sum(mg, inputs[m], inputs[m2])
                blocks_h[m, m2] = _kron_sum(mh, inputs[m], inputs[m2])
        # bilinear terms 2 δ_lᵀ dΘ_l dã_{l−1}: block (l, m), m < l, entry ((p, a), (q, b)) is
        # Σ_i δ_l[i,p] ã_{m−1}[i,b] σ'_{l−1}[i,a] B_{l−1,m}[i,a,q] (0 on the bias column a)
        for li in range(1, n_layers):
            for m in range(li):
                s_ = acts[li - 1][0][:, :, None] * jac[li - 1][m]  # (n, W_{l−1}, W_m)
                s_ = torch.cat([s_, torch.zeros_like(s_[:, :1])], dim=1)
                w_l, w_m, i_m = deltas[li].shape[1], s_.shape[2], inputs[m].shape[1]
                left = (deltas[li][:, :, None] * inputs[m][:, None, :]).reshape(n, -1)
                c = (left.T @ s_.reshape(n, -1)).reshape(w_l, i_m, s_.shape[1], w_m)
                c = c.permute(0, 2, 3, 1).reshape(w_l * s_.shape[1], w_m * i_m)
                blocks_h[m, li] += c.T
        order = _flat_index(layers)
        p_total = sum(o.numel() for o in order)
        out = []
        for blocks in (blocks_h, blocks_g):
            mat = torch.zeros(p_total, p_total, dtype=x.dtype)
            for (m, m2), blk in blocks.items():
                mat[order[m][:, None], order[m2][None, :]] = blk / n
                if m != m2:
                    mat[order[m2][:, None], order[m][None, :]] = blk.T / n
            out.append(mat)
    return out[0], out[1]


def _flat_index(layers: list[nn.Linear]) -> list[Tensor]:
    """For each layer, the flat parameter index of its augmented ``[W | b]`` entries, row-major:
    ``named_parameters`` order puts W (row-major) then b for each layer in turn."""
    out, offset = [], 0
    for lin in layers:
        w, i = lin.weight.shape
        idx = torch.empty(w, i + 1, dtype=torch.long)
        idx[:, :i] = offset + torch.arange(w * i).reshape(w, i)
        idx[:, i] = offset + w * i + torch.arange(w)
        out.append(idx.reshape(-1))
        offset += w * (i + 1)
    return out


def hvp_fn(
    fn: OutputFn, theta: Tensor, x: Tensor, y: Tensor, loss: str
) -> Callable[[Tensor], Tensor]:
    """``v ↦ H v`` for the full-batch loss (forward-over-reverse, one gradient's graph)."""
    grad = torch.func.grad(full_loss(fn, x, y, loss))

    def hvp(v: Tensor) -> Tensor:
        return jvp(grad, (theta,), (v,))[1]

    return hvp


def gnvp_fn(fn: OutputFn, theta: Tensor, x: Tensor, loss: str) -> Callable[[Tensor], Tensor]:
    """``v ↦ G v`` without forming G: ``Jᵀ (∇²_f ℓ) J v / N`` by one jvp and one vjp."""
    out, pullback = vjp(lambda t: fn(t, x), theta)
    hf = output_hessian(out.detach(), loss)

    def gnvp(v: Tensor) -> Tensor:
        jv = jvp(lambda t: fn(t, x), (theta,), (v,))[1]
        return pullback(torch.einsum("nkl,nl->nk", hf, jv) / x.shape[0])[0]

    return gnvp


def lanczos_top(
    matvec: Callable[[Tensor], Tensor],
    dim: int,
    k: int,
    *,
    dtype: torch.dtype = torch.float64,
    tol: float = 1e-8,
    seed: int = 0,
) -> np.ndarray:
    """The ``k`` largest (algebraic) eigenvalues of a symmetric operator, descending.

    Implicitly restarted Lanczos (ARPACK via ``scipy.sparse.linalg.eigsh``) over torch
    matrix-vector products; the start vector is drawn from ``seed`` so results repeat.
    """
    if not 1 <= k < dim:
        raise ValueError(f"k: got {k}; allowed: 1 <= k < dim ({dim})")

    def mv(v: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(v.reshape(-1))).to(dtype)
        return matvec(t).detach().to(torch.float64).numpy()

    op = LinearOperator((dim, dim), matvec=mv, dtype=np.float64)
    rng = np.random.default_rng(seed)  # the start vector and any restart vector ARPACK asks for
    v0 = rng.standard_normal(dim)
    vals = eigsh(op, k=k, which="LA", tol=tol, v0=v0, rng=rng, return_eigenvectors=False)
    return np.sort(vals)[::-1]


def bulk_fraction(eigvals: Tensor, rel: float) -> float:
    """Fraction of eigenvalues with ``|λ| < rel · λ_max`` (the bulk near zero)."""
    lam_max = float(eigvals.max())
    return float((eigvals.abs() < rel * lam_max).double().mean())


def gap_outliers(eigvals: Tensor, max_count: int) -> int:
    """Outlier count by the largest gap of ``log|λ|`` among the top ``max_count + 1`` positive
    eigenvalues (the spec's gap rule)."""
    top = torch.sort(eigvals[eigvals > 0], descending=True).values[: max_count + 1]
    if top.numel() < 2:
        return int(top.numel())
    gaps = top[:-1].log() - top[1:].log()
    return int(torch.argmax(gaps)) + 1


def threshold_outliers(eigvals: Tensor, quantile: float, margin: float) -> int:
    """Outlier count by threshold: ``λ > margin · q``, with ``q`` the ``quantile`` of ``|λ|``
    (the bulk edge)."""
    edge = float(torch.quantile(eigvals.abs(), quantile))
    return int((eigvals > margin * edge).sum())


def subspace_overlap(ua: Tensor, ub: Tensor) -> float:
    """Mean squared cosine ``‖U_aᵀ U_b‖²_F / k`` between two (P, k) orthonormal bases."""
    return float((ua.T @ ub).square().sum() / ua.shape[1])


def top_overlap(a: Tensor, b: Tensor, k: int) -> float:
    """:func:`subspace_overlap` of the top-``k`` eigenspaces of two symmetric matrices
    (1 = the same subspace)."""
    return subspace_overlap(
        torch.linalg.eigh(a).eigenvectors[:, -k:], torch.linalg.eigh(b).eigenvectors[:, -k:]
    )
