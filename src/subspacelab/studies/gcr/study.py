"""The ``gcr`` study: steps, claims and wiring (Wang, Li & Zhang, ICCV 2023, arXiv:2308.01547).

download -> features -> fit -> evaluate -> transfer.

* mini: MNIST-1D (and sklearn digits as a second check) split by class: pretrain on the source
  classes, transfer to the target classes with a few-shot linear probe.
* full: ImageNet-1K pretraining of a ResNet50-D, transfer to CIFAR-10/100 with a linear probe on
  frozen features.

Each head (softmax, cosine softmax, GCR with k-dim class subspaces) is trained for every seed;
the report compares source error, transfer accuracy and class separation R² over seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch.utils.data import DataLoader, Dataset, TensorDataset

from subspacelab.api import (
    Claim,
    ClaimResult,
    Metrics,
    ParamsError,
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
    sha256_file,
    write_json,
)
from subspacelab.data import embedded
from subspacelab.data.cifar import CIFAR_RESOURCES, fetch_cifar, load_cifar
from subspacelab.data.imagenet import (
    ImageNetData,
    imagenet_split,
    prepare_imagenet,
    verify_archives,
)
from subspacelab.studies.gcr import core
from subspacelab.studies.gcr.config import DataConfig, GcrConfig, ModelConfig

SLUG = "gcr"
MAIN_TASKS = ("mnist1d", "imagenet")  # metrics without a prefix; others get "<task>/"


def _tasks(data: DataConfig) -> list[str]:
    """Pretraining tasks: ImageNet (full) or MNIST-1D plus optionally digits (mini)."""
    if data.imagenet is not None:
        return ["imagenet"]
    return ["mnist1d"] + (["digits"] if data.digits is not None else [])


def _targets(data: DataConfig, task: str) -> list[str]:
    """Transfer sets of a task: its own target classes (mini) or the CIFAR sets (full)."""
    return list(data.transfer_sets) if task == "imagenet" else [task]


def _prefix(task: str) -> str:
    return "" if task in MAIN_TASKS else f"{task}/"


def _model_name(task: str, head: str, seed: int) -> str:
    return f"{task}_{head}_s{seed}"


def _resolve(ctx: StepContext[GcrConfig], path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else ctx.root / p


# ---------------------------------------------------------------------------------- download


def _imagenet(data: DataConfig) -> ImageNetData:
    """The ImageNet section a full-profile step needs (a ParamsError when it is null)."""
    if data.imagenet is None:
        raise ParamsError("gcr: the full profile needs data.imagenet (the ILSVRC2012 archives)")
    return data.imagenet


def download(ctx: StepContext[GcrConfig]) -> StepOutput:
    """Generate MNIST-1D and load digits (the full profile: :func:`download_full`)."""
    data = ctx.cfg.data
    splits = {
        "mnist1d": embedded.mnist1d(
            data.mnist1d.num_samples, data.mnist1d.seed, data.mnist1d.train_split
        )
    }
    if data.digits is not None:
        splits["digits"] = embedded.digits(data.digits.test_size, data.digits.seed)
    for name, split in splits.items():
        arrays = {
            "x_train": split.x_train,
            "y_train": split.y_train,
            "x_test": split.x_test,
            "y_test": split.y_test,
        }
        ctx.save(name, arrays, kind="dataset")
        ctx.progress(f"{name}: {len(split.y_train)} train, {len(split.y_test)} test")
    return StepOutput(
        {f"{n}_examples": float(len(s.y_train) + len(s.y_test)) for n, s in splits.items()}
    )


def download_full(ctx: StepContext[GcrConfig]) -> StepOutput:
    """Verify and unpack the user's ImageNet archives; fetch the CIFAR transfer sets."""
    data = ctx.cfg.data
    imagenet = _imagenet(data)
    root = _resolve(ctx, imagenet.root)
    manifest: dict[str, Any] = verify_archives(root, imagenet.checksums, ctx.progress)
    counts = prepare_imagenet(root, ctx.out / "imagenet", ctx.progress)
    for name in data.transfer_sets:
        fetch_cifar(name, ctx.out / "transfer", ctx.progress)
        archive = ctx.out / "transfer" / CIFAR_RESOURCES[name].filename
        manifest[name] = {
            "url": CIFAR_RESOURCES[name].url,
            "md5": CIFAR_RESOURCES[name].md5,
            "sha256": sha256_file(archive),  # recorded: only the MD5 is published
            "bytes": archive.stat().st_size,
        }
        archive.unlink()  # the extracted batches are what later steps read
    write_json(ctx.out / "manifest.json", {"archives": manifest, "imagenet_images": counts})
    return StepOutput({f"imagenet_{k}_images": float(v) for k, v in counts.items()})


