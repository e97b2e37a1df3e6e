"""molrg_diffusion study: data -> fit -> evaluate (Wang et al. 2024, arXiv:2409.02426).

* data — per seed, one MoLRG world per grid cell (K components of dimension d in R^n, N_k points
  each; the official generator's mutually orthogonal subspaces, or random ones), with its bases.
* fit — per seed, every cell's low-rank parametrised DAE (the MoLRG posterior mean with
  learnable U_k) from ``restarts`` random starts in both parametrisations of the spec's
  prototype (QR inside the forward pass with Adam on A; Adam on U with a QR retraction), all in
  one Lightning run on the sum of their VE denoising losses; each restart's loss on a fixed
  draw of noise (the selection loss); and the exact K-subspaces baseline (PCA for K = 1).
* evaluate — subspace errors against the truth, success rates (e < 0.1) over the grid, the
  per-seed sample-size threshold N_k*(d), the DAE–K-subspaces agreement, claims R1–R3 and P1.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import astuple, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from subspacelab.api import (
    Claim,
    ClaimResult,
    Condition,
    Curve,
    Metrics,
    Report,
    Stat,
    Step,
    StepContext,
    StepOutput,
    Study,
    decide,
    gap,
    on_mean,
    read_json,
    write_json,
)
from subspacelab.geometry.bases import orthonormalize
from subspacelab.studies.molrg_diffusion import core
from subspacelab.studies.molrg_diffusion.config import MolrgDiffusionConfig
from subspacelab.worlds import GROUP_TABLE, group_table, lowrank

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SLUG = "molrg_diffusion"
SUCCESS = 0.1  # e < 0.1 is a recovery (§6)
MATCH = 0.1  # DAE and K-subspaces subspaces agree when their distance is below this (R3)
ARM_NAMES = {"qr": "QR inside forward", "retraction": "Adam on U + QR retraction"}
WORLD_ROW = {
    "quantity": "energy of the true MoLRG subspaces captured (largest K, smallest n, N_k = 2d, "
    "mean over d; 1 = exact)",
    "error": "1 − captured energy (= mean_k e_k²)",
    "baseline": "K-subspaces",
}


def _cells(ctx: StepContext[MolrgDiffusionConfig]) -> list[core.Cell]:
    w = ctx.cfg.world
    return core.grid(w.ambient, w.components, w.dims, w.n_offsets, w.n_multiples)


def _world(cell: core.Cell, seed: int, subspaces: str, noise: float) -> lowrank.MoLRG:
    return lowrank.molrg(
        cell.n,
        [cell.d] * cell.k,
        [cell.nk] * cell.k,
        seed=[seed, cell.k, cell.n, cell.d, cell.nk],
        subspaces=subspaces,
        noise=noise,
    )


def _data(ctx: StepContext[MolrgDiffusionConfig]) -> StepOutput:
    w = ctx.cfg.world
    cells = _cells(ctx)
    tensors: dict[str, np.ndarray] = {}
    for seed in ctx.seeds:
        for cell in cells:
            world = _world(cell, seed, w.subspaces, w.noise)
            tensors[f"s{seed}_{cell.key}_x"] = world.x
            tensors[f"s{seed}_{cell.key}_truth"] = world.stacked()
    ctx.save("worlds", tensors, kind="data")
    write_json(ctx.out / "grid.json", {"cells": [c.key for c in cells]})
    ctx.progress(f"{len(cells)} cells x {len(ctx.seeds)} seeds ({w.subspaces} subspaces)")
    return StepOutput(metrics={"cells": float(len(cells))})


def _batches(
    cells: list[core.Cell], worlds: dict[str, torch.Tensor], seed: int, restarts: int
) -> dict[str, core.GroupDAEs]:
    """Every batch of cells as one :class:`core.GroupDAEs`, starts drawn from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name in sorted({c.batch for c in cells}):
        members = [c for c in cells if c.batch == name]
        xs = [worlds[f"s{seed}_{c.key}_x"].float() for c in members]
        first = members[0]
        x = torch.zeros(len(xs), max(len(v) for v in xs), first.n)
        for i, v in enumerate(xs):
            x[i, : len(v)] = v
        init = torch.randn(len(xs), restarts, first.k, first.n, first.d, generator=gen)
        out[name] = core.GroupDAEs(x, torch.tensor([len(v) for v in xs]), init)
    return out


