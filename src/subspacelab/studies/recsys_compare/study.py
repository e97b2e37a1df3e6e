"""recsys_compare: the recommendation and CTR group side by side, read from the three studies'
outputs (no new training).

* CTR — every embedding scheme of unified_embedding (per-field equal split, per-field ∝
  vocabulary, multiplexed, Unified Embedding, at each budget; Coleman et al., arXiv:2305.12102)
  and every arm of optfs (the full-feature DeepFM backbone, OptFS value gates and the field-gate
  baseline at each λ and at the λ chosen on validation AUC, the OptFS mask re-initialised; Lyu et
  al., arXiv:2301.10909): test AUC against the parameters each trained model stores, with the
  Pareto frontier of the mean points. Whether the two studies trained on the same log is checked
  on the logs themselves; when they differ (they do in the shipped profiles: the optfs log has
  value-level signal and 6 noise fields), each log gets its own frontier and the table says so,
  since AUCs of different logs are not comparable.
* Full ranking — cm3's recommenders (LightGCN-BPR, DirectAU-style, CM³ and its ablations; Zhou,
  Wang, Shen 2025, arXiv:2508.01226) with Recall@K and NDCG@K, K = 10, 20.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from subspacelab.api import Curve, Report, Stat, Step, StepContext, Study, load_tensors, read_json
from subspacelab.studies.cm3.core import ARMS as CM3_ARMS
from subspacelab.studies.recsys_compare.config import RecsysCompareConfig
from subspacelab.studies.unified_embedding.core import SCHEMES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SLUG = "recsys_compare"
CTR_STUDIES = ("unified_embedding", "optfs")
RANK_COLUMNS = ("recall_10", "ndcg_10", "recall_20", "ndcg_20")


@dataclass(frozen=True)
class Point:
    """One trained CTR model family: per-seed stored parameters and test AUC. ``key`` is the
    family's metric prefix (``<study>/<arm>[/<setting>]``)."""

    key: str
    label: str
    study: str
    params: tuple[float, ...]
    auc: tuple[float, ...]


def pareto_front(params: list[float], auc: list[float]) -> list[bool]:
    """Which points are on the Pareto frontier: no other point has at most as many parameters
    and at least the AUC, strictly better in one of the two."""
    p, a = np.asarray(params, float), np.asarray(auc, float)
    dominated = ((p[None, :] <= p[:, None]) & (a[None, :] >= a[:, None])) & (
        (p[None, :] < p[:, None]) | (a[None, :] > a[:, None])
    )
    return (~dominated.any(axis=1)).tolist()


def seed_rows(doc: dict, seeds: list[int], study: str, field: str) -> list[dict[str, float]]:
    """Each seed's result row of a study's ``results.json``; a clear error for a missing seed."""
    rows = doc["results"]
    missing = [s for s in seeds if f"seed{s}" not in rows]
    if missing:
        have = sorted(int(k.removeprefix("seed")) for k in rows)
        raise ValueError(
            f"{study}'s results have no seed(s) {missing} (it ran {have}); set "
            f"{SLUG}.<profile>.{field} to seeds it ran"
        )
    return [rows[f"seed{s}"] for s in seeds]


def ue_points(doc: dict, seeds: list[int]) -> list[Point]:
    """unified_embedding's schemes at every budget (its own parameter counts: table rows x d,
    per-field projections and the MLP)."""
    rows = seed_rows(doc, seeds, "unified_embedding", "seeds")
    out = []
    for budget in doc["budgets"]:
        for s in SCHEMES:
            k = f"{s}/{budget}"
            out.append(
                Point(
                    f"unified_embedding/{k}",
                    f"{s.replace('_', ' ')} @{budget} rows",
                    "unified_embedding",
                    tuple(float(r[f"{k}/params"]) for r in rows),
                    tuple(float(r[f"{k}/auc"]) for r in rows),
                )
            )
    return out


