"""ULSAM: Ultra-Lightweight Subspace Attention Module (arXiv 2006.15102).

The chain data -> fit -> report of the spec's miniature (§6):

* data — cluttered digits per seed (``subspacelab.modules.clutter``: sklearn glyphs ×2 on a
  40×40 canvas with four 6×6 fragments of other digits and noise; source-disjoint splits);
* fit — the compact MobileNet-V1-style CNN per arm (baseline, ULSAM inserted after the last
  block, ULSAM replacing the last 128→128 block) and seed, all in one ``train_joint`` run, each
  member on its own seeded batches (the arms of one seed see the same batches: paired);
* report — test accuracy, parameters and MACs (``subspacelab.modules.count``, eval mode), the
  attention maps' normalised entropy; metrics ``cluttered/<arm>/<quantity>``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

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
    accuracy,
    decide,
    every,
    gap,
    on_mean,
    predict,
    read_json,
    write_json,
)
from subspacelab.modules.clutter import ClutterSpec, cluttered_digits
from subspacelab.modules.count import count
from subspacelab.studies.ulsam import core, full
from subspacelab.studies.ulsam.config import UlsamConfig

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Ctx = StepContext[UlsamConfig]
ARMS = ("baseline", "insert_g4", "replace_g1", "replace_g4")  # the spec's arms (claims, curve)


def _arms(ctx: Ctx) -> list[str]:
    m = ctx.cfg.model
    return core.arm_names(m.insert_groups, m.replace_groups)


def _model(ctx: Ctx, arm: str) -> core.CompactCNN:
    m = ctx.cfg.model
    return core.build(arm, m.stem, m.widths, m.strides, m.bn_momentum)


def _data(ctx: Ctx) -> StepOutput:
    """Cluttered digits per seed (train and test canvases from disjoint source digits)."""
    d = ctx.cfg.data
    spec = ClutterSpec(d.canvas, d.scale, d.n_clutter, d.fragment, d.noise, d.test_fraction)
    for seed in ctx.seeded():
        ctx.save(f"seed{seed}", cluttered_digits(d.n_train, d.n_test, spec, seed))
    return StepOutput()


def _ce(model: nn.Module) -> Callable[[Tensor, Tensor], Tensor]:
    """Cross-entropy of ``model``'s logits."""

    def loss(x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(model(x), y)

    return loss


def _fit(ctx: Ctx) -> StepOutput:
    """Every arm and seed in one joint run (mini: Adam, constant lr): members share no
    parameter, so each ends where its own run would."""
    from subspacelab.api import Member, train_joint

    t = ctx.cfg.train
    arms = _arms(ctx)
    members, names = [], []
    for seed in ctx.seeded():
        raw = ctx.load(f"seed{seed}")
        for arm in arms:
            model = _model(ctx, arm)  # initialised under this seed, arm after arm
            # channels-last runs this CNN's depthwise/BN/ReLU ops ~40% faster on CPU (same maths)
            model = model.to(memory_format=torch.channels_last)
            data = (raw["x_train"], raw["y_train"])
            members.append(Member(model, _ce(model), t.lr, t.weight_decay, data=data, seed=seed))
            names.append(f"seed{seed}/{arm}")
    result = train_joint(
        ctx,
        members,
        epochs=t.epochs,
        batch_size=t.batch,
        optimizer=t.optimizer,
        momentum=t.momentum,
        schedule=t.schedule,
        label="arms x seeds",
        params={"arms": ",".join(arms), "seeds": ",".join(map(str, ctx.cfg.seeds))},
    )
    for name, member in zip(names, members, strict=True):
        ctx.save_model(name, member.model)
    write_json(ctx.out / "history.json", dict(zip(names, result.history, strict=True)))
    return StepOutput()


def _report(ctx: Ctx) -> Report:
    """Accuracy, parameters, MACs and attention entropy per arm and seed; the loss curves."""
    arms = _arms(ctx)
    per_seed = SeedMetrics()
    history = read_json(ctx.inputs["fit"] / "history.json")
    for seed in ctx.seeded():
        raw = ctx.load(f"seed{seed}", step="data")
        x, y = raw["x_test"], raw["y_test"]
        row: dict[str, float] = {}
        for arm in arms:
            model = ctx.load_model(_model(ctx, arm), f"seed{seed}/{arm}", step="fit").eval()
            c = count(model, x[:1])
            with torch.no_grad():
                row[f"cluttered/{arm}/acc"] = accuracy(predict(model, x, batch_size=500), y)
                att = model.attention()
                if att is not None:
                    feats = _features_before(model, att, x[:500])
                    row[f"cluttered/{arm}/entropy"] = core.map_entropy(att.maps(feats))
            row[f"cluttered/{arm}/params"] = float(c.params)
            row[f"cluttered/{arm}/macs"] = float(c.macs)
        per_seed.record(row)
    metrics = per_seed.as_dict()
    curve = _loss_curve(history, arms, ctx.cfg.seeds)
    return Report(
        metrics=metrics,
        figures={"acc_vs_macs": _figure(metrics, arms)},
        tables={"Arms (mean over seeds)": _table(metrics, arms), "Deviations": DEVIATIONS},
        curves={"train_loss": curve},
    )


def _data_full(ctx: Ctx) -> StepOutput:
    """Spec §7: the user's ILSVRC2012 archives checked and unpacked; the fine-grained sets
    downloaded against their pins and unpacked (:mod:`subspacelab.data.finegrained`)."""
    from subspacelab.data.finegrained import fetch_sets
    from subspacelab.data.imagenet import prepare_imagenet, verify_archives

    im, fg = ctx.cfg.data.imagenet, ctx.cfg.data.finegrained
    assert im is not None and fg is not None  # the full profile's check
    manifest = {"imagenet": verify_archives(ctx.root / im.root, im.checksums, ctx.progress)}
    counts = prepare_imagenet(ctx.root / im.root, ctx.out / "imagenet", ctx.progress)
    manifest["finegrained"] = fetch_sets(
        fg, ctx.root / fg.root, ctx.out / "finegrained", ctx.progress
    )
    write_json(ctx.out / "manifest.json", {**manifest, "imagenet_images": counts})
    return StepOutput({f"imagenet_{k}_images": float(v) for k, v in counts.items()})


def _loader(dataset: object, batch: int, workers: int, seed: int | None) -> DataLoader:
    """Shuffled (seeded) batches for training, ordered ones for evaluation."""
    gen = None if seed is None else torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset, batch_size=batch, shuffle=seed is not None, num_workers=workers, generator=gen
    )


