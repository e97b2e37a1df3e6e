"""Selective scans for vision Mamba on CPU: the S6 scan, 2D scan routes, SS2D and multi-head scans.

The selective scan (S6, Gu & Dao, arXiv:2312.00752) with the discretisation of ``mamba-ssm``'s
``selective_scan_fn``: Δ = softplus(δ + bias), Ā = exp(Δ A) (zero-order hold on A), B̄x = Δ B x
(Euler on B), h_t = Ā_t h_{t-1} + B̄_t x_t, y_t = C_t·h_t + D x_t. :func:`selective_scan` runs the
linear recurrence as a two-level chunked scan (√L steps within chunks, all chunks at once, then
L/T carries between chunks) under a hand-written backward (the adjoint is the same scan run in
reverse); :func:`selective_scan_sequential` is the token-by-token reference.

Routes (permutations of the H·W grid, ``route[i]`` = row-major index of the i-th visited cell)
and their inverses: raster, transposed, snake (boustrophedon), diagonal zig-zag, spiral, each
mirrored, flipped or reversed. :class:`SS2D` is VM-UNet's / VMamba's cross-scan block (four
raster/transposed directions at the full inner width, outputs summed); :class:`MultiHeadScan` is
MHS-VM's (Ji, arXiv:2406.05992): a projection to ``h`` subspaces of width D/h, one route family
per head (C snake, X zig-zag, S spiral, Z raster) with four routes each, fused by the gated
fusion unit :func:`gfu` (or summed), concatenated, normalised and projected back.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FAMILIES = ("C", "X", "S", "Z")  # MHS-VM's head order (snake, zig-zag, spiral, raster)


# ---------------------------------------------------------------- the linear recurrence


def _scan_forward(a: Tensor, u: Tensor, chunk: int) -> Tensor:
    """h_t = a_t h_{t-1} + u_t (h_{-1} = 0) along dim -2 of (..., L, N), L a multiple of
    ``chunk``: a scan inside every chunk at once, then the carries from chunk to chunk."""
    *lead, length, n = a.shape
    c = length // chunk
    a4 = a.reshape(*lead, c, chunk, n)
    h = u.reshape(*lead, c, chunk, n).clone()
    for t in range(1, chunk):  # local scans, every chunk at once
        h[..., t, :].addcmul_(a4[..., t, :], h[..., t - 1, :])
    if c > 1:
        p = torch.cumprod(a4, dim=-2)  # decay from each chunk's start (products in (0, 1])
        carry = torch.zeros_like(h[..., 0, 0, :])
        carries = torch.empty_like(h[..., 0, :])  # the state entering each chunk
        carries[..., 0, :] = 0.0
        for j in range(1, c):
            carry = p[..., j - 1, -1, :] * carry + h[..., j - 1, -1, :]
            carries[..., j, :] = carry
        h.addcmul_(p, carries.unsqueeze(-2))
    return h.reshape(a.shape)


class _LinearScan(torch.autograd.Function):
    """The recurrence with its adjoint: g_u_t = g_h_t + a_{t+1} g_u_{t+1} (a reverse scan),
    g_a_t = g_u_t h_{t-1}."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx, a: Tensor, u: Tensor, chunk: int
    ) -> Tensor:  # type: ignore[override]
        h = _scan_forward(a, u, chunk)
        ctx.save_for_backward(a, h)
        ctx.chunk = chunk  # type: ignore[attr-defined]
        return h

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, g: Tensor
    ) -> tuple[Tensor, Tensor, None]:  # type: ignore[override]
        a, h = ctx.saved_tensors  # type: ignore[attr-defined]
        a_next = torch.zeros_like(a)
        a_next[..., :-1, :] = a[..., 1:, :]
        gu = _scan_forward(a_next.flip(-2), g.flip(-2), ctx.chunk).flip(-2)  # type: ignore[attr-defined]
        ga = torch.zeros_like(a)
        ga[..., 1:, :] = gu[..., 1:, :] * h[..., :-1, :]
        return ga, gu, None