def deepfm_params(state: dict[str, torch.Tensor], member: int) -> float:
    """Parameters a retrained (Gated)DeepFM stores: the embedding and first-order rows of the
    ids its hard mask keeps (all ids without one), the MLP and the bias; gates are not stored."""
    emb = state[f"{member}.emb.weight"]
    hard = state.get(f"{member}.hard")
    rows = int((hard > 0).sum()) if hard is not None and hard.numel() else emb.shape[0]
    dense = sum(v.numel() for k, v in state.items() if k.startswith(f"{member}.mlp."))
    return float(rows * (emb.shape[1] + 1) + dense + state[f"{member}.bias"].numel())


def optfs_points(doc: dict, states: list[dict[str, torch.Tensor]], seeds: list[int]) -> list[Point]:
    """optfs's arms. Members of each seed's file: the backbone, the OptFS retrains (one per λ),
    the field-gate retrains, the re-initialised OptFS masks."""
    rows = seed_rows(doc, seeds, "optfs", "seeds")
    lambdas, n_l = doc["lambdas"], len(doc["lambdas"])

    def point(key: str, label: str, metric: str, members: list[int]) -> Point:
        params = tuple(deepfm_params(st, j) for st, j in zip(states, members, strict=True))
        return Point(key, label, "optfs", params, tuple(float(r[metric]) for r in rows))

    best = {arm: [int(r[f"{arm}/lambda_index"]) for r in rows] for arm in ("optfs", "field")}
    fixed = [0] * len(rows)
    out = [point("optfs/backbone", "DeepFM backbone (all features)", "backbone/auc", fixed)]
    for i, lam in enumerate(lambdas):
        out.append(
            point(f"optfs/optfs/l{i}", f"OptFS λ={lam:g}", f"optfs/l{i}/auc", [1 + i] * len(rows))
        )
        out.append(
            point(
                f"optfs/field/l{i}",
                f"field gates λ={lam:g}",
                f"field/l{i}/auc",
                [1 + n_l + i] * len(rows),
            )
        )
    chosen = "λ by validation AUC"
    out += [
        point("optfs/optfs", f"OptFS ({chosen})", "optfs/auc", [1 + i for i in best["optfs"]]),
        point(
            "optfs/field",
            f"field gates ({chosen})",
            "field/auc",
            [1 + n_l + i for i in best["field"]],
        ),
        point(
            "optfs/reinit",
            f"OptFS mask, re-initialised ({chosen})",
            "reinit/auc",
            [1 + 2 * n_l + i for i in best["optfs"]],
        ),
    ]
    return out


def describe_log(meta: dict) -> str:
    """A log's shape in words, from its ``log.json``."""
    vocab, splits = meta["vocab"], meta["splits"]
    return (
        f"{len(vocab)} fields, vocabularies {min(vocab)}..{max(vocab)}, "
        f"{'/'.join(str(s) for s in splits)} train/val/test rows"
    )


def same_log(ue_data: Path, optfs_data: Path) -> bool:
    """Whether the two studies trained on the identical log (ids, labels and splits)."""
    a, b = read_json(ue_data / "log.json"), read_json(optfs_data / "log.json")
    if a["splits"] != b["splits"] or a["vocab"] != b["vocab"]:
        return False
    ta, _ = load_tensors(ue_data / "log.safetensors", study="unified_embedding", kind="data")
    tb, _ = load_tensors(optfs_data / "log.safetensors", study="optfs", kind="data")
    return torch.equal(ta["x"], tb["x"]) and torch.equal(ta["y"], tb["y"])


def ctr_table(points: list[Point], groups: dict[str, str], front: dict[str, bool]) -> str:
    """Markdown: one row per point, ordered by log and parameters; ``groups`` maps a study to its
    log's name, ``front`` a point's key to whether it is on its log's frontier."""
    lines = [
        "| log | method | from | parameters (mean) | test AUC (mean ± std) | Pareto |",
        "|---|---|---|---|---|---|",
    ]
    for p in sorted(points, key=lambda p: (groups[p.study], np.mean(p.params))):
        lines.append(
            f"| {groups[p.study]} | {p.label} | {p.study} | {np.mean(p.params):,.0f} | "
            f"{Stat(p.auc).fmt(4)} | {'yes' if front[p.key] else ''} |"
        )
    return "\n".join(lines)