@torch.no_grad()
def _top1(model: nn.Module, loader: DataLoader, device: torch.device) -> float:
    model.eval().to(device)
    hits = total = 0
    for x, y in loader:
        hits += int((model(x.to(device)).argmax(1).cpu() == y).sum())
        total += len(y)
    return hits / total


def _fit_full(ctx: Ctx) -> StepOutput:
    """Spec §7: every arm on MobileNet-V2, trained jointly on one shared ImageNet loader (the
    arms see the same batches: paired), then each fine-tuned on every fine-grained set (new
    head, whole network); top-1 on ImageNet val and on each set's test split."""
    from subspacelab.api import Member, train_joint
    from subspacelab.data.finegrained import finegrained_split, split_files
    from subspacelab.data.imagenet import imagenet_split

    cfg, t = ctx.cfg, ctx.cfg.train
    im, fg = cfg.data.imagenet, cfg.data.finegrained
    assert im is not None and fg is not None  # the full profile's check
    arms, acc, history = _arms(ctx), {}, {}
    prepared = ctx.inputs["data"]
    for seed in ctx.seeded():
        nets = {arm: full.build_mobilenet_v2(arm, cfg.model.sites) for arm in arms}
        train = imagenet_split(prepared / "imagenet", "train", im.image_size, im.resize_size)
        val = imagenet_split(prepared / "imagenet", "val", im.image_size, im.resize_size)
        result = train_joint(
            ctx,
            [Member(n, _ce(n), t.lr, t.weight_decay) for n in nets.values()],
            epochs=t.epochs,
            loader=_loader(train, t.batch, t.workers, seed),
            optimizer=t.optimizer,
            momentum=t.momentum,
            schedule=t.schedule,
            label=f"seed {seed}: MobileNet-V2 arms on ImageNet",
        )
        history.update({f"seed{seed}/{a}": h for a, h in zip(nets, result.history, strict=True)})
        for arm, net in nets.items():
            acc[f"seed{seed}/imagenet/{arm}/acc"] = _top1(
                net, _loader(val, t.batch, t.workers, None), ctx.device
            )
            ctx.save_model(f"seed{seed}/imagenet/{arm}", net)
        for name in fg.sets:
            train = finegrained_split(
                prepared / "finegrained", name, "train", fg.image_size, fg.resize_size
            )
            test = finegrained_split(
                prepared / "finegrained", name, "test", fg.image_size, fg.resize_size
            )
            classes = 1 + max(y for _, y in split_files(prepared / "finegrained", name, "train"))
            tuned = {}
            for arm, net in nets.items():
                tuned[arm] = copy.deepcopy(net)
                tuned[arm].reset_head(classes)
            train_joint(
                ctx,
                [Member(n, _ce(n), t.finetune_lr, t.weight_decay) for n in tuned.values()],
                epochs=t.finetune_epochs,
                loader=_loader(train, t.batch, t.workers, seed),
                optimizer=t.optimizer,
                momentum=t.momentum,
                schedule=t.schedule,
                label=f"seed {seed}: fine-tuning on {name}",
            )
            for arm, net in tuned.items():
                acc[f"seed{seed}/{name}/{arm}/acc"] = _top1(
                    net, _loader(test, t.batch, t.workers, None), ctx.device
                )
    write_json(ctx.out / "accuracy.json", acc)
    write_json(ctx.out / "history.json", history)
    return StepOutput(acc)


