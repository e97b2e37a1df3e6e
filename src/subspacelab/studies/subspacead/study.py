"""SubspaceAD study: download -> pretrain -> features -> fit -> evaluate (arXiv:2602.23013).

Steps only wire files to the maths in :mod:`core` (and :mod:`textures`, :mod:`datasets`):

* download — mini: one procedural texture-AD dataset per seed; full: MVTec-AD (manual archive,
  SHA-256 checked) and VisA (downloaded, re-split with its 1cls protocol).
* pretrain — mini with the ``loco_cnn`` backbone: per evaluated category, the 4-stage CNN trained
  (Lightning) to classify the *other* texture categories, the spec's leave-one-category-out
  option; other backbones need nothing here.
* features — frozen backbone tokens of the k-shot train images (+ augmentations) and of the test
  images, stored fp16 per seed and category, with the GT masks at map resolution.
* fit — per seed and category: float64 streaming moments -> eigh -> k by explained variance,
  saved as SubspaceAD module buffers for the main ``pca_ev`` and every ablation value; plus the
  kNN baseline's memory bank.
* evaluate — maps, image/pixel AUROC and AUPRO; means over categories per seed; claims and plots.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from subspacelab.api import (
    Claim,
    ClaimResult,
    Curve,
    Metrics,
    Report,
    Stat,
    Step,
    StepContext,
    StepOutput,
    Study,
    decide,
    every,
    gap,
    load_tensors,
    on_mean,
    ratio,
    read_json,
    save_tensors,
    seed_all,
    write_json,
)
from subspacelab.geometry import StreamingMoments
from subspacelab.studies.subspacead import core, datasets, plots
from subspacelab.studies.subspacead.config import (
    ABLATION_EVS,
    CNN_BACKBONES,
    EvalConfig,
    FeaturesConfig,
    SubspaceADConfig,
)
from subspacelab.studies.subspacead.textures import (
    TEXTURE_CATEGORIES,
    good_image,
    make_dataset,
    to_uint8,
)

SLUG = "subspacead"
METHOD_METRICS = ("image_auroc", "pixel_auroc", "aupro")
BY_CATEGORY = "by_category/"  # metrics with one value per (seed, category): the claims' pairs
_SCORE_BATCH = 16  # test images scored at once


def _key(dataset: str, category: str) -> str:
    return f"{dataset}__{category}"


def _ev_name(ev: float) -> str:
    return f"ev{ev:g}"


def _resize(img: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    """Resize a uint8 image or mask to ``size``×``size`` (no-op when it already is)."""
    if img.shape[0] == size and img.shape[1] == size:
        return img
    from PIL import Image

    mode = Image.Resampling.NEAREST if nearest else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(img).resize((size, size), mode))


# --------------------------------------------------------------------------- download


def _download(ctx: StepContext[SubspaceADConfig]) -> StepOutput:
    d = ctx.cfg.data
    index: dict[str, dict[str, Any]] = {}
    if d.datasets == ["textures"]:
        for seed in ctx.seeds:
            sets = make_dataset(
                {c: d.defects[c] for c in d.categories},
                size=d.image_size,
                k_shot=d.k_shot,
                n_good=d.n_test_good,
                n_defect=d.n_test_defect,
                seed=seed,
            )
            tensors = {
                f"{cat}.{field}": getattr(s, field)
                for cat, s in sets.items()
                for field in ("train", "test", "masks", "labels", "defect")
            }
            ctx.save(f"textures_seed{seed}", tensors, kind="textures")
            ctx.progress(f"seed {seed}: generated {len(sets)} texture categories")
        index["textures"] = {"categories": list(d.categories)}
    else:
        archive_dir = ctx.root / d.archive_dir
        for name in d.datasets:
            dest = ctx.out / name
            if name == "mvtec_ad":
                cats = datasets.prepare_mvtec(archive_dir / d.mvtec_archive, d.mvtec_sha256, dest)
            else:
                cats = datasets.prepare_visa(
                    d.visa_url, d.visa_sha256, archive_dir, dest, ctx.progress
                )
            index[name] = {"categories": [c for c in cats if not d.categories or c in d.categories]}
            ctx.progress(f"{name}: {len(index[name]['categories'])} categories")
        unknown = set(d.categories) - {c for v in index.values() for c in v["categories"]}
        if unknown:
            raise ValueError(f"data.categories: {sorted(unknown)} not found in {d.datasets}")
    write_json(ctx.out / "index.json", {"datasets": index})
    n_cat = sum(len(v["categories"]) for v in index.values())
    return StepOutput(metrics={"categories": float(n_cat)})


# --------------------------------------------------------------------------- features


def _pretrain(ctx: StepContext[SubspaceADConfig]) -> StepOutput:
    """loco_cnn: per evaluated category, a CNN trained to classify the other texture categories
    (every texture category but the held-out one); other backbones need no pretraining."""
    cfg = ctx.cfg
    p, f = cfg.pretrain, cfg.features
    if p is None:
        write_json(ctx.out / "index.json", {"backbone": f.backbone, "models": {}})
        return StepOutput()
    from subspacelab.api import Member, train_joint

    images = {}
    for i, cat in enumerate(TEXTURE_CATEGORIES):
        rng = np.random.default_rng([p.seed, i, 1])  # no evaluation seed draws this stream
        size = cfg.data.image_size
        images[cat] = core.to_tensor(
            [to_uint8(good_image(cat, size, rng)) for _ in range(p.images_per_category)]
        )

    def augment(xb: Tensor, gen: torch.Generator) -> Tensor:
        return core.crop_flip_jitter(xb, gen, p.crop, p.jitter)

    members, nets = [], {}
    for i, held_out in enumerate(cfg.data.categories):
        others = [c for c in TEXTURE_CATEGORIES if c != held_out]
        x = torch.cat([images[c] for c in others])
        y = torch.arange(len(others)).repeat_interleave(p.images_per_category)
        seed_all(p.seed + i)
        net = core.TextureClassifier(core.PatchCNN(f.cnn_channels, f.cnn_mean_stages), len(others))
        nets[held_out] = net
        members.append(
            Member(
                net,
                _ce(net),
                lr=p.lr,
                weight_decay=p.weight_decay,
                data=(x, y),
                seed=p.seed + i,
                augment=augment,
            )
        )
    history = train_joint(
        ctx, members, epochs=p.epochs, batch_size=p.batch_size, label="leave-one-out CNNs"
    ).history
    index: dict[str, dict[str, float]] = {}
    for (held_out, net), member, losses in zip(nets.items(), members, history, strict=True):
        with torch.no_grad():  # accuracy on the whole (uncropped) training images
            x, y = member.data
            acc = float((net(x).argmax(1) == y).double().mean())
        ctx.save(
            held_out, net.trunk.state_dict(), kind="model/loco_cnn", meta={"held_out": held_out}
        )
        index[held_out] = {"final_loss": losses[-1], "train_acc": acc}
        ctx.progress(f"CNN without {held_out}: final loss {losses[-1]:.3f}, accuracy {acc:.3f}")
    write_json(ctx.out / "index.json", {"backbone": f.backbone, "models": index})
    return StepOutput({f"{c}_{k}": v for c, row in index.items() for k, v in row.items()})


def _ce(net: torch.nn.Module) -> Callable[[Tensor, Tensor], Tensor]:
    """Cross-entropy of ``net`` on a batch (the pretraining loss)."""

    def loss(xb: Tensor, yb: Tensor) -> Tensor:
        return F.cross_entropy(net(xb), yb)

    return loss


def _backbone(
    f: FeaturesConfig, pretrained: Path, category: str, device: torch.device
) -> Callable[[Tensor], Tensor]:
    """The frozen backbone that extracts one category's tokens (loco_cnn: the CNN pretrained
    without that category)."""
    if f.backbone == "random_cnn":
        return core.random_patch_cnn(f.cnn_channels, f.cnn_mean_stages, f.cnn_seed).to(device)
    if f.backbone == "loco_cnn":
        state, _ = load_tensors(
            pretrained / f"{category}.safetensors", study=SLUG, kind="model/loco_cnn"
        )
        net = core.PatchCNN(f.cnn_channels, f.cnn_mean_stages)
        net.load_state_dict(state)
        return net.freeze().to(device)
    return datasets.DinoV2Tokens(f.hf_model, f.hf_revision, f.layers, device)


def _load_category(
    download: Path, dataset: str, category: str, seed: int, cfg: SubspaceADConfig
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, np.ndarray]:
    """(k-shot train images, test images, masks, labels) at ``features.image_res``."""
    res = cfg.features.image_res
    if dataset == "textures":
        t, _ = load_tensors(
            download / f"textures_seed{seed}.safetensors", study=SLUG, kind="textures"
        )
        train = [_resize(x, res) for x in t[f"{category}.train"].numpy()]
        test = [_resize(x, res) for x in t[f"{category}.test"].numpy()]
        masks = np.stack([_resize(m, res, nearest=True) for m in t[f"{category}.masks"].numpy()])
        return train, test, masks, t[f"{category}.labels"].numpy()
    files = datasets.category_files(download / dataset, category)
    shots = datasets.sample_shots(files.train, cfg.data.k_shot, seed)
    train = [datasets.load_image(p, res) for p in shots]
    test = [datasets.load_image(p, res) for p in files.test]
    masks = np.stack([datasets.load_mask(p, res) for p in files.masks])
    return train, test, masks, files.labels


def _features(ctx: StepContext[SubspaceADConfig]) -> StepOutput:
    cfg = ctx.cfg
    f = cfg.features
    index = read_json(ctx.inputs["download"] / "index.json")
    shapes: dict[str, int] = {}
    backbones: dict[str, Callable[[Tensor], Tensor]] = {}
    n_tokens = 0
    for seed in ctx.seeded():
        for dataset, info in index["datasets"].items():
            for cat in info["categories"]:
                key = cat if f.backbone == "loco_cnn" else ""  # one backbone, or one per category
                if key not in backbones:
                    backbones[key] = _backbone(f, ctx.inputs["pretrain"], cat, ctx.device)
                backbone = backbones[key]
                train, test, masks, labels = _load_category(
                    ctx.inputs["download"], dataset, cat, seed, cfg
                )
                mode = f.aug_overrides.get(cat, f.aug_default)
                rng = np.random.default_rng([seed, zlib.crc32(_key(dataset, cat).encode())])
                train_tokens = torch.cat(
                    [
                        core.extract_tokens(
                            backbone,
                            core.augment(
                                img.astype(np.float64) / 255.0,
                                mode,
                                f.aug_count,
                                rng,
                                rotate_range=(f.rotate_range[0], f.rotate_range[1]),
                                flip_max_deg=f.flip_max_deg,
                                fill=f.aug_fill,
                            ),
                            f.batch_size,
                            torch.float16,
                        )
                        for img in train
                    ]
                )
                test_tokens = core.extract_tokens(backbone, test, f.batch_size, torch.float16)
                thumbs = np.stack([_resize(x, f.thumb_size) for x in test])
                save_tensors(
                    ctx.out / f"seed{seed}" / f"{_key(dataset, cat)}.safetensors",
                    {
                        "train_tokens": train_tokens,
                        "test_tokens": test_tokens,
                        "masks": masks.astype(np.uint8),
                        "labels": labels.astype(np.int64),
                        "thumbs": thumbs,
                    },
                    study=SLUG,
                    kind="tokens",
                    meta={"augmentation": mode},
                )
                n_tokens += train_tokens.shape[0] * train_tokens.shape[1] * train_tokens.shape[2]
                shapes = {"grid": int(test_tokens.shape[1]), "dim": int(test_tokens.shape[-1])}
                ctx.progress(
                    f"seed {seed} {dataset}/{cat}: {train_tokens.shape[0]} train images ({mode}), "
                    f"{test_tokens.shape[0]} test, tokens {tuple(test_tokens.shape[1:])}"
                )
    write_json(
        ctx.out / "index.json",
        {
            "datasets": index["datasets"],
            "thumb_size": f.thumb_size,
            **shapes,
        },
    )
    return StepOutput(metrics={"train_tokens_total": float(n_tokens)})


# --------------------------------------------------------------------------- fit


def _fit(ctx: StepContext[SubspaceADConfig]) -> StepOutput:
    fit = ctx.cfg.fit
    index = read_json(ctx.inputs["features"] / "index.json")
    evs = sorted({fit.pca_ev, *fit.ablation_ev})
    models: dict[str, dict[str, Any]] = {}
    for seed in ctx.seeds:
        for dataset, info in index["datasets"].items():
            for cat in info["categories"]:
                key = _key(dataset, cat)
                tok, _ = load_tensors(
                    ctx.inputs["features"] / f"seed{seed}" / f"{key}.safetensors",
                    study=SLUG,
                    kind="tokens",
                )
                train = tok["train_tokens"]
                dim = train.shape[-1]
                moments = StreamingMoments()
                for chunk in train.split(8):  # streamed 8 images at a time, float64 inside
                    moments.update(chunk.reshape(-1, dim))
                ks = {}
                for ev in evs:
                    model = core.SubspaceAD.from_moments(moments, ev)
                    ks[_ev_name(ev)] = model.k
                    save_tensors(
                        ctx.out / f"seed{seed}" / f"{key}__{_ev_name(ev)}.safetensors",
                        model.state_dict(),
                        study=SLUG,
                        kind="model/subspacead",
                        meta={"pca_ev": f"{ev:g}", "k": str(model.k)},
                    )
                bank = core.KNNBank(train)
                save_tensors(
                    ctx.out / f"seed{seed}" / f"{key}__knn.safetensors",
                    {"bank": bank.bank.half()},
                    study=SLUG,
                    kind="model/knn",
                )
                models[f"seed{seed}/{key}"] = {"k": ks, "n_train_tokens": moments.count, "dim": dim}
                ctx.progress(f"seed {seed} {key}: k = {ks} of d = {dim}, N = {moments.count}")
    write_json(
        ctx.out / "index.json",
        {"datasets": index["datasets"], "evs": evs, "pca_ev": fit.pca_ev, "models": models},
    )
    main = [m["k"][_ev_name(fit.pca_ev)] for m in models.values()]
    return StepOutput(metrics={"k_mean": float(np.mean(main))})


# --------------------------------------------------------------------------- evaluate


@dataclass
class _Scored:
    """One scorer on one category: metrics, image scores and (when kept) the pixel maps."""

    metrics: dict[str, float]
    image_scores: np.ndarray
    maps: Tensor | None


def _score(
    scorer: torch.nn.Module,
    tokens: Tensor,
    masks: np.ndarray,
    labels: np.ndarray,
    e: EvalConfig,
    ctx: StepContext[SubspaceADConfig],
    keep_maps: bool,
) -> _Scored:
    scores = core.score_tokens(scorer.to(ctx.device), tokens, ctx.device, _SCORE_BATCH)
    maps = core.anomaly_maps(scores, masks.shape[-1], e.blur_kernel, e.blur_sigma)
    metrics, img = core.category_metrics(maps, masks, labels, e.top_frac, e.aupro_fpr_limit)
    return _Scored(metrics, img, maps if keep_maps else None)


def _evaluate(ctx: StepContext[SubspaceADConfig]) -> Report:
    e = ctx.cfg.eval
    feats, fitted = ctx.inputs["features"], ctx.inputs["fit"]
    findex = read_json(feats / "index.json")
    mindex = read_json(fitted / "index.json")
    thumb = int(findex["thumb_size"])
    evs, main = list(mindex["evs"]), _ev_name(float(mindex["pca_ev"]))
    multi = len(findex["datasets"]) > 1
    per_seed: dict[str, list[float]] = {}
    cells: dict[str, list[float]] = {}  # one value per (seed, category), seed-major
    spectra: dict[str, np.ndarray] = {}  # eigenvalues of the main model, first seed
    table: dict[str, dict[str, list[float]]] = {}
    examples: dict[str, list[plots.MapExample]] = {}
    rocs: list[plots.RocCurves] = []
    first = ctx.seeds[0]
    for seed in ctx.seeds:
        rows: dict[str, list[float]] = {}
        for dataset, info in findex["datasets"].items():
            for cat in info["categories"]:
                key, name = _key(dataset, cat), f"{dataset}/{cat}"
                tok, _ = load_tensors(
                    feats / f"seed{seed}" / f"{key}.safetensors", study=SLUG, kind="tokens"
                )
                masks, labels = tok["masks"].numpy(), tok["labels"].numpy()
                fit_info = mindex["models"][f"seed{seed}/{key}"]
                scored: dict[str, _Scored] = {}
                for ev in evs:
                    state, _ = load_tensors(
                        fitted / f"seed{seed}" / f"{key}__{_ev_name(ev)}.safetensors",
                        study=SLUG,
                        kind="model/subspacead",
                    )
                    if seed == first and _ev_name(ev) == main:
                        spectra[name] = state["eigenvalues"].numpy()
                    scored[_ev_name(ev)] = _score(
                        core.SubspaceAD.from_state(state),
                        tok["test_tokens"],
                        masks,
                        labels,
                        e,
                        ctx,
                        keep_maps=seed == first and _ev_name(ev) == main,
                    )
                bank, _ = load_tensors(
                    fitted / f"seed{seed}" / f"{key}__knn.safetensors", study=SLUG, kind="model/knn"
                )
                scored["knn"] = _score(
                    core.KNNBank(bank["bank"]),
                    tok["test_tokens"],
                    masks,
                    labels,
                    e,
                    ctx,
                    keep_maps=seed == first,
                )
                k_main, dim = int(fit_info["k"][main]), int(fit_info["dim"])
                row = {
                    **{f"subspacead/{n}": v for n, v in scored[main].metrics.items()},
                    **{f"knn/{n}": v for n, v in scored["knn"].metrics.items()},
                    "subspacead/k": float(k_main),
                    "subspacead/stored": float(k_main * dim),
                    "knn/stored": float(int(fit_info["n_train_tokens"]) * dim),
                }
                for ev in evs:
                    ev_name = _ev_name(ev)
                    row.update({f"{ev_name}/{n}": v for n, v in scored[ev_name].metrics.items()})
                    row[f"{ev_name}/k"] = float(fit_info["k"][ev_name])
                    row[f"{ev_name}/k_over_d"] = float(fit_info["k"][ev_name]) / dim
                for metric, value in row.items():
                    cells.setdefault(f"{BY_CATEGORY}{metric}", []).append(value)
                    rows.setdefault(metric, []).append(value)
                    if multi:
                        rows.setdefault(f"{dataset}/{metric}", []).append(value)
                    table.setdefault(name, {}).setdefault(metric, []).append(value)
                if seed == first:
                    examples[name] = _examples(
                        tok, scored[main], scored["knn"], labels, e.n_plot, thumb
                    )
                    rocs.append(_roc(name, labels, scored[main], scored["knn"]))
                ctx.progress(
                    f"seed {seed} {name}: image {row['subspacead/image_auroc']:.3f} "
                    f"pixel {row['subspacead/pixel_auroc']:.3f} "
                    f"aupro {row['subspacead/aupro']:.3f} k {k_main} | "
                    f"kNN image {row['knn/image_auroc']:.3f} pixel {row['knn/pixel_auroc']:.3f}"
                )
        for metric, values in rows.items():
            per_seed.setdefault(metric, []).append(float(np.mean(values)))
    figures = {
        "anomaly_maps": plots.maps_grid(dict(list(examples.items())[: e.plot_max_categories])),
        "roc_image": plots.roc_figure(rocs[: e.plot_max_categories], first),
        "pca_ev_ablation": plots.ablation_figure(
            evs,
            {n: [per_seed[f"{_ev_name(ev)}/{n}"] for ev in evs] for n in METHOD_METRICS},
            [per_seed[f"{_ev_name(ev)}/k_over_d"] for ev in evs],
        ),
        "spectrum": plots.spectrum_figure(spectra, first),
    }
    tables = {
        "per_category": _table(table),
        "pca_ev_ablation": _ablation_table(evs, cells),
    }
    if ctx.cfg.features.backbone in CNN_BACKBONES:
        tables["Deviations"] = _deviations(ctx.cfg)
    ablation = [
        {"explained_variance": ev, "k": float(np.mean(per_seed[f"{_ev_name(ev)}/k"]))}
        | {n: float(np.mean(per_seed[f"{_ev_name(ev)}/{n}"])) for n in METHOD_METRICS}
        for ev in evs
    ]
    return Report(
        metrics={**per_seed, **cells},
        figures=figures,
        tables=tables,
        curves={"pca_ev_ablation": ablation},
    )


def _examples(
    tok: dict[str, Tensor], sub: _Scored, knn: _Scored, labels: np.ndarray, n: int, thumb: int
) -> list[plots.MapExample]:
    """The first ``n`` defective test images with both maps and the GT, at thumbnail size."""
    idx = torch.as_tensor(np.flatnonzero(labels == 1)[:n])

    def small(x: Tensor, mode: str) -> np.ndarray:
        sel = x[idx][:, None].float()
        return F.interpolate(sel, size=(thumb, thumb), mode=mode)[:, 0].numpy()

    if sub.maps is None or knn.maps is None:
        raise ValueError("maps of the first seed must be kept for the plots")
    maps_s, maps_k = small(sub.maps, "area"), small(knn.maps, "area")
    masks = small(tok["masks"], "nearest")
    images = tok["thumbs"][idx].numpy()
    return [plots.MapExample(images[j], maps_s[j], maps_k[j], masks[j]) for j in range(len(idx))]


def _roc(name: str, labels: np.ndarray, sub: _Scored, knn: _Scored) -> plots.RocCurves:
    from sklearn.metrics import roc_curve

    curves = {}
    for label, scored in (("SubspaceAD", sub), ("kNN (1-NN cosine)", knn)):
        fpr, tpr, _ = roc_curve(labels, scored.image_scores)
        curves[label] = (fpr, tpr, scored.metrics["image_auroc"])
    return plots.RocCurves(name, curves)


def _table(table: dict[str, dict[str, list[float]]]) -> str:
    cols = (
        "subspacead/image_auroc",
        "subspacead/pixel_auroc",
        "subspacead/aupro",
        "knn/image_auroc",
        "knn/pixel_auroc",
        "knn/aupro",
        "subspacead/k",
    )
    lines = [
        "| category | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for cat, vals in table.items():
        cells = []
        for c in cols:
            cells.append(
                Stat(tuple(float(v) for v in vals[c])).fmt(1 if c == "subspacead/k" else 3)
            )
        lines.append(f"| {cat} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ablation_table(evs: list[float], cells: dict[str, list[float]]) -> str:
    """The explained-variance ablation with k/d (components kept over feature dimension)
    beside it: means ± std over (seed, category)."""
    lines = [
        "| pca_ev | k | k/d | image AUROC | pixel AUROC | AUPRO |",
        "|---|---|---|---|---|---|",
    ]
    for ev in evs:
        n = _ev_name(ev)

        def cell(metric: str, digits: int, n: str = n) -> str:
            return Stat(tuple(cells[f"{BY_CATEGORY}{n}/{metric}"])).fmt(digits)

        lines.append(
            f"| {ev:g} | {cell('k', 1)} | {cell('k_over_d', 3)} | {cell('image_auroc', 3)} | "
            f"{cell('pixel_auroc', 3)} | {cell('aupro', 3)} |"
        )
    return "\n".join(lines)


def _deviations(cfg: SubspaceADConfig) -> str:
    """The report's Deviations table for the miniature (what differs from the spec, and why)."""
    p = cfg.pretrain
    rows = [
        (
            "backbone",
            "frozen random-init CNN (the spec's default)"
            if p is None
            else "leave-one-category-out pretrained CNN (the spec's option), one per category, "
            "shared by the seeds",
            "as the spec's miniature; its flat spectrum makes k/d large (see the ablation)"
            if p is None
            else "issue 12: features whose spectrum decays; the random CNN's tokens kept "
            "k ≈ 97 of d = 128 at pca_ev 0.99 (the lab's run before issue 12), so the PCA "
            "residual and its ablation said little",
        ),
        *(
            []
            if p is None
            else [
                (
                    "pretraining",
                    f"{p.epochs} epochs of Adam (lr {p.lr:g}) on {p.images_per_category} "
                    f"generated good images per other category, {p.crop}-px crops, flips, "
                    f"brightness/contrast jitter {p.jitter:g}",
                    "the spec says only 'a small CNN pretrained for 30 s'; this is about 30 s "
                    "of one core per CNN",
                )
            ]
        ),
        (
            "claims' unit",
            "paired differences per (generator seed, category): 3 x 5 pairs",
            "issue 12: verdicts on paired differences with a 95 % interval; the spec's claims "
            "are means over 5 categories x 3 seeds",
        ),
    ]
    lines = ["| what | here | why |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- claims


def _cells(m: Metrics, name: str) -> Stat:
    return m[f"{BY_CATEGORY}{name}"]


def claim_a(m: Metrics) -> ClaimResult:
    """(a) image AUROC ≥ 0.90 and pixel AUROC ≥ 0.90: the 95 % interval of the mean over
    (seed, category) pairs against each level."""
    img, pix = _cells(m, "subspacead/image_auroc"), _cells(m, "subspacead/pixel_auroc")
    return decide(
        on_mean("image AUROC", img, ">=", 0.90),
        on_mean("pixel AUROC", pix, ">=", 0.90),
        image_auroc_per_seed=m["subspacead/image_auroc"],
        pixel_auroc_per_seed=m["subspacead/pixel_auroc"],
    )


def claim_b(m: Metrics) -> ClaimResult:
    """(b) SubspaceAD image AUROC ≥ kNN − 0.01 on paired (seed, category) differences, while
    storing k·d < N·d numbers for every category (an invariant)."""
    sub, knn = _cells(m, "subspacead/image_auroc"), _cells(m, "knn/image_auroc")
    return decide(
        on_mean("SubspaceAD - kNN image AUROC", gap(sub, knn), ">=", -0.01),
        every(
            "stored k·d / N·d",
            ratio(_cells(m, "subspacead/stored"), _cells(m, "knn/stored")),
            "<",
            1.0,
        ),
        pixel_auroc_gap=gap(_cells(m, "subspacead/pixel_auroc"), _cells(m, "knn/pixel_auroc")),
        image_auroc_per_seed=m["subspacead/image_auroc"],
        knn_image_auroc_per_seed=m["knn/image_auroc"],
    )


def claim_c(m: Metrics) -> ClaimResult:
    """(c) image AUROC at pca_ev 0.99 above that at 0.9 and at 0.9999, on paired (seed,
    category) differences; k/d at each value shown beside."""
    lo, mid, hi = (_cells(m, f"{_ev_name(ev)}/image_auroc") for ev in ABLATION_EVS)
    measured: dict[str, Stat] = {}
    for ev in ABLATION_EVS:
        for quantity in ("k_over_d", "image_auroc"):
            name = f"{_ev_name(ev)}/{quantity}"
            measured[name] = m[name]
    return decide(
        on_mean("AUROC ev0.99 - ev0.9", gap(mid, lo), ">", 0.0),
        on_mean("AUROC ev0.99 - ev0.9999", gap(mid, hi), ">", 0.0),
        **measured,
    )


STUDY = Study(
    slug=SLUG,
    title="SubspaceAD: Training-Free Few-Shot Anomaly Detection via Subspace Modeling",
    arxiv="2602.23013",
    group="anomaly-detection",
    config=SubspaceADConfig,
    steps=(
        Step(
            "download",
            _download,
            reads=("data",),
            description="texture-AD per seed / MVTec-AD + VisA",
        ),
        Step(
            "pretrain",
            _pretrain,
            reads=("data", "pretrain", "features"),
            kind="models",
            description="loco_cnn: per category, a CNN trained to classify the other textures",
        ),
        Step(
            "features",
            _features,
            needs=("download", "pretrain"),
            reads=("data", "features"),
            description="frozen-backbone patch tokens of k-shot (+augmented) train and test images",
        ),
        Step(
            "fit",
            _fit,
            needs=("features",),
            reads=("fit",),
            kind="models",
            description="float64 streaming PCA per category (+ ev ablation) and the kNN bank",
        ),
        Step(
            "evaluate",
            _evaluate,
            needs=("features", "fit"),
            reads=("eval", "features", "pretrain"),
            kind="report",
            description="maps, image/pixel AUROC, AUPRO, claims and plots",
        ),
    ),
    claims=(
        Claim(
            "a",
            "SubspaceAD image AUROC ≥ 0.90 and pixel AUROC ≥ 0.90",
            "1-shot MVTec-AD image/pixel AUROC 97.1/97.5; VisA 93.4/98.2",
            claim_a,
        ),
        Claim(
            "b",
            "SubspaceAD ≥ a kNN patch memory bank on identical features (AnomalyDINO-style: "
            "1-NN cosine distance to all train patches) − 1 pt, while storing k·d numbers "
            "instead of N·d",
            "1-shot image AUROC: SubspaceAD 97.1 vs AnomalyDINO 96.6 on MVTec-AD (VisA 93.4 vs "
            "87.4), without a memory bank",
            claim_b,
        ),
        Claim(
            "c",
            "an ablation shows pca_ev 0.99 beats both 0.9 and 0.9999, or state honestly if it "
            "does not",
            "pca_ev = 0.99 is the paper's default, chosen by its explained-variance ablation",
            claim_c,
        ),
    ),
    curves=(
        Curve(
            "pca_ev_ablation",
            x="explained_variance",
            y=METHOD_METRICS,
            title="image/pixel AUROC and AUPRO vs PCA explained variance",
        ),
    ),
)