def _figure(points: list[Point], groups: dict[str, str], front: dict[str, bool]) -> Figure:
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    logs = sorted(set(groups.values()))
    fig = Figure(figsize=(6.5 * len(logs), 4.6))
    axes = np.atleast_1d(fig.subplots(1, len(logs)))
    for ax, log in zip(axes, logs, strict=True):
        mine = [p for p in points if groups[p.study] == log]
        families: dict[str, list[Point]] = {}
        for p in mine:
            families.setdefault(p.label.split(" @")[0].split(" λ=")[0], []).append(p)
        for name, fam in families.items():
            ax.errorbar(
                [np.mean(p.params) for p in fam],
                [np.mean(p.auc) for p in fam],
                yerr=[Stat(p.auc).std for p in fam],
                fmt="o",
                ms=4,
                capsize=2,
                label=name,
            )
        edge = sorted((np.mean(p.params), np.mean(p.auc)) for p in mine if front[p.key])
        ax.step(*zip(*edge, strict=True), where="post", color="black", lw=1, label="frontier")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # decades only: no overlapping labels
        ax.set_xlabel("stored parameters (embeddings + dense towers)")
        ax.set_ylabel("test AUC (mean ± std over seeds)")
        ax.set_title(f"log: {log}", fontsize=9)
        ax.legend(fontsize=7)
    return fig


def cm3_table(doc: dict, seeds: list[int]) -> tuple[str, dict[str, list[float]]]:
    """Markdown table of cm3's recommenders and the per-seed metrics behind it."""
    rows = seed_rows(doc, seeds, "cm3", "cm3_seeds")
    metrics: dict[str, list[float]] = {}
    lines = [
        "| recommender | " + " | ".join(c.replace("_", "@") for c in RANK_COLUMNS) + " |",
        "|---|" + "---|" * len(RANK_COLUMNS),
    ]
    for arm in CM3_ARMS:
        cells = []
        for c in RANK_COLUMNS:
            values = [float(r[f"{arm}/{c}"]) for r in rows]
            metrics[f"cm3/{arm}/{c}"] = values
            cells.append(Stat(tuple(values)).fmt(4))
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines), metrics