def _report_full(ctx: Ctx) -> Report:
    """Top-1 per set and arm, parameters and MACs at 224 px (the paper's numbers beside)."""
    arms = _arms(ctx)
    acc = read_json(ctx.inputs["fit"] / "accuracy.json")
    history = read_json(ctx.inputs["fit"] / "history.json")
    fg = ctx.cfg.data.finegrained
    sets = ["imagenet", *(fg.sets if fg else [])]
    per_seed = SeedMetrics()
    x = torch.zeros(1, 3, 224, 224)
    costs = {
        arm: count(full.build_mobilenet_v2(arm, ctx.cfg.model.sites).eval(), x) for arm in arms
    }
    for seed in ctx.seeded():
        row = {f"{s}/{arm}/acc": acc[f"seed{seed}/{s}/{arm}/acc"] for s in sets for arm in arms}
        for arm in arms:
            row[f"imagenet/{arm}/params"] = float(costs[arm].params)
            row[f"imagenet/{arm}/macs"] = float(costs[arm].macs)
        per_seed.record(row)
    metrics = per_seed.as_dict()
    lines = [
        "| arm | params | MACs | " + " | ".join(f"{s} top-1" for s in sets) + " |",
        "|---|---|---|" + "---|" * len(sets),
    ]
    for arm in arms:
        cells = " | ".join(f"{np.mean(metrics[f'{s}/{arm}/acc']):.4f}" for s in sets)
        lines.append(f"| {arm} | {int(costs[arm].params)} | {int(costs[arm].macs)} | {cells} |")
    return Report(
        metrics=metrics,
        figures={"acc_vs_macs": _figure(metrics, arms)},
        tables={
            "MobileNet-V2 arms (mean over seeds)": "\n".join(lines),
            "Paper (ImageNet-1K, MobileNet-V2)": PAPER,
            "Deviations": FULL_DEVIATIONS,
        },
        curves={"train_loss": _loss_curve(history, arms, ctx.cfg.seeds)},
    )


FULL_DEVIATIONS = "\n".join(
    [
        "| what | spec / paper | here | why |",
        "|---|---|---|---|",
        "| ImageNet recipe | the standard MobileNet schedule (SGD, cosine or step), 150-200 "
        "epochs | SGD 0.9, cosine, 150 epochs, lr 0.05 at batch 256, wd 4e-5 (train.*) | the "
        "spec names no exact values |",
        "| ULSAM positions | late inverted residuals with equal in/out channels | blocks 15 and "
        "16 (160→160; model.sites) | the paper's exact blocks are not in the spec |",
        "| fine-grained transfer | ImageNet-pretrained, fine-tuned | whole network, new head, "
        "30 epochs SGD lr 0.01 cosine (train.finetune_*) | the spec gives no transfer recipe |",
        "| MobileNet-V2 | torchvision's definition | our definition (same 3,504,872 params) | "
        "no optional package; tested on CPU |",
    ]
)