# ---------------------------------------------------------------------------------- features


def _probe_indices(
    y: np.ndarray, n_train: int, shots: int | None, draws: int, seeds: list[int]
) -> dict[str, np.ndarray]:
    """Per seed and draw: the labelled probe indices and the test indices into the target pool.

    The pool is the target data's train part followed by its test part. With ``shots`` draw
    ``r`` of seed ``s`` takes that many labelled examples per class from the whole pool (a
    generator seeded by ``[s, r]``) and tests on the rest; without, the probe uses the train
    part and tests on the test part (one draw, the same for all seeds).
    """
    out = {}
    for seed in seeds:
        for r in range(draws):
            if shots is None:
                train, test = np.arange(n_train), np.arange(n_train, y.size)
            else:
                train, test = core.sample_shots(y, shots, np.random.default_rng([seed, r]))
            out[f"train_idx/{seed}/{r}"], out[f"test_idx/{seed}/{r}"] = train, test
    return out


def features_full(ctx: StepContext[GcrConfig]) -> StepOutput:
    """The probe splits of every CIFAR transfer set."""
    data, probe = ctx.cfg.data, ctx.cfg.probe
    stats: dict[str, float] = {}
    for name in data.transfer_sets:
        split = load_cifar(ctx.inputs["download"] / "transfer" / name, name)
        y = np.concatenate([split.y_train, split.y_test])
        arrays = {
            "target_y": y,
            **_probe_indices(y, len(split.y_train), probe.shots, probe.draws, ctx.seeds),
        }
        ctx.save(name, arrays, kind="probe")
        stats[f"{name}_examples"] = float(y.size)
    return StepOutput(stats)


def features(ctx: StepContext[GcrConfig]) -> StepOutput:
    """Class splits, input standardisation and the probe splits of each task's target classes
    (the full profile: :func:`features_full`)."""
    data, probe = ctx.cfg.data, ctx.cfg.probe
    stats: dict[str, float] = {}
    for task in _tasks(data):
        raw = ctx.load(task, step="download", kind="dataset")
        x_tr, y_tr, x_te, y_te = (
            raw[k].numpy() for k in ("x_train", "y_train", "x_test", "y_test")
        )
        xs_tr, ys_tr = core.select_classes(x_tr, y_tr, data.source_classes)
        xs_te, ys_te = core.select_classes(x_te, y_te, data.source_classes)
        xt_tr, yt_tr = core.select_classes(x_tr, y_tr, data.target_classes)
        xt_te, yt_te = core.select_classes(x_te, y_te, data.target_classes)
        mean, std = core.input_stats(xs_tr)  # the source pipeline's statistics, used everywhere
        yt = np.concatenate([yt_tr, yt_te])
        arrays = {
            "source_x_train": (xs_tr - mean) / std,
            "source_y_train": ys_tr,
            "source_x_test": (xs_te - mean) / std,
            "source_y_test": ys_te,
            "target_x": (np.concatenate([xt_tr, xt_te]) - mean) / std,
            "target_y": yt,
            **_probe_indices(yt, len(yt_tr), probe.shots, probe.draws, ctx.seeds),
        }
        ctx.save(task, arrays, kind="split")
        ctx.progress(f"{task}: source {len(ys_tr)}/{len(ys_te)}, target pool {len(yt)}")
        stats[f"{task}_source_train"] = float(len(ys_tr))
    return StepOutput(stats)


# ---------------------------------------------------------------------------------- data


def _source_set(ctx: StepContext[GcrConfig], task: str, *, train: bool) -> tuple[Dataset, int]:
    """The source training (or test) set and the number of source classes."""
    data = ctx.cfg.data
    if task == "imagenet":
        im = _imagenet(data)
        dataset = imagenet_split(
            ctx.inputs["download"] / "imagenet",
            "train" if train else "val",
            im.image_size,
            im.resize_size,
        )
        return dataset, len(dataset.classes)
    arrays = ctx.load(task, step="features", kind="split")
    part = "train" if train else "test"
    dataset = TensorDataset(arrays[f"source_x_{part}"], arrays[f"source_y_{part}"])
    return dataset, len(data.source_classes)