def _report(ctx: StepContext[RecsysCompareConfig]) -> Report:
    ue_doc = read_json(ctx.inputs["unified_embedding.fit"] / "results.json")
    op_doc = read_json(ctx.inputs["optfs.fit"] / "results.json")
    cm3_doc = read_json(ctx.inputs["cm3.fit"] / "results.json")
    cm3_text, cm3_metrics = cm3_table(cm3_doc, ctx.cfg.cm3_seeds)  # seeds checked before loading
    seed_rows(op_doc, ctx.seeds, "optfs", "seeds")
    states = [ctx.load(f"seed{s}", step="optfs.fit", kind="model/deepfm") for s in ctx.seeds]
    points = ue_points(ue_doc, ctx.seeds) + optfs_points(op_doc, states, ctx.seeds)
    ue_data, op_data = ctx.inputs["unified_embedding.data"], ctx.inputs["optfs.data"]
    shared = same_log(ue_data, op_data)
    groups = {s: "shared" for s in CTR_STUDIES} if shared else {s: f"{s}'s" for s in CTR_STUDIES}
    front: dict[str, bool] = {}
    for log in set(groups.values()):
        mine = [p for p in points if groups[p.study] == log]
        flags = pareto_front([np.mean(p.params) for p in mine], [np.mean(p.auc) for p in mine])
        front.update({p.key: f for p, f in zip(mine, flags, strict=True)})
    logs = {
        s: describe_log(read_json(d / "log.json"))
        for s, d in zip(CTR_STUDIES, (ue_data, op_data), strict=True)
    }
    if shared:
        same = f"Both CTR studies trained on the same log ({logs['unified_embedding']})."
    else:
        same = (
            "**The two CTR studies trained on different logs**: unified_embedding's "
            f"({logs['unified_embedding']}) and optfs's ({logs['optfs']}). AUCs are comparable "
            "only within a log: each log has its own Pareto frontier, and no row of one log is "
            "ranked against the other's."
        )
    notes = "\n".join(
        [
            "| what | note |",
            "|---|---|",
            f"| logs | {same} |",
            "| parameters | unified_embedding: its own count (table rows x d, per-field "
            "projections, MLP). optfs: what each retrained DeepFM stores — embedding and "
            "first-order rows of the ids its hard mask keeps (unseen ids whose gate stays "
            "open count as kept), MLP and bias; the gates are not stored. The towers differ "
            "between the studies (projection + FM + MLP vs DeepFM), as in their papers. |",
            "| Pareto | on the mean points over seeds, within a log; a descriptive frontier, "
            "not a paired test (the studies' claims carry those) |",
            "| recommenders | cm3's full ranking on its own synthetic catalogue (training and "
            "validation items masked); not a CTR log |",
        ]
    )
    metrics: dict[str, list[float] | float] = {"same_log": float(shared)}
    for p in points:
        metrics[f"{p.key}/auc"] = list(p.auc)
        metrics[f"{p.key}/params"] = list(p.params)
    for study in CTR_STUDIES:
        metrics[f"{study}/frontier_points"] = float(
            sum(front[p.key] for p in points if p.study == study)
        )
    metrics.update(cm3_metrics)
    curves = {}  # each study's own frontier (the table's, unless the log is shared)
    for study in CTR_STUDIES:
        mine = sorted((p for p in points if p.study == study), key=lambda p: np.mean(p.params))
        flags = pareto_front([np.mean(p.params) for p in mine], [np.mean(p.auc) for p in mine])
        curves[f"frontier_{study}"] = [
            {"params": float(np.mean(p.params)), "auc": float(np.mean(p.auc))}
            for p, f in zip(mine, flags, strict=True)
            if f
        ]
    return Report(
        metrics=metrics,
        tables={
            "CTR: test AUC against stored parameters": ctr_table(points, groups, front),
            "Recommenders: full-ranking test metrics (mean ± std)": cm3_text,
            "Notes": notes,
        },
        figures={"pareto": _figure(points, groups, front)},
        curves=curves,
    )


STUDY = Study(
    slug=SLUG,
    title="Recommendation and CTR: embedding schemes and feature selection on AUC against "
    "parameters, recommenders on Recall/NDCG@20",
    arxiv="2305.12102",
    group="recommendation and CTR",
    config=RecsysCompareConfig,
    kind="comparison",
    steps=(
        Step(
            "report",
            _report,
            reads=("cm3_seeds",),
            kind="report",
            uses=(
                "unified_embedding.data",
                "unified_embedding.fit",
                "optfs.data",
                "optfs.fit",
                "cm3.fit",
            ),
            description="AUC vs parameters with Pareto frontiers; cm3's Recall/NDCG@20",
        ),
    ),
    claims=(),
    curves=(
        Curve(
            "frontier_unified_embedding",
            x="params",
            y="auc",
            title="Pareto frontier of unified_embedding's schemes (test AUC vs parameters)",
        ),
        Curve(
            "frontier_optfs",
            x="params",
            y="auc",
            title="Pareto frontier of optfs's arms (test AUC vs parameters)",
        ),
    ),
    headline=(
        "same_log",
        "*/frontier_points",
        "unified_embedding/*/auc",
        "optfs/optfs/auc",
        "cm3/*/ndcg_20",
    ),
)