PAPER = (
    "| quantity | paper |\n|---|---|\n"
    "| top-1 change with ULSAM | ≈ +0.27 pt |\n"
    "| FLOPs | ≈ 13% fewer |\n"
    "| parameters | ≈ 25% fewer |\n"
    "| fine-grained transfer (Food-101, Dogs, CUB) | > 1 pt better |"
)


def _features_before(model: core.CompactCNN, att: core.ULSAM, x: Tensor) -> Tensor:
    """The input of ``model``'s ULSAM module on ``x`` (a forward hook, no gradient)."""
    seen: list[Tensor] = []
    handle = att.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        model(x)
    finally:
        handle.remove()
    return seen[0]


def _loss_curve(
    history: dict[str, list[float]], arms: list[str], seeds: list[int]
) -> list[dict[str, float]]:
    """Training loss per epoch and arm, mean over seeds (``history``: ``seed<s>/<arm>`` ->
    per-epoch losses)."""
    epochs = len(next(iter(history.values())))
    return [
        {
            "epoch": e + 1,
            **{arm: float(np.mean([history[f"seed{s}/{arm}"][e] for s in seeds])) for arm in arms},
        }
        for e in range(epochs)
    ]


def _setting(names: object) -> str:
    """The setting the arms were measured in: ``imagenet`` (full) or ``cluttered`` (mini)."""
    return "imagenet" if any(str(n).startswith("imagenet/") for n in names) else "cluttered"


def _table(metrics: dict[str, list[float]], arms: list[str]) -> str:
    lines = [
        "| arm | test acc (mean ± sd) | params | MACs | 1 − attention entropy / log(hw) |",
        "|---|---|---|---|---|",
    ]
    for arm in arms:
        acc = np.asarray(metrics[f"cluttered/{arm}/acc"])
        ent = metrics.get(f"cluttered/{arm}/entropy")
        lines.append(
            f"| {arm} | {acc.mean():.4f} ± {acc.std():.4f} "
            f"| {int(metrics[f'cluttered/{arm}/params'][0])} "
            f"| {int(metrics[f'cluttered/{arm}/macs'][0])} "
            f"| {'' if ent is None else f'{1 - np.mean(ent):.2e}'} |"
        )
    return "\n".join(lines)


DEVIATION_ROWS = (
    (
        "BN momentum in ULSAM",
        "0.9 in the official code",
        "0.1 (model.bn_momentum)",
        "PyTorch semantics: 0.9 makes the running stats follow the last batch (spec §9)",
    ),
    (
        "per-subspace convs",
        "g separate DW/PW convs",
        "one grouped DW and one grouped PW conv",
        "the same maps, one op each",
    ),
    (
        "MACs",
        "a FLOP counter",
        "conv/linear/avg-pool accumulates + one multiply-add per element "
        "of A⊙F+F; BN, ReLU, max-pool, softmax count 0",
        "one convention for every arm (spec §9)",
    ),
    (
        "test canvases",
        "from sklearn's test portion",
        "a seeded source split (data.test_fraction)",
        "sklearn's digits have no official split",
    ),
)
DEVIATIONS = "\n".join(
    ["| what | spec / paper | here | why |", "|---|---|---|---|"]
    + ["| " + " | ".join(row) + " |" for row in DEVIATION_ROWS]
)


