"""geo_sae study: scenes -> fit -> evaluate (Nagar et al., Adv. Space Res. 2024).

* scenes — mini: one procedural scene per mixing regime and seed; full: a Sentinel-2 scene
  export and its rock-unit raster, fetched with pinned SHA-256 and read by
  :func:`subspacelab.clustering.datasets.load_scene`.
* fit — per scene: min-max scaling, then PCA, the canonical AE and the feature-concatenation
  stacked AE, all three at the same code dimension (PCA keeps as many components as the codes
  have); the autoencoders train on every pixel of their scene (each stage trains every scene's
  AE in one Lightning run); k-means (k fixed) on each code; 7×7 majority filter.
* evaluate — ARI/NMI/ACC against the units, over seeds; the claims on paired per-seed
  differences.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import numpy as np

from subspacelab.api import (
    Claim,
    ClaimResult,
    Curve,
    Metrics,
    Report,
    SeedMetrics,
    Step,
    StepContext,
    StepOutput,
    Study,
    decide,
    gap,
    on_mean,
    read_json,
    seed_all,
    write_json,
)
from subspacelab.clustering import evaluate, kmeans_baseline
from subspacelab.clustering.datasets import load_scene
from subspacelab.clustering.plots import score_bars
from subspacelab.data.download import Resource, fetch
from subspacelab.studies.geo_sae import core
from subspacelab.studies.geo_sae.config import GeoSAEConfig, ModelConfig

if TYPE_CHECKING:
    from subspacelab.api import TrainEnv

SLUG = "geo_sae"
METHODS = ("pca", "ae", "sae")


def _scenes(ctx: StepContext[GeoSAEConfig]) -> StepOutput:
    d = ctx.cfg.data
    names: list[str] = []
    if d.source == "procedural":
        for regime in d.regimes:
            for seed in ctx.seeds:
                s = core.make_scene(d.size, d.n_units, d.n_bands, regime, d.noise, seed)
                ctx.save(f"{regime}_seed{seed}", {"bands": s.bands, "units": s.units}, kind="scene")
            names.append(regime)
    else:
        root = ctx.root / d.scene_dir
        scene = fetch(
            Resource(f"{d.scene_url}/{d.scene_file}", d.scene_file, sha256=d.scene_sha256),
            root,
            ctx.progress,
        )
        units = None
        if d.units_file:
            units = fetch(
                Resource(f"{d.scene_url}/{d.units_file}", d.units_file, sha256=d.units_sha256),
                root,
                ctx.progress,
            )
        bands, unit_map = load_scene(scene, units)
        for seed in ctx.seeds:  # one scene; seeds vary the encoders and k-means
            ctx.save(f"scene_seed{seed}", {"bands": bands, "units": unit_map}, kind="scene")
        names.append("scene")
    write_json(ctx.out / "scenes.json", {"scenes": names})
    return StepOutput()


def run_pipelines(
    env: TrainEnv,
    scenes: list[tuple[np.ndarray, np.ndarray]],
    seeds: list[int],
    m: ModelConfig,
) -> tuple[list[dict[str, float]], list[dict[str, list[float]]]]:
    """Per (bands, units) scene and its seed: PCA, AE and SAE codes -> k-means -> majority
    filter, scored against the units (names ``<method>/<quantity>``), and each stage's
    training loss per epoch (``ae``, ``sae2``, ``sae3``). Each stage of the stack
    trains the autoencoders of every scene in one run (they are independent); ``*/wall_time``
    charges each scene an equal share of the joint training plus its own clustering."""
    h, w, b = scenes[0][0].shape
    xs = [core.minmax(bands.reshape(-1, b)) for bands, _ in scenes]
    out: list[dict[str, float]] = [{} for _ in scenes]
    losses: list[dict[str, list[float]]] = [{} for _ in scenes]

    def score(i: int, name: str, codes: np.ndarray, shared: float) -> None:
        t0 = time.perf_counter()
        labels = kmeans_baseline(codes, m.k, seeds[i]).reshape(h, w)
        labels = core.mode_filter(labels, m.filter_size, m.k).ravel()
        out[i].update(
            {f"{name}/{key}": v for key, v in evaluate(scenes[i][1].ravel(), labels).items()}
        )
        out[i][f"{name}/wall_time"] = shared + time.perf_counter() - t0
        out[i][f"{name}/code_dim"] = float(codes.shape[1])

    code_dim = m.ae_widths[-1]
    for i, x in enumerate(xs):
        t0 = time.perf_counter()
        codes, explained, rule = core.pca_codes(x, code_dim)
        score(i, "pca", codes, time.perf_counter() - t0)
        out[i]["pca/variance_explained"] = explained
        out[i]["pca/components_90"] = float(rule)
        out[i]["train_pixels"] = float(
            x.shape[0] if not m.max_train_pixels else min(m.max_train_pixels, x.shape[0])
        )

    def stage(
        inputs: list[np.ndarray],
        widths: list[int],
        epochs: int,
        batch: int,
        offset: int,
        layer: int,
        name: str,
    ) -> tuple[np.ndarray, np.ndarray, float]:
        t0 = time.perf_counter()
        model, hist = core.train_autoencoders(
            env,
            inputs,
            [inputs[0].shape[1], *widths[1:]],
            epochs,
            batch,
            m.lr,
            m.l1,
            [s + offset for s in seeds],
            code_layer=layer,
            max_train=m.max_train_pixels or None,
        )
        recon, feats = core.encode(model, inputs)
        for i, h in enumerate(hist):
            losses[i][name] = list(h)
        return recon, feats, (time.perf_counter() - t0) / len(inputs)

    recon, code, ae_secs = stage(xs, m.ae_widths, m.ae_epochs, m.ae_batch, 0, -1, "ae")
    for i in range(len(xs)):
        score(i, "ae", code[i], ae_secs)
    x2 = [np.concatenate([r, x], axis=1) for r, x in zip(recon, xs, strict=True)]
    _, code2, sae2_secs = stage(x2, m.sae2_widths, m.sae_epochs, m.sae_batch, 1, -2, "sae2")
    x3 = [np.concatenate([c, x], axis=1) for c, x in zip(code2, x2, strict=True)]
    _, code3, sae3_secs = stage(x3, m.sae3_widths, m.sae_epochs, m.sae_batch, 2, -1, "sae3")
    for i in range(len(xs)):  # the stack includes AE1's training
        score(i, "sae", code3[i], ae_secs + sae2_secs + sae3_secs)
    return out, losses


def _fit(ctx: StepContext[GeoSAEConfig]) -> StepOutput:
    names = read_json(ctx.inputs["scenes"] / "scenes.json")["scenes"]
    keys = [(name, seed) for name in names for seed in ctx.seeds]
    scenes = []
    for name, seed in keys:
        t = ctx.load(f"{name}_seed{seed}", kind="scene")
        scenes.append((t["bands"].numpy(), t["units"].numpy()))
    seed_all(ctx.seeds[0])
    rows, losses = run_pipelines(ctx, scenes, [seed for _, seed in keys], ctx.cfg.model)
    results, histories = {}, {}
    for (name, seed), r, h in zip(keys, rows, losses, strict=True):
        results[f"{name}_seed{seed}"] = r
        histories[f"{name}_seed{seed}"] = h
        ctx.progress(
            f"{name} seed {seed}: ARI PCA {r['pca/ari']:.3f} AE {r['ae/ari']:.3f} "
            f"SAE {r['sae/ari']:.3f}"
        )
    write_json(ctx.out / "results.json", {"scenes": names, "results": results, "losses": histories})
    return StepOutput()


def _evaluate(ctx: StepContext[GeoSAEConfig]) -> Report:
    doc = read_json(ctx.inputs["fit"] / "results.json")
    per_seed = SeedMetrics()
    for seed in ctx.seeds:
        per_seed.record(
            {
                f"{name}/{key}": value
                for name in doc["scenes"]
                for key, value in doc["results"][f"{name}_seed{seed}"].items()
            }
        )
    metrics = per_seed.as_dict()
    rows = ["| scene | method | ARI | NMI | ACC |", "|---|---|---|---|---|"]
    for name in doc["scenes"]:
        for meth in METHODS:
            cells = " | ".join(
                f"{np.mean(metrics[f'{name}/{meth}/{k}']):.3f} ± "
                f"{np.std(metrics[f'{name}/{meth}/{k}'], ddof=1) if len(ctx.seeds) > 1 else 0:.3f}"
                for k in ("ari", "nmi", "acc")
            )
            rows.append(f"| {name} | {meth} | {cells} |")
    enc = [
        "| scene | code dimension (PCA / AE / SAE) | variance in the PCA code "
        "| PCA components for 90 % | AE training pixels |",
        "|---|---|---|---|---|",
    ]
    for name in doc["scenes"]:
        dims = " / ".join(f"{np.mean(metrics[f'{name}/{m}/code_dim']):g}" for m in METHODS)
        enc.append(
            f"| {name} | {dims} | {np.mean(metrics[f'{name}/pca/variance_explained']):.3f} "
            f"| {np.mean(metrics[f'{name}/pca/components_90']):g} "
            f"| {np.mean(metrics[f'{name}/train_pixels']):.0f} |"
        )
    enc.append(
        "\nThe spec keeps PCA components up to 90 % of the variance (2 in the paper's scene; the "
        "count here is in the table); issue 12 compares the encoders at one code dimension, so "
        "PCA keeps as many components as the autoencoders' codes have."
    )
    return Report(
        metrics=metrics,
        tables={
            "external scores (mean ± std over seeds)": "\n".join(rows),
            "Encoders compared": "\n".join(enc),
        },
        figures={"ari": score_bars(metrics, "/ari", "PCA, AE and SAE codes + k-means: ARI")},
        curves={"loss_vs_epoch": loss_curve(list(doc["losses"].values()))},
    )


STAGES = ("ae", "sae2", "sae3")


def loss_curve(losses: list[dict[str, list[float]]]) -> list[dict[str, float]]:
    """The DVC curve: each stage's training loss per epoch (mean over scenes and seeds; NaN
    past a stage's last epoch, as AE1 and the stacked AEs train their own epochs)."""
    epochs = max(len(h[s]) for h in losses for s in STAGES)

    def at(stage: str, e: int) -> float:
        vals = [h[stage][e] for h in losses if e < len(h[stage])]
        return float(np.mean(vals)) if vals else math.nan

    return [{"epoch": float(e + 1)} | {s: at(s, e) for s in STAGES} for e in range(epochs)]