def default_chunk(length: int) -> int:
    """The chunk of the two-level scan: the largest divisor of ``length`` not above √length."""
    root = max(1, math.isqrt(length))
    return max(d for d in range(1, root + 1) if length % d == 0)


def linear_scan(a: Tensor, u: Tensor, chunk: int | None = None) -> Tensor:
    """h_t = a_t ⊙ h_{t-1} + u_t along dim -2 of ``a``, ``u`` (..., L, N), h_{-1} = 0."""
    if a.shape != u.shape or a.dim() < 2:
        raise ValueError(f"a and u must share a shape (..., L, N), got {a.shape} and {u.shape}")
    length = a.shape[-2]
    chunk = default_chunk(length) if chunk is None else chunk
    if chunk < 1 or length % chunk:
        raise ValueError(f"chunk must divide the length {length}, got {chunk}")
    return _LinearScan.apply(a, u, chunk)  # type: ignore[no-any-return]


# ---------------------------------------------------------------- the selective scan


def _discretise(
    x: Tensor, delta: Tensor, a: Tensor, b: Tensor, delta_bias: Tensor | None, softplus: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Δ, Ā = exp(ΔA) (b, d, l, n) and B̄x = Δ B x (b, d, l, n), B shared by groups of channels."""
    if x.dim() != 3 or delta.shape != x.shape:
        raise ValueError(f"x and delta must be (batch, d, L), got {x.shape} and {delta.shape}")
    bsz, d, length = x.shape
    if a.shape[0] != d or a.dim() != 2:
        raise ValueError(f"A must be (d={d}, n), got {tuple(a.shape)}")
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if softplus:
        delta = F.softplus(delta)
    bg = b if b.dim() == 4 else b.unsqueeze(1)
    groups, n = bg.shape[1], bg.shape[2]
    if d % groups or bg.shape != (bsz, groups, a.shape[1], length):
        raise ValueError(f"B must be (batch, n, L) or (batch, groups | d, n, L), got {b.shape}")
    da = torch.exp(delta.unsqueeze(-1) * a.unsqueeze(1))
    bl = bg.transpose(-1, -2).unsqueeze(2)  # (b, g, 1, l, n)
    dbx = ((delta * x).view(bsz, groups, d // groups, length, 1) * bl).reshape(bsz, d, length, n)
    return delta, da, dbx


def _readout(h: Tensor, c: Tensor, x: Tensor, d_skip: Tensor | None) -> Tensor:
    """y_t = C_t·h_t (+ D x_t), C shared by groups of channels."""
    bsz, d, length, n = h.shape
    cg = c if c.dim() == 4 else c.unsqueeze(1)
    groups = cg.shape[1]
    y = torch.einsum("bgdln,bgnl->bgdl", h.view(bsz, groups, d // groups, length, n), cg)
    y = y.reshape(bsz, d, length)
    return y if d_skip is None else y + d_skip[:, None] * x


def selective_scan(
    x: Tensor,
    delta: Tensor,
    a: Tensor,
    b: Tensor,
    c: Tensor,
    d_skip: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    chunk: int | None = None,
) -> Tensor:
    """The S6 scan with ``mamba-ssm``'s ``selective_scan_fn`` signature and discretisation.

    x, delta: (batch, d, L); A: (d, n), negative; B, C: (batch, n, L) or (batch, groups, n, L)
    (channel i uses group i // (d / groups)); D: (d,); returns y (batch, d, L)."""
    _, da, dbx = _discretise(x, delta, a, b, delta_bias, delta_softplus)
    return _readout(linear_scan(da, dbx, chunk), c, x, d_skip)


def selective_scan_sequential(
    x: Tensor,
    delta: Tensor,
    a: Tensor,
    b: Tensor,
    c: Tensor,
    d_skip: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
) -> Tensor:
    """The same scan token by token (the reference :func:`selective_scan` is tested against)."""
    _, da, dbx = _discretise(x, delta, a, b, delta_bias, delta_softplus)
    h = torch.zeros_like(da[:, :, 0])
    states = []
    for t in range(x.shape[-1]):
        h = da[:, :, t] * h + dbx[:, :, t]
        states.append(h)
    return _readout(torch.stack(states, 2), c, x, d_skip)


# ---------------------------------------------------------------- routes


def raster(h: int, w: int) -> Tensor:
    """Row-major order."""
    return torch.arange(h * w)


def transposed(h: int, w: int) -> Tensor:
    """Column-major order."""
    return torch.arange(h * w).view(h, w).t().reshape(-1)


def snake(h: int, w: int) -> Tensor:
    """Boustrophedon over rows: left to right, then right to left on the next row."""
    grid = torch.arange(h * w).view(h, w).clone()
    grid[1::2] = grid[1::2].flip(-1)
    return grid.reshape(-1)


def snake_columns(h: int, w: int) -> Tensor:
    """Boustrophedon over columns: down, then up on the next column."""
    grid = torch.arange(h * w).view(h, w).t().clone()
    grid[1::2] = grid[1::2].flip(-1)
    return grid.reshape(-1)


def zigzag(h: int, w: int) -> Tensor:
    """The diagonal zig-zag (JPEG order): anti-diagonals r + c = s, alternating direction."""
    order: list[int] = []
    for s in range(h + w - 1):
        cells = [(r, s - r) for r in range(max(0, s - w + 1), min(h, s + 1))]
        if s % 2 == 0:
            cells.reverse()
        order.extend(r * w + col for r, col in cells)
    return torch.tensor(order)


def zigzag_mirror(h: int, w: int) -> Tensor:
    """The zig-zag of the left-right mirrored grid (over the main diagonals)."""
    return mirror_columns(zigzag(h, w), h, w)


def spiral(h: int, w: int) -> Tensor:
    """Clockwise spiral from the top-left corner inwards (odd sizes end on the centre cell)."""
    order: list[int] = []
    top, bottom, left, right = 0, h - 1, 0, w - 1
    while top <= bottom and left <= right:
        order.extend(top * w + col for col in range(left, right + 1))
        order.extend(r * w + right for r in range(top + 1, bottom + 1))
        if top < bottom:
            order.extend(bottom * w + col for col in range(right - 1, left - 1, -1))
        if left < right:
            order.extend(r * w + left for r in range(bottom - 1, top, -1))
        top, bottom, left, right = top + 1, bottom - 1, left + 1, right - 1
    return torch.tensor(order)


def spiral_flipped(h: int, w: int) -> Tensor:
    """The spiral of the upside-down grid (counter-clockwise from the bottom-left corner)."""
    route = spiral(h, w)
    return (h - 1 - route // w) * w + route % w


def mirror_columns(route: Tensor, h: int, w: int) -> Tensor:
    """``route`` on the left-right mirrored grid."""
    return (route // w) * w + (w - 1 - route % w)


def inverse(route: Tensor) -> Tensor:
    """The inverse permutation: ``seq[..., inverse(route)]`` puts a routed sequence back."""
    inv = torch.empty_like(route)
    inv[route] = torch.arange(route.numel())
    return inv


FAMILY_ROUTES = {
    "C": (snake, snake_columns),
    "X": (zigzag, zigzag_mirror),
    "S": (spiral, spiral_flipped),
    "Z": (raster, transposed),
}


def family_routes(family: str, h: int, w: int) -> Tensor:
    """The k = 4 routes of a family, (4, H·W): its two routes each followed by its reversal
    (MHS-VM's order: r0, reversed r0, r1, reversed r1)."""
    if family not in FAMILY_ROUTES:
        raise ValueError(f"unknown route family {family!r}; expected one of {FAMILIES}")
    r0, r1 = (f(h, w) for f in FAMILY_ROUTES[family])
    return torch.stack([r0, r0.flip(0), r1, r1.flip(0)])


def cross_scan_routes(h: int, w: int) -> Tensor:
    """VMamba / VM-UNet's four directions, (4, H·W): raster, transposed and both reversed."""
    r0, r1 = raster(h, w), transposed(h, w)
    return torch.stack([r0, r1, r0.flip(0), r1.flip(0)])


def route_scan(x: Tensor, routes: Tensor) -> Tensor:
    """(b, d, H·W) -> (b, k, d, L): the sequences along each of the ``routes`` (k, L)."""
    return x[:, :, routes].transpose(1, 2)


def route_merge(ys: Tensor, routes: Tensor) -> Tensor:
    """(b, k, d, L) -> (b, k, d, H·W): each route's outputs re-indexed back to grid order."""
    inv = torch.stack([inverse(r) for r in routes])
    return torch.gather(ys, -1, inv[None, :, None, :].expand_as(ys))


# ---------------------------------------------------------------- fusion


def gfu(ys: Tensor, t: float) -> Tensor:
    """MHS-VM's gated fusion of k route outputs (b, k, ...) -> (b, ...):
    (Σ_i y_i) ⊙ ReLU(cv − t), cv = std_i(y_i) / (mean_i(y_i − min_i y_i) + 1e-5)."""
    total = ys.sum(1)
    std = ys.std(1)
    spread = (ys - ys.min(1, keepdim=True).values).mean(1)
    return total * F.relu(std / (spread + 1e-5) - t)


# ---------------------------------------------------------------- blocks


class RouteEngine(nn.Module):
    """One S6 engine with k parameter copies (one per route): x_proj to (dt_rank + 2N), dt_proj
    (Mamba's init: softplus(bias) log-uniform in [dt_min, dt_max]), A_log (S4D-real A_n = n) and
    D = 1, as VMamba's SS2D and MHS-VM's MambaEngine."""

    def __init__(self, d: int, routes: int, d_state: int, dt_rank: int, chunk: int | None) -> None:
        super().__init__()
        self.d, self.k, self.n, self.r, self.chunk = d, routes, d_state, dt_rank, chunk
        bound = d**-0.5
        self.x_proj = nn.Parameter(
            torch.empty(routes, dt_rank + 2 * d_state, d).uniform_(-bound, bound)
        )
        std = dt_rank**-0.5
        self.dt_proj = nn.Parameter(torch.empty(routes, d, dt_rank).uniform_(-std, std))
        dt = torch.exp(torch.rand(routes, d) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        dt = dt.clamp(min=1e-4)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus⁻¹(dt)
        a = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(routes * d, 1)
        self.a_log = nn.Parameter(torch.log(a))
        self.d_skip = nn.Parameter(torch.ones(routes * d))

    def forward(self, xs: Tensor) -> Tensor:
        """(b, k, d, L) -> (b, k, d, L)."""
        b, k, d, length = xs.shape
        dbc = torch.einsum("bkdl,kcd->bkcl", xs, self.x_proj)
        dt, bs, cs = torch.split(dbc, [self.r, self.n, self.n], dim=2)
        dt = torch.einsum("bkrl,kdr->bkdl", dt, self.dt_proj)
        y = selective_scan(
            xs.reshape(b, k * d, length),
            dt.reshape(b, k * d, length),
            -torch.exp(self.a_log),
            bs,
            cs,
            self.d_skip,
            self.dt_bias.reshape(-1),
            delta_softplus=True,
            chunk=self.chunk,
        )
        return y.view(b, k, d, length)


def _dt_rank(d: int) -> int:
    return math.ceil(d / 16)


class SS2D(nn.Module):
    """VM-UNet's SS2D (VMamba v1): in_proj D -> 2E (E = expand·D), depthwise 3×3 conv + SiLU,
    the four cross-scan directions at width E (one engine, four parameter copies), outputs summed
    back in grid order, LayerNorm(E), ⊙ SiLU(z), out_proj E -> D. Input and output (b, H, W, D)."""

    def __init__(self, d_model: int, d_state: int, expand: int, h: int, w: int) -> None:
        super().__init__()
        e = expand * d_model
        self.in_proj = nn.Linear(d_model, 2 * e, bias=False)
        self.conv = nn.Conv2d(e, e, 3, padding=1, groups=e)
        self.engine = RouteEngine(e, 4, d_state, _dt_rank(d_model), default_chunk(h * w))
        self.out_norm = nn.LayerNorm(e)
        self.out_proj = nn.Linear(e, d_model, bias=False)
        self.register_buffer("routes", cross_scan_routes(h, w), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, _ = x.shape
        xz = self.in_proj(x)
        u, z = xz.chunk(2, dim=-1)
        u = F.silu(self.conv(u.permute(0, 3, 1, 2))).flatten(2)  # (b, e, L)
        ys = route_merge(self.engine(route_scan(u, self.routes)), self.routes).sum(1)
        y = self.out_norm(ys.transpose(1, 2)) * F.silu(z.reshape(b, h * w, -1))
        return self.out_proj(y).view(b, h, w, -1)


class MultiHeadScan(nn.Module):
    """MHS-VM's gated VSS block (VSSGate with MHSM): in_proj D -> 2D, depthwise 3×3 conv + SiLU,
    W_s projects to ``heads`` subspaces of width d_s = D/heads, head i scans the four routes of
    family ``FAMILIES[i]`` with its own engine, fuses them by GFU(t) (``gfu_t``; ``None``: a plain
    sum), heads concatenated -> LayerNorm -> y_proj -> out LayerNorm -> ⊙ SiLU(z)."""

    def __init__(
        self, d_model: int, d_state: int, heads: int, gfu_t: float | None, h: int, w: int
    ) -> None:
        super().__init__()
        if not 1 <= heads <= len(FAMILIES) or d_model % heads:
            raise ValueError(f"heads must be 1..4 and divide d_model={d_model}, got {heads}")
        ds = d_model // heads
        self.heads, self.gfu_t = heads, gfu_t
        self.in_proj = nn.Linear(d_model, 2 * d_model, bias=False)
        self.conv = nn.Conv2d(d_model, d_model, 3, padding=1, groups=d_model)
        self.ss_proj = nn.Linear(d_model, heads * ds, bias=False)
        chunk = default_chunk(h * w)
        self.engines = nn.ModuleList(
            [RouteEngine(ds, 4, d_state, _dt_rank(ds), chunk) for _ in range(heads)]
        )
        self.cat_norm = nn.LayerNorm(heads * ds)
        self.y_proj = nn.Linear(heads * ds, d_model, bias=False)
        self.out_norm = nn.LayerNorm(d_model)
        routes = torch.stack([family_routes(f, h, w) for f in FAMILIES[:heads]])
        self.register_buffer("routes", routes, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, _ = x.shape
        u, z = self.in_proj(x).chunk(2, dim=-1)
        u = F.silu(self.conv(u.permute(0, 3, 1, 2))).flatten(2)  # (b, D, L)
        parts = self.ss_proj(u.transpose(1, 2)).transpose(1, 2).chunk(self.heads, dim=1)
        outs = []
        for part, engine, routes in zip(parts, self.engines, self.routes, strict=True):
            ys = route_merge(engine(route_scan(part, routes)), routes)
            outs.append(ys.sum(1) if self.gfu_t is None else gfu(ys, self.gfu_t))
        y = self.y_proj(self.cat_norm(torch.cat(outs, 1).transpose(1, 2)))
        return (self.out_norm(y) * F.silu(z.reshape(b, h * w, -1))).view(b, h, w, -1)