def _target_set(ctx: StepContext[GcrConfig], task: str, target: str) -> Dataset:
    """The target pool (train part then test part), in the order of the probe indices."""
    if task == "imagenet":
        from subspacelab.studies.gcr.full import ResizedImages

        split = load_cifar(ctx.inputs["download"] / "transfer" / target, target)
        return ResizedImages(
            np.concatenate([split.x_train, split.x_test]),
            np.concatenate([split.y_train, split.y_test]),
            _imagenet(ctx.cfg.data).image_size,
        )
    arrays = ctx.load(task, step="features", kind="split")
    return TensorDataset(arrays["target_x"], arrays["target_y"])


def _build_net(model: ModelConfig, head: str, num_classes: int) -> core.Classifier:
    if model.cnn is not None:
        cnn = model.cnn
        trunk: torch.nn.Module = core.ConvTrunk(cnn.channels, cnn.kernel_size, cnn.stride)
    else:
        from subspacelab.studies.gcr.full import TimmTrunk

        trunk = TimmTrunk(model.backbone)
    spec = core.parse_head(head)
    return core.Classifier(
        trunk, core.build_head(spec, trunk.feature_dim, num_classes, model.gamma)
    )


def architecture_meta(model: ModelConfig) -> dict[str, str]:
    """What rebuilds a saved network besides its head and class count (model-file metadata):
    the backbone, the CNN's stride and kernel size (channels follow from the weights) and the
    heads' scale gamma. Other studies (the report card) read it instead of copying params."""
    meta = {"backbone": model.backbone, "gamma": repr(float(model.gamma))}
    if model.cnn is not None:
        meta |= {"cnn_stride": str(model.cnn.stride), "cnn_kernel_size": str(model.cnn.kernel_size)}
    return meta


def _input_meta(data: DataConfig, task: str) -> dict[str, str]:
    """The image pipeline's sizes of the ImageNet task (model-file metadata)."""
    if task != "imagenet" or data.imagenet is None:
        return {}
    im = data.imagenet
    return {"image_size": str(im.image_size), "resize_size": str(im.resize_size)}


# ---------------------------------------------------------------------------------- fit


def fit(ctx: StepContext[GcrConfig]) -> StepOutput:
    """Train trunk + head for every task, head and seed; save each as safetensors."""
    from subspacelab.api import fit as train
    from subspacelab.studies.gcr.lightning import GCRModule

    cfg = ctx.cfg
    tr = cfg.train
    log: dict[str, dict[str, float]] = {}
    for task in _tasks(cfg.data):
        train_set, num_classes = _source_set(ctx, task, train=True)
        epochs = cfg.data.digits.epochs if task == "digits" else tr.epochs
        for head in cfg.model.heads:
            for seed in ctx.seeded():
                name = _model_name(task, head, seed)
                net = _build_net(cfg.model, head, num_classes)
                module = GCRModule(
                    net,
                    lr=tr.lr,
                    momentum=tr.momentum,
                    weight_decay=tr.weight_decay,
                    lr_factor=tr.lr_factor,
                    reorth_every=tr.reorth_every,
                    epochs=epochs,
                )
                loader = DataLoader(
                    train_set,
                    batch_size=tr.batch_size,
                    shuffle=True,
                    num_workers=tr.num_workers,
                    generator=torch.Generator().manual_seed(seed),
                )
                history = train(
                    ctx,
                    module,
                    loader,
                    epochs=epochs,
                    label=name,
                    every=epochs,
                    params={"task": task, "head": head, "seed": seed},
                )
                ctx.save_model(
                    name,
                    net,
                    meta={
                        "task": task,
                        "head": head,
                        "seed": str(seed),
                        "num_classes": str(num_classes),
                        **architecture_meta(cfg.model),
                        **_input_meta(cfg.data, task),
                    },
                )
                log[name] = history[-1]
    write_json(ctx.out / "train_log.json", log)
    return StepOutput()  # each model's losses are on its own MLflow run (a child of this one)