def _fit(ctx: StepContext[MolrgDiffusionConfig]) -> StepOutput:
    from subspacelab.api import LossModule, fit, full_batch_loader

    dae, base = ctx.cfg.dae, ctx.cfg.baseline
    cells = _cells(ctx)
    worlds = ctx.load("worlds", kind="data")
    saved: dict[str, torch.Tensor] = {}
    selection: dict[str, list[list[float]]] = {}
    seconds = {"dae_seconds": 0.0, "ks_seconds": 0.0}
    a_norm: dict[str, float] = {}
    for seed in ctx.seeded():
        t0 = time.perf_counter()
        groups = _batches(cells, worlds, seed, dae.restarts)
        net = core.MoLRGDAEs(groups, dae.draws, dae.sigma_min, dae.sigma_max, seed)
        module = LossModule(net, lambda n, _batch: n(), lr=dae.lr, after_step=_retract)
        fit(
            ctx,
            module,
            full_batch_loader(steps=dae.steps),
            epochs=1,
            label=f"seed {seed}",
            params={"seed": seed, "arms": ",".join(core.ARMS), "models": _count(groups)},
        )
        losses = net.selection_losses(dae.eval_draws, seed)
        # the QR arm's A is free in scale (QR ignores it); a larger A means a smaller step on
        # the subspace. Reported beside the arms: the retraction arm's columns are reset to 1
        norms = [g.a.detach().norm(dim=-2).mean().item() for g in groups.values()]
        a_norm[str(seed)] = float(np.mean(norms))
        for name, group in groups.items():
            # (arms, W, R, K, n, d), re-orthonormalised in float64 for exact projectors
            bases = orthonormalize(group.bases().detach().cpu().double())
            members = [c for c in cells if c.batch == name]
            for i, cell in enumerate(members):
                saved[f"s{seed}_{cell.key}_dae"] = bases[:, i].contiguous()
                selection[f"s{seed}_{cell.key}"] = losses[name][:, i].tolist()
        seconds["dae_seconds"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        for cell in cells:
            x = worlds[f"s{seed}_{cell.key}_x"].numpy()
            ks = lowrank.k_subspaces(
                x, cell.k, cell.d, seed, restarts=base.restarts, iters=base.iters
            )
            saved[f"s{seed}_{cell.key}_ks"] = torch.from_numpy(ks)
        seconds["ks_seconds"] += time.perf_counter() - t0
        ctx.progress(f"seed {seed}: {len(cells)} cells fitted")
    ctx.save("bases", saved, kind="models")
    write_json(ctx.out / "selection.json", {"losses": selection, "a_norm": a_norm, **seconds})
    return StepOutput(metrics=seconds)


def _fit_full(ctx: StepContext[MolrgDiffusionConfig]) -> StepOutput:
    """The full fit step: the low-rank DAE grid, then the U-Nets on the worlds of
    ``unet.ambient`` (one joint run per seed) and the pretrained CIFAR-10 DAE's Jacobian ranks."""
    from subspacelab.studies.molrg_diffusion import full

    out = _fit(ctx)
    u, j = ctx.cfg.unet, ctx.cfg.jacobian
    if u is None or j is None:
        raise ValueError("molrg_diffusion's full profile needs its unet and jacobian sections")
    worlds = ctx.load("worlds", kind="data")
    cells = [c for c in _cells(ctx) if c.n in u.ambient]
    scores: dict[str, dict[str, float]] = {}
    for seed in ctx.seeded():
        keys = [f"s{seed}_{c.key}" for c in cells]
        scores |= full.unet_scores(ctx, u, worlds, keys, seed)
        ctx.progress(f"seed {seed}: {len(keys)} U-Nets trained and sampled")
    write_json(ctx.out / "unet.json", scores)
    write_json(ctx.out / "jacobian.json", full.jacobian_ranks(j, ctx.device, ctx.progress))
    return out


def _evaluate_full(ctx: StepContext[MolrgDiffusionConfig]) -> Report:
    """The mini report plus the U-Nets' generalisation scores per cell and the Jacobian ranks."""
    report = _evaluate(ctx)
    scores = read_json(ctx.inputs["fit"] / "unet.json")
    ranks = read_json(ctx.inputs["fit"] / "jacobian.json")
    cells = sorted(
        {k.split("_", 1)[1] for k in scores}, key=lambda k: astuple(core.Cell.from_key(k))
    )
    metrics = dict(report.metrics)
    rows = ["| cell | on ∪ span(U*) | near-copy | generalisation score |", "|---|---|---|---|"]
    for cell in cells:
        for part in ("on", "copy", "score"):
            metrics[f"{cell}/unet/{part}"] = [scores[f"s{s}_{cell}"][part] for s in ctx.seeds]
        got = [Stat(tuple(metrics[f"{cell}/unet/{p}"])).fmt(2) for p in ("on", "copy", "score")]
        rows.append(f"| {cell} | " + " | ".join(got) + " |")
    jac = ["| DDPM step t | σ_t | numerical rank of ∂x̂₀/∂x_t (of 3072) |", "|---|---|---|"]
    for t, r in ranks.items():
        metrics[f"jacobian/t{t}/rank"] = list(r["ranks"])
        jac.append(f"| {t} | {r['sigma']:.3f} | {Stat(tuple(r['ranks'])).fmt(1)} |")
    tables = {
        **report.tables,
        "U-Net generalisation on MoLRG worlds (mean ± sd over seeds)": "\n".join(rows),
        "Jacobian rank of the pretrained CIFAR-10 DAE (over images)": "\n".join(jac),
    }
    return replace(report, metrics=metrics, tables=tables)


def _retract(net: torch.nn.Module) -> None:
    net.retract()  # type: ignore[operator]


def _count(groups: dict[str, core.GroupDAEs]) -> int:
    return sum(2 * g.a.shape[0] * g.restarts for g in groups.values())


def _evaluate(ctx: StepContext[MolrgDiffusionConfig]) -> Report:
    cells = _cells(ctx)
    worlds = ctx.load("worlds", step="data", kind="data")
    fitted = ctx.load("bases", step="fit", kind="models")
    sel = read_json(ctx.inputs["fit"] / "selection.json")
    metrics: dict[str, list[float]] = {}

    def put(name: str, value: float) -> None:
        metrics.setdefault(name, []).append(float(value))

    for seed in ctx.seeds:
        for cell in cells:
            tag = f"s{seed}_{cell.key}"
            truth = worlds[f"{tag}_truth"].numpy()
            dae = fitted[f"{tag}_dae"].numpy()  # (arms, R, K, n, d)
            ks = fitted[f"{tag}_ks"].numpy()
            chosen, _ = core.select(dae[:, None], np.asarray(sel["losses"][tag])[:, None])
            for a, arm in enumerate(core.ARMS):
                put(f"{cell.key}/{arm}/e", lowrank.subspace_error(chosen[a, 0], truth))
                put(
                    f"{cell.key}/{arm}/e_oracle",
                    min(lowrank.subspace_error(u, truth) for u in dae[a]),
                )
            put(f"{cell.key}/ks/e", lowrank.subspace_error(ks, truth))
            put(f"{cell.key}/qr_ks/dist", lowrank.subspace_error(chosen[0, 0], ks))
        _world_row(metrics, cells, seed, worlds, fitted, sel)
    metrics["qr/A_column_norm"] = [float(sel["a_norm"][str(s)]) for s in ctx.seeds]
    for name in ("dae_seconds", "ks_seconds"):
        metrics[name] = [float(sel[name])] * len(ctx.seeds)
    m = Metrics(metrics)
    return Report(
        metrics=metrics,  # type: ignore[arg-type]
        tables={**_tables(m, cells, ctx.cfg), GROUP_TABLE: group_table(WORLD_ROW, metrics)},
        figures={"success": _figure(m, cells)},
        curves=sample_curves(m, cells),
    )


CURVE_ARMS = (*core.ARMS, "ks")


def sample_curves(m: Metrics, cells: list[core.Cell]) -> dict[str, list[dict[str, float]]]:
    """The DVC curves: per arm, the success rate (e < 0.1) and the mean subspace error e
    against N_k / d (mean over the grid's cells of that ratio, all K, n and d, and seeds)."""
    ratios = sorted({round(c.nk / c.d, 6) for c in cells})
    at = {r: [c for c in cells if round(c.nk / c.d, 6) == r] for r in ratios}

    def success(arm: str, r: float) -> float:
        return float(np.mean([_success(m, arm, c) for c in at[r]]))

    def error(arm: str, r: float) -> float:
        return float(np.mean([m[f"{c.key}/{arm}/e"].values for c in at[r]]))

    return {
        name: [{"nk_over_d": r} | {arm: f(arm, r) for arm in CURVE_ARMS} for r in ratios]
        for name, f in (("success_vs_samples", success), ("error_vs_samples", error))
    }


def _world_row(
    metrics: dict[str, list[float]],
    cells: list[core.Cell],
    seed: int,
    worlds: dict[str, torch.Tensor],
    fitted: dict[str, torch.Tensor],
    sel: dict,
) -> None:
    """The group table's row: captured energy at N_k = 2d, largest K, smallest n, mean over d."""
    k, n = max(c.k for c in cells), min(c.n for c in cells)
    row = [c for c in cells if c.k == k and c.n == n and c.nk == 2 * c.d]
    if not row:
        raise ValueError("the grid has no N_k = 2d cell (n_multiples must include 2)")
    got, base = [], []
    for cell in row:
        tag = f"s{seed}_{cell.key}"
        truth = worlds[f"{tag}_truth"].numpy()
        dae = fitted[f"{tag}_dae"].numpy()
        chosen, _ = core.select(dae[:, None], np.asarray(sel["losses"][tag])[:, None])
        got.append(lowrank.captured_energy(chosen[0, 0], truth))
        base.append(lowrank.captured_energy(fitted[f"{tag}_ks"].numpy(), truth))
    metrics.setdefault("world/truth", []).append(1.0)
    metrics.setdefault("world/recovered", []).append(float(np.mean(got)))
    metrics.setdefault("world/error", []).append(1.0 - float(np.mean(got)))
    metrics.setdefault("world/baseline_error", []).append(1.0 - float(np.mean(base)))


# ---------------------------------------------------------------- metrics -> grid helpers


def _grid(m: Metrics) -> list[core.Cell]:
    """The cells present in the metrics (those with a K-subspaces error ``<cell>/ks/e``)."""
    keys = m.select("*/ks/e")
    if not keys:
        raise ValueError("no <cell>/ks/e metrics: not a molrg_diffusion report")
    out = [core.Cell.from_key(name.split("/")[0]) for name in keys]
    return sorted(out, key=lambda c: (c.k, c.n, c.d, c.nk))


def _success(m: Metrics, method: str, cell: core.Cell) -> np.ndarray:
    return np.asarray(m[f"{cell.key}/{method}/e"].values) < SUCCESS


def _share(m: Metrics, method: str, cells: list[core.Cell]) -> Stat:
    """Per seed: the share of ``cells`` where ``method`` recovered the truth."""
    return Stat(tuple(np.mean([_success(m, method, c) for c in cells], axis=0).tolist()))


def threshold(m: Metrics, method: str, k: int, n: int, d: int) -> Stat:
    """Per seed: N_k*(d), the smallest grid N_k from which ``method`` succeeds at every larger
    grid N_k too; a seed that fails at the largest is put one step (d) beyond the grid."""
    cells = [c for c in _grid(m) if (c.k, c.n, c.d) == (k, n, d)]
    ok = np.stack([_success(m, method, c) for c in cells])  # (cells, seeds)
    out = []
    for s in range(ok.shape[1]):
        nstar = cells[-1].nk + d
        for i in range(len(cells) - 1, -1, -1):
            if not ok[i, s]:
                break
            nstar = cells[i].nk
        out.append(float(nstar))
    return Stat(tuple(out))


def _slope(xs: list[int], ys: list[Stat]) -> Stat:
    """Per seed: least-squares slope of y over x."""
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray([s.values for s in ys])  # (len(xs), seeds)
    xc = x - x.mean()
    return Stat(tuple((xc @ (y - y.mean(axis=0))) / (xc @ xc)))


# ---------------------------------------------------------------- claims


def _check_r1(m: Metrics) -> ClaimResult:
    cells = _grid(m)
    n0 = cells[0].n
    tests: list[Condition] = []
    for k in sorted({c.k for c in cells}):
        for d in sorted({c.d for c in cells}):
            here = [c for c in cells if (c.k, c.n, c.d) == (k, n0, d)]
            below = [c for c in here if c.nk < d]
            above = [c for c in here if c.nk >= 2 * d]
            tests.append(on_mean(f"K={k} d={d} success N_k<d", _share(m, "qr", below), "<=", 0.2))
            tests.append(on_mean(f"K={k} d={d} success N_k>=2d", _share(m, "qr", above), ">=", 0.8))
    return decide(*tests)


def _check_r2(m: Metrics) -> ClaimResult:
    cells = _grid(m)
    ns, dims = sorted({c.n for c in cells}), sorted({c.d for c in cells})
    tests: list[Condition] = []
    measured: dict[str, float | Stat] = {}
    for k in sorted({c.k for c in cells}):
        stars = {n: [threshold(m, "qr", k, n, d) for d in dims] for n in ns}
        slope = _slope(dims, stars[ns[0]])
        tests.append(on_mean(f"K={k} slope of N_k*(d), n={ns[0]}", slope, ">=", 0.7))
        tests.append(on_mean(f"K={k} slope of N_k*(d), n={ns[0]}", slope, "<=", 2.5))
        base = np.sum([s.values for s in stars[ns[0]]], axis=0)
        for n in ns[1:]:
            moved = Stat(tuple(np.sum([s.values for s in stars[n]], axis=0) / base))
            name = f"K={k} Σ_d N_k*(n={n}) / Σ_d N_k*(n={ns[0]})"
            tests.append(on_mean(name, moved, "<=", math.sqrt(2)))
            tests.append(on_mean(name, moved, ">=", 1 / math.sqrt(2)))
        for d, s in zip(dims, stars[ns[0]], strict=True):
            measured[f"K{k}_N*_d{d}_n{ns[0]}"] = s
        ks = [threshold(m, "ks", k, ns[0], d) for d in dims]
        measured[f"K{k}_k_subspaces_slope_n{ns[0]}"] = _slope(dims, ks)
    return decide(*tests, **measured)


def _check_r3(m: Metrics) -> ClaimResult:
    cells = _grid(m)
    ks_ok = np.stack([_success(m, "ks", c) for c in cells])  # (cells, seeds)
    agree = np.stack([np.asarray(m[f"{c.key}/qr_ks/dist"].values) < MATCH for c in cells])
    shares = [
        float(agree[ks_ok[:, s], s].mean()) for s in range(ks_ok.shape[1]) if ks_ok[:, s].any()
    ]
    name = "share of K-subspaces successes where the selected DAE (QR) matches it"
    if not shares:  # K-subspaces never succeeded: nothing to compare, the claim is vacuous
        return decide(on_mean(name + " (no K-subspaces success)", [1.0], ">=", 1.0))
    return decide(
        on_mean(name, shares, ">=", 1.0),
        ks_successes=float(ks_ok.sum()),
    )


def _check_p1(m: Metrics) -> ClaimResult:
    cells = [c for c in _grid(m) if c.nk >= 2 * c.d]
    qr, ret = _share(m, "qr", cells), _share(m, "retraction", cells)
    return decide(
        on_mean("success share QR-in-forward − retraction (N_k >= 2d)", gap(qr, ret), ">", 0.0),
        qr_share=qr,
        retraction_share=ret,
    )


# ---------------------------------------------------------------- tables and figure


def _label(cell: core.Cell) -> str:
    if cell.nk % cell.d == 0 and cell.nk >= 2 * cell.d:
        return f"{cell.nk // cell.d}d"
    off = cell.nk - cell.d
    return "d" if off == 0 else f"d{off:+d}"


def _tables(m: Metrics, cells: list[core.Cell], cfg: MolrgDiffusionConfig) -> dict[str, str]:
    labels = list(dict.fromkeys(_label(c) for c in cells))
    head = "| K | n | d | " + " | ".join(f"N_k={lab}" for lab in labels) + " |"
    sep = "|---|---|---|" + "---|" * len(labels)
    rows, errs = [head, sep], [head, sep]
    for k, n, d in dict.fromkeys((c.k, c.n, c.d) for c in cells):
        here = {_label(c): c for c in cells if (c.k, c.n, c.d) == (k, n, d)}
        rates = []
        means = []
        for lab in labels:
            c = here.get(lab)
            if c is None:
                rates.append("")
                means.append("")
                continue
            r = [float(_success(m, a, c).mean()) for a in ("qr", "retraction", "ks")]
            rates.append(f"{c.nk}: {r[0]:.2f} / {r[1]:.2f} / {r[2]:.2f}")
            e = m.family(f"{c.key}/{{arm}}/e")
            means.append(
                f"{e['qr'].mean:.3f} / {e['retraction'].mean:.3f} / "
                f"{m[f'{c.key}/qr/e_oracle'].mean:.3f} / {e['ks'].mean:.3f}"
            )
        rows.append(f"| {k} | {n} | {d} | " + " | ".join(rates) + " |")
        errs.append(f"| {k} | {n} | {d} | " + " | ".join(means) + " |")
    dae = cfg.dae
    deviations = "\n".join(
        [
            "| what | spec | here | why |",
            "|---|---|---|---|",
            "| noise in the DSM loss | ε ~ N(0, I_n) | h ~ N(0, I_Kd) with Uᵀε = L h, G = LLᵀ "
            "| the same loss for every U (exact reparametrisation, tested draw for draw); cost "
            "per draw independent of n |",
            "| noise draws | independent per model | shared by a world's restarts and arms | "
            "common random numbers: the arms are compared on the same noise |",
            "| λ_t, t-law | not fixed | λ = 1, σ log-uniform in "
            f"[{dae.sigma_min}, {dae.sigma_max}] | §6's "
            "prototype setting, logged as the spec's pitfall asks |",
            "| learning rate | not given | Adam lr "
            f"{dae.lr}, both arms, both started from one orthonormal U | one "
            "start and one scale for a fair comparison of the two parametrisations |",
            "| N_k*(d) | the 50 % crossing over seeds | per seed: the smallest grid N_k from "
            "which every larger grid N_k succeeds (one grid step, d, beyond the grid if none) | "
            "verdicts need per-seed values |",
            "| 'does not move when n doubles' | no tolerance | Σ_d N_k*(2n)/Σ_d N_k*(n) in "
            "[1/√2, √2] | the geometric midpoint between 'independent of n' (1) and "
            "'∝ n' (2) |",
            "| seeds | 5 (§6 plan) | the mini profile's seeds | the two parametrisations x 4 "
            "restarts x 60 cells cost ≈ 5–6 CPU-min per 3 seeds at 1 thread "
            "(benchmarks/worlds_molrg.py); 3 seeds keep the chain near the lab's budget |",
            "| R4 (MLP denoiser, DDIM, generalisation score) | optional | not run | optional in "
            "§6; the CPU budget goes to the two parametrisations |",
            "| full profile (§7) | U-Net over (N_k, d_k) grids; EDM CIFAR-10 Jacobian rank | "
            "larger MoLRG worlds (n up to 192, d up to 8, K up to 3, random subspaces) with "
            "the low-rank DAE; small EDM-preconditioned U-Nets (written here) on the worlds "
            "as images, scored by the spec's generalisation score | the trainMoLRG ddpmpp "
            "network is EDM code (CC BY-NC-SA), not copied |",
            "| pretrained DAE (§7) | EDM CIFAR-10 checkpoint | diffusers DDPM-CIFAR10 "
            "(ε-prediction, x̂₀ from ε̂) at a pinned commit, safetensors weights pinned by "
            "SHA-256 | EDM's .pkl checkpoints are pickles: never loaded |",
        ]
    )
    return {
        "Success rate e < 0.1 per N_k (QR-in-forward DAE / Adam+retraction DAE / K-subspaces)": (
            "\n".join(rows)
        ),
        "Mean subspace error e (DAE QR selected / retraction selected / QR best restart by "
        "truth / K-subspaces)": "\n".join(errs),
        "Deviations from the spec": deviations,
    }


def _figure(m: Metrics, cells: list[core.Cell]) -> Figure:
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys((c.k, c.n) for c in cells))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    styles: dict[str, tuple[str, Callable[[core.Cell], float]]] = {
        "qr": ("-", lambda c: float(_success(m, "qr", c).mean())),
        "retraction": (":", lambda c: float(_success(m, "retraction", c).mean())),
        "ks": ("--", lambda c: float(_success(m, "ks", c).mean())),
    }
    for ax, (k, n) in zip(axes[0], panels, strict=True):
        for j, d in enumerate(sorted({c.d for c in cells})):
            here = [c for c in cells if (c.k, c.n, c.d) == (k, n, d)]
            for arm, (ls, f) in styles.items():
                ax.plot(
                    [c.nk / d for c in here],
                    [f(c) for c in here],
                    ls,
                    color=f"C{j}",
                    label=f"d={d} {arm}" if ax is axes[0][0] else None,
                )
        ax.axvline(1.0, color="grey", lw=0.5)
        ax.set(title=f"K={k}, n={n}", xlabel="N_k / d", ylabel="success rate (e < 0.1)")
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    return fig