def _check_sae_wins(m: Metrics) -> ClaimResult:
    sae, pca, ae = (m[f"nonlinear/{x}/ari"] for x in ("sae", "pca", "ae"))
    return decide(
        on_mean("nonlinear: SAE - PCA", gap(sae, pca), ">=", 0.0),
        on_mean("nonlinear: SAE - AE", gap(sae, ae), ">=", 0.0),
        sae_ari=sae,
        pca_ari=pca,
        ae_ari=ae,
    )


def _check_linear_flip(m: Metrics) -> ClaimResult:
    # a flip needs both orderings: "PCA ≥ SAE on the linear scene" alone holds whenever the SAE
    # is simply weaker everywhere (issue 12)
    return decide(
        on_mean(
            "nonlinear: SAE - PCA", gap(m["nonlinear/sae/ari"], m["nonlinear/pca/ari"]), ">=", 0.0
        ),
        on_mean("linear: PCA - SAE", gap(m["linear/pca/ari"], m["linear/sae/ari"]), ">=", 0.0),
    )


STUDY = Study(
    slug=SLUG,
    title="Remote sensing framework for geological mapping via stacked autoencoders and clustering",
    arxiv="2404.02180",
    group="subspace clustering",
    config=GeoSAEConfig,
    steps=(
        Step(
            "scenes",
            _scenes,
            reads=("data",),
            description="procedural scenes per mixing regime and seed, or a real scene",
        ),
        Step(
            "fit",
            _fit,
            needs=("scenes",),
            reads=("model",),
            description="PCA / AE / SAE codes, k-means, majority filter, scores",
        ),
        Step(
            "evaluate",
            _evaluate,
            needs=("fit",),
            kind="report",
            description="ARI/NMI/ACC over seeds and the claims",
        ),
    ),
    claims=(
        Claim(
            "sae_nonlinear",
            "ARI(SAE) ≥ ARI(PCA) and ≥ ARI(AE)",
            "SAE + k-means maps rock units better than PCA and a canonical AE",
            _check_sae_wins,
        ),
        Claim(
            "linear_flip",
            "the ordering flips: SAE ≥ PCA on the nonlinear scene and PCA ≥ SAE when mixing is "
            "made linear (issue 12: an actual flip)",
            "(control of the miniature; not a paper claim)",
            _check_linear_flip,
        ),
    ),
    curves=(
        Curve(
            "loss_vs_epoch",
            x="epoch",
            y=STAGES,
            title="training loss per epoch of AE1 and the stacked AE2, AE3 (mean over scenes)",
        ),
    ),
)