def _figure(metrics: dict[str, list[float]], arms: list[str]) -> Figure:
    """Accuracy against MACs per arm (seeds and mean ± sd)."""
    import matplotlib.pyplot as plt

    s = _setting(metrics)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for arm in arms:
        acc = metrics[f"{s}/{arm}/acc"]
        macs = metrics[f"{s}/{arm}/macs"][0] / 1e6
        ax.scatter([macs] * len(acc), acc, alpha=0.4)
        ax.errorbar(macs, np.mean(acc), yerr=np.std(acc), fmt="o", label=arm, capsize=3)
    ax.set_xlabel("MACs per image (millions)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"ULSAM ({s}): accuracy vs cost")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _replace_saves_cost(m: Metrics) -> ClaimResult:
    """(a) replacing with g=4: >= 15% fewer params, fewer MACs, accuracy >= baseline - 0.3 pt."""
    acc = m.family(_setting(m) + "/{arm}/acc")
    params = m.family(_setting(m) + "/{arm}/params")
    macs = m.family(_setting(m) + "/{arm}/macs")
    saved = 1.0 - np.asarray(params["replace_g4"].values) / np.asarray(params["baseline"].values)
    return decide(
        every("param saving", saved.tolist(), ">=", 0.15),
        every("MACs replace_g4 - baseline", gap(macs["replace_g4"], macs["baseline"]), "<", 0.0),
        on_mean("acc replace_g4 - baseline", gap(acc["replace_g4"], acc["baseline"]), ">=", -0.003),
        baseline_acc=acc["baseline"],
        replace_g4_acc=acc["replace_g4"],
    )


def _insert_helps(m: Metrics) -> ClaimResult:
    """(b) inserted ULSAM (g=4) >= baseline + 0.5 pt."""
    acc = m.family(_setting(m) + "/{arm}/acc")
    return decide(
        on_mean("acc insert_g4 - baseline", gap(acc["insert_g4"], acc["baseline"]), ">=", 0.005),
        insert_g4_acc=acc["insert_g4"],
        # the attention's entropy (the mini report measures it)
        **{k[10:].replace("/", "_"): v for k, v in m.select("cluttered/insert_g4/entropy").items()},
    )


def _subspaces_help(m: Metrics) -> ClaimResult:
    """(c) g=4 >= g=1 in the replacing variant."""
    acc = m.family(_setting(m) + "/{arm}/acc")
    return decide(
        on_mean(
            "acc replace_g4 - replace_g1", gap(acc["replace_g4"], acc["replace_g1"]), ">=", 0.0
        ),
        replace_g1_acc=acc["replace_g1"],
    )


STUDY = Study(
    slug="ulsam",
    title="ULSAM: Ultra-Lightweight Subspace Attention Module",
    arxiv="2006.15102",
    group="heads, modules and contrastive",
    config=UlsamConfig,
    steps=(
        Step(
            "data",
            _data,
            full=_data_full,
            reads=("data",),
            description="cluttered digits per seed, or ImageNet and the fine-grained sets",
        ),
        Step(
            "fit",
            _fit,
            full=_fit_full,
            needs=("data",),
            reads=("model", "train"),
            kind="models",
            description="baseline, inserted and replacing ULSAM CNNs, all seeds in one joint run",
        ),
        Step(
            "report",
            _report,
            full=_report_full,
            needs=("data", "fit"),
            reads=("model",),
            kind="report",
        ),
    ),
    claims=(
        Claim(
            id="replace_saves",
            statement="ULSAM replacing the last 128→128 block (g=4): ≥ 15% fewer params, fewer "
            "MACs, accuracy ≥ baseline − 0.3 pt",
            paper="MobileNet-V2 + ULSAM: ≈25% fewer params, ≈13% fewer FLOPs, +0.27% top-1 "
            "(ImageNet-1K)",
            check=_replace_saves_cost,
        ),
        Claim(
            id="insert_helps",
            statement="ULSAM inserted after the last block (g=4) ≥ baseline + 0.5 pt",
            paper="inserting ULSAM adds negligible cost and improves top-1 "
            "(>1% on fine-grained sets)",
            check=_insert_helps,
        ),
        Claim(
            id="subspaces_help",
            statement="replacing variant: g=4 ≥ g=1",
            paper="g > 1 usually beats g = 1 (multi-scale, multi-frequency features)",
            check=_subspaces_help,
        ),
    ),
    curves=(
        Curve("train_loss", x="epoch", y=ARMS, title="training loss per epoch (mean over seeds)"),
    ),
    headline=("cluttered/*/acc",),
)