STUDY = Study(
    slug=SLUG,
    title="Diffusion Models Learn Low-Dimensional Distributions via Subspace Clustering",
    arxiv="2409.02426",
    group="synthetic worlds",
    config=MolrgDiffusionConfig,
    steps=(
        Step("data", _data, reads=("world",), description="seeded MoLRG worlds per grid cell"),
        Step(
            "fit",
            _fit,
            needs=("data",),
            reads=("world", "dae", "baseline", "unet", "jacobian"),
            kind="models",
            description="low-rank DAEs (QR-in-forward and retraction, restarts), K-subspaces "
            "(full: also U-Nets, the pretrained DAE's Jacobian ranks)",
            full=_fit_full,
        ),
        Step(
            "evaluate",
            _evaluate,
            needs=("data", "fit"),
            reads=("world", "dae"),
            kind="report",
            description="subspace errors, success rates, N_k*(d), claims R1-R3, P1",
            full=_evaluate_full,
        ),
    ),
    claims=(
        Claim(
            "R1",
            "success rate (e < 0.1) of the loss-selected DAE (QR inside forward) ≤ 0.2 for "
            "N_k < d and ≥ 0.8 for N_k ≥ 2d, for every d and K (smallest n)",
            "a phase transition from failure to generalisation as N_k passes ~d_k",
            _check_r1,
        ),
        Claim(
            "R2",
            "the crossing N_k*(d) grows linearly in d (per-seed slope in [0.7, 2.5]) and does "
            "not move when n doubles (ratio in [1/√2, √2])",
            "the samples needed scale linearly with the intrinsic dimension d_k, not with n",
            _check_r2,
        ),
        Claim(
            "R3",
            "whenever K-subspaces succeeds, the loss-selected DAE subspaces equal the "
            "K-subspaces ones (projector distance < 0.1)",
            "minimising the diffusion loss ≡ subspace clustering (PCA for K = 1, "
            "K-subspaces for K ≥ 2)",
            _check_r3,
        ),
        Claim(
            "P1",
            "spec §6 prototype: 'Adam on U, then a QR retraction' failed where U = QR(A) inside "
            "forward worked — QR-in-forward succeeds more often at N_k ≥ 2d (paired seeds)",
            "a parametrisation trap of the spec's prototype, not a claim of the paper",
            _check_p1,
        ),
    ),
    curves=(
        Curve(
            "success_vs_samples",
            x="nk_over_d",
            y=CURVE_ARMS,
            title="success rate (subspace error e < 0.1) vs N_k / d (mean over cells, seeds)",
        ),
        Curve(
            "error_vs_samples",
            x="nk_over_d",
            y=CURVE_ARMS,
            title="subspace error e vs N_k / d (mean over cells and seeds)",
        ),
    ),
)