def _load_net(ctx: StepContext[GcrConfig], task: str, head: str, seed: int) -> core.Classifier:
    state, meta = ctx.load_meta(_model_name(task, head, seed), step="fit", kind="model")
    net = _build_net(ctx.cfg.model, head, int(meta["num_classes"]))
    net.load_state_dict(state)
    return net.to(ctx.device).eval()


@torch.no_grad()
def _infer(
    net: core.Classifier, dataset: Dataset, ctx: StepContext[GcrConfig]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Penultimate features, logits and labels of a whole dataset (CPU tensors)."""
    ev = ctx.cfg.eval
    loader = DataLoader(dataset, batch_size=ev.batch_size, num_workers=ev.num_workers)
    feats, logits, labels = [], [], []
    for x, y in loader:
        f = net.trunk(x.to(ctx.device))
        feats.append(f.float().cpu())
        logits.append(net.head(f).float().cpu())
        labels.append(torch.as_tensor(y))
    return torch.cat(feats), torch.cat(logits), torch.cat(labels)


# ---------------------------------------------------------------------------------- evaluate


def evaluate(ctx: StepContext[GcrConfig]) -> StepOutput:
    """Source top-1 error, class separation R², class-subspace angles; dump target features."""
    cfg = ctx.cfg
    summary: dict[str, dict[str, float]] = {}
    for task in _tasks(cfg.data):
        test_set, _ = _source_set(ctx, task, train=False)
        targets = {t: _target_set(ctx, task, t) for t in _targets(cfg.data, task)}
        for head in cfg.model.heads:
            spec = core.parse_head(head)
            for seed in ctx.seeds:
                name = _model_name(task, head, seed)
                net = _load_net(ctx, task, head, seed)
                feats, logits, labels = _infer(net, test_set, ctx)
                row = {
                    "source_err": core.top1_error(logits, labels),
                    "r2": core.class_separation_r2(feats, labels),
                }
                arrays: dict[str, torch.Tensor] = {}
                if spec.is_subspace:
                    angles = core.pairwise_class_angles(net.head.bases().cpu())
                    arrays["angles"] = angles
                    row["mean_angle_deg"] = float(torch.rad2deg(angles).mean())
                for target, dataset in targets.items():
                    arrays[f"features/{target}"] = _infer(net, dataset, ctx)[0]
                ctx.save(name, arrays, kind="features")
                summary[name] = row
                ctx.progress(f"{name}: " + " ".join(f"{k}={v:.3f}" for k, v in row.items()))
    write_json(ctx.out / "summary.json", summary)
    return StepOutput({f"{n}.{k}": v for n, row in summary.items() for k, v in row.items()})


# ---------------------------------------------------------------------------------- transfer


class _Collected:
    """What the probe loop gathers for the report: metrics, angles, chosen C values."""

    def __init__(self) -> None:
        self.metrics: dict[str, list[float]] = {}
        self.angles: dict[str, dict[str, list[np.ndarray]]] = {}
        self.chosen_c: dict[str, list[float]] = {}

    def add(self, key: str, value: float) -> None:
        self.metrics.setdefault(key, []).append(value)


def _draws(
    split: dict[str, torch.Tensor], y: np.ndarray, seed: int, n_draws: int, val_fraction: float
) -> list[core.ProbeDraw]:
    """The probe draws of one seed: labelled and test indices from the features step, and a
    stratified hold-out of the labelled set (seeded by ``[seed, r, 1]``) to choose C."""
    draws = []
    for r in range(n_draws):
        train = split[f"train_idx/{seed}/{r}"].numpy()
        rng = np.random.default_rng([seed, r, 1])
        _, val = core.stratified_holdout(y[train], val_fraction, rng)
        draws.append(core.ProbeDraw(train, train[val], split[f"test_idx/{seed}/{r}"].numpy()))
    return draws


def _probe_task(
    ctx: StepContext[GcrConfig], task: str, summary: dict[str, Any], out: _Collected
) -> None:
    """Probe every head and seed of one task on each of its target sets, over every draw."""
    cfg = ctx.cfg
    probe, pre = cfg.probe, _prefix(task)
    targets = _targets(cfg.data, task)
    splits = {t: ctx.load(t, step="features") for t in targets}
    for head in cfg.model.heads:
        for seed in ctx.seeds:
            name = _model_name(task, head, seed)
            feats = ctx.load(name, step="evaluate", kind="features")
            accs, spreads = [], []
            for target in targets:
                y = splits[target]["target_y"].numpy()
                draws = _draws(splits[target], y, seed, probe.draws, probe.val_fraction)
                results = core.linear_probe(
                    feats[f"features/{target}"].double().numpy(),
                    y,
                    draws,
                    c_grid=probe.c_grid,
                    max_iter=probe.max_iter,
                )
                per_draw = [res.accuracy for res in results]
                accs.append(float(np.mean(per_draw)))
                spreads.append(float(np.std(per_draw, ddof=1)) if len(per_draw) > 1 else 0.0)
                out.chosen_c.setdefault(f"{task}/{head}", []).extend(res.c for res in results)
                if len(targets) > 1:
                    out.add(f"{pre}transfer_acc/{target}/{head}", accs[-1])
            out.add(f"{pre}transfer_acc/{head}", float(np.mean(accs)))
            out.add(f"{pre}transfer_draw_sd/{head}", float(np.mean(spreads)))
            out.add(f"{pre}source_err/{head}", summary[name]["source_err"])
            out.add(f"{pre}r2/{head}", summary[name]["r2"])
            if "angles" in feats:
                deg = torch.rad2deg(feats["angles"]).numpy().ravel()
                out.angles.setdefault(task, {}).setdefault(head, []).append(deg)
                out.add(f"{pre}mean_angle_deg/{head}", summary[name]["mean_angle_deg"])
            ctx.progress(f"{name}: transfer {np.mean(accs):.2f}% (mean of {probe.draws} draws)")


def _deviations(cfg: GcrConfig) -> str:
    """The report's Deviations table: what differs from the spec's miniature, and why."""
    rows = [
        (
            "seeds",
            f"{len(cfg.seeds)} ({', '.join(map(str, cfg.seeds))}) instead of 3",
            "issue 12: claims are decided on paired per-seed differences with a 95 % "
            "t-interval; with 3 seeds its half-width is about 2.5x the per-seed spread of the "
            "gaps (about 1 pt), too wide to resolve the 1-pt margin of (a)",
        ),
        (
            "probe draws",
            f"{cfg.probe.draws} labelled draws per model, accuracy averaged per seed",
            "issue 12: one 50-shot draw per seed made the draw, not the head, dominate the "
            "seed spread (3.9 pt for softmax)",
        ),
        (
            "probe solver",
            "batched L-BFGS (float64) on scikit-learn's LogisticRegression objective, "
            "tol 1e-4; own stratified hold-out for C",
            "speed: one solve for every draw and C instead of a scikit-learn fit each; same "
            "objective and stopping rule (tested against scikit-learn)",
        ),
    ]
    lines = ["| what | here | why |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def transfer(ctx: StepContext[GcrConfig]) -> Report:
    """Linear probe on frozen target features; metrics per head and seed, claims, plots."""
    from subspacelab.studies.gcr.plots import angle_histogram, head_panels, results_table

    cfg = ctx.cfg
    summary = read_json(ctx.inputs["evaluate"] / "summary.json")
    out = _Collected()
    tasks = _tasks(cfg.data)
    with threadpool_limits(limits=ctx.lab.threads):  # BLAS threads as torch's (lab.threads)
        for task in tasks:
            _probe_task(ctx, task, summary, out)
    heads = list(cfg.model.heads)
    prefixes = [_prefix(t) for t in tasks]
    angles = {t: {h: np.concatenate(v) for h, v in hs.items()} for t, hs in out.angles.items()}
    tables = {"results": results_table(out.metrics, tasks, heads, prefixes, out.chosen_c)}
    if cfg.data.mnist1d is not None:
        tables["Deviations"] = _deviations(cfg)
    return Report(
        metrics=out.metrics,
        figures={
            "heads": head_panels(out.metrics, tasks, heads, prefixes),
            "principal_angles": angle_histogram(angles),
        },
        tables=tables,
    )


# ---------------------------------------------------------------------------------- claims

GCR_HEADS = ("gcr4", "gcr8")
TRANSFER_MARGIN_PT = 1.0  # (a): GCR must beat softmax's transfer accuracy by more than this
ERROR_SLACK_PT = 0.3  # (c): GCR's source error may exceed softmax's by at most this


def _present(m: Metrics, metric: str) -> list[str]:
    heads = [h for h in GCR_HEADS if f"{metric}/{h}" in m]
    if not heads:
        raise KeyError(f"metric {metric}/gcr4 or {metric}/gcr8 not recorded")
    return heads


_RANK = {"holds": 0, "inconclusive": 1, "does not hold": 2}


def check_transfer(m: Metrics) -> ClaimResult:
    """(a): GCR k=4 or k=8 beats softmax's transfer accuracy by more than 1 pt, on the paired
    per-seed differences (each seed's accuracy the mean over its probe draws).

    "k=4 or 8" is a disjunction: the claim takes the head whose test comes out best (holds if
    either holds, does not hold only if both do not); the other head's gap is shown beside it.
    """
    soft = m["transfer_acc/softmax"]
    tests = {
        h: on_mean(
            f"{h} - softmax (pt)", gap(m[f"transfer_acc/{h}"], soft), ">", TRANSFER_MARGIN_PT
        )
        for h in _present(m, "transfer_acc")
    }
    best = min(tests, key=lambda h: (_RANK[tests[h].verdict], -tests[h].interval[1]))
    others = {f"{h}_minus_softmax": Stat(t.values) for h, t in tests.items() if h != best}
    return decide(tests[best], softmax=soft, **{h: m[f"transfer_acc/{h}"] for h in tests}, **others)


def check_r2(m: Metrics) -> ClaimResult:
    """(b): class separation R² of GCR k=8 below that of softmax (paired per seed)."""
    soft, gcr8 = m["r2/softmax"], m["r2/gcr8"]
    return decide(on_mean("R² gcr8 - softmax", gap(gcr8, soft), "<", 0.0), softmax=soft, gcr8=gcr8)


def check_error(m: Metrics) -> ClaimResult:
    """(c): every GCR head (k=4 and k=8) within 0.3 pt of softmax's source error, or better
    (paired per seed)."""
    soft = m["source_err/softmax"]
    heads = _present(m, "source_err")
    return decide(
        *(
            on_mean(
                f"err {h} - softmax (pt)", gap(m[f"source_err/{h}"], soft), "<=", ERROR_SLACK_PT
            )
            for h in heads
        ),
        softmax=soft,
        **{h: m[f"source_err/{h}"] for h in heads},
    )


CLAIMS = (
    Claim(
        id="a_transfer",
        statement="transfer acc(GCR k=4 or 8) > transfer acc(softmax) + 1 pt (issue 12: each "
        "model probed over 20 shot draws, paired per seed)",
        paper="ResNet50-D, linear transfer averaged over 6 datasets: 77.98 (softmax) -> "
        "79.70 (GCR k=8)",
        check=check_transfer,
    ),
    Claim(
        id="b_variability",
        statement="R²(GCR, k=8) < R²(softmax) (more variability)",
        paper="intra-class feature variability grows with k (less neural collapse) than with "
        "the softmax head",
        check=check_r2,
    ),
    Claim(
        id="c_error",
        statement="source error(GCR) ≤ error(softmax) + 0.3 pt",
        paper="ImageNet-1K top-1, ResNet50-D: 78.05 (softmax) -> 79.26 (GCR k=8), a 5.6% "
        "relative error reduction",
        check=check_error,
    ),
)

STUDY = Study(
    slug=SLUG,
    title="Get the Best of Both Worlds: Improving Accuracy and Transferability by Grassmann "
    "Class Representation",
    arxiv="2308.01547",
    group="subspace classifiers",
    config=GcrConfig,
    steps=(
        Step(
            "download",
            download,
            full=download_full,
            reads=("data",),
            description="mnist1d + digits (mini); ImageNet archives + CIFAR (full)",
        ),
        Step(
            "features",
            features,
            full=features_full,
            needs=("download",),
            reads=("data", "probe"),
            description="source/target class split, standardisation, probe splits per seed",
        ),
        Step(
            "fit",
            fit,
            needs=("download", "features"),
            reads=("data", "model", "train"),
            kind="models",
            description="trunk + head per head and seed (RSGD for subspaces)",
        ),
        Step(
            "evaluate",
            evaluate,
            needs=("download", "features", "fit"),
            reads=("data", "model", "eval"),
            description="source error, R², subspace angles, target features",
        ),
        Step(
            "transfer",
            transfer,
            needs=("features", "evaluate"),
            reads=("data", "model", "probe"),
            kind="report",
            description="linear probe on frozen features; claims and plots",
        ),
    ),
    claims=CLAIMS,
)
