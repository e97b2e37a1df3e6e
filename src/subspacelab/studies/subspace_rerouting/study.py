"""Subspace rerouting, measurement side (arXiv 2503.06269): the chain
data -> train -> features -> fit -> intervene -> suffix -> report.

Miniature (spec §6), a synthetic token language with abstract restricted tokens R1..R20 and no
natural language anywhere (core.py):

* data — per seed: training sequences (``BOS x SEP`` then ``REFUSE EOS`` if x holds a restricted
  token, else ``COMPLY x EOS``), contrastive pairs (X+ with one restricted token, X- the same with
  it swapped for a benign one) for directions and probes and held out, and the attack set;
* train — the 4-layer toy transformer per seed, every seed in one ``train_joint`` run;
* features — last-token (SEP) residuals at every residual point for the pairs;
* fit — per residual point: the difference-in-means direction r̂, a logistic probe (and a probe
  on shuffled labels, the control), held-out accuracy, cos(w, r̂), cross-layer cosines, the
  logit lens of r̂ (``subspacelab.representation.directions``);
* intervene — directional ablation (a = -1) and steering (a = -2) of r̂ at every residual point
  and position vs random unit directions: the share of REFUSE decisions turned into COMPLY;
* suffix — toy SSR: a 3-token suffix searched with GCG swaps against the probes' loss
  -log(1 - p) at the target layers, vs random suffixes; success = the model answers COMPLY;
* report — metrics ``<setting>/<arm>/<quantity>``, the probe curve, the figure, the tables.

Scope (issue 17): the suffix optimisation exists for the toy model only (``core.ssr_attack``
refuses any other module). The full profile (``full.py``) loads an open chat model at a pinned
revision and measures its refusal directions and per-layer probes on a contrastive prompt file
kept outside the repository; it stops there: its intervene and suffix steps run no intervention
and no optimisation, and the config refuses the suffix section together with a real model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

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
    write_json,
)
from subspacelab.representation import directions as D
from subspacelab.studies.subspace_rerouting import core, full
from subspacelab.studies.subspace_rerouting.config import SubspaceReroutingConfig

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Ctx = StepContext[SubspaceReroutingConfig]
ABLATION, STEERING = -1.0, -2.0  # e ← e + a r̂ r̂ᵀ e (the paper's a)
SHUFFLE_SEED = 1_000_003  # the label permutation of the control probe (per seed, offset)


def _lang(ctx: Ctx) -> core.Language:
    d = ctx.cfg.data
    return core.Language(d.vocab, d.n_restricted, d.min_len, d.max_len)


def _model(ctx: Ctx) -> core.ToyTransformer:
    m, lang = ctx.cfg.model, _lang(ctx)
    return core.ToyTransformer(lang.vocab, m.d_model, m.heads, m.layers, m.mlp, lang.seq_len)


def _pad(rows: list[torch.Tensor]) -> torch.Tensor:
    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=core.PAD)


def _unpad(rows: torch.Tensor) -> list[torch.Tensor]:
    return [r[r != core.PAD] for r in rows]


def _data(ctx: Ctx) -> StepOutput:
    """Per seed: training sequences, train/test contrastive pairs and the attack candidates
    (instructions right-padded with PAD, which no instruction contains)."""
    d, lang = ctx.cfg.data, _lang(ctx)
    for seed in ctx.seeded():
        g = torch.Generator().manual_seed(seed)
        instr, labels = core.instructions(lang, d.n_train, d.p_restricted, d.max_restricted, g)
        tokens, targets = core.training_sequences(instr, labels, lang)
        held, held_labels = core.instructions(lang, 1000, d.p_restricted, d.max_restricted, g)
        h_tokens, h_targets = core.training_sequences(held, held_labels, lang)
        pos, neg = core.contrastive_pairs(lang, d.n_pairs, g)
        tpos, tneg = core.contrastive_pairs(lang, d.n_test_pairs, g)
        attack, _ = core.contrastive_pairs(lang, d.n_attack, g, max_len=d.attack_max_len)
        ctx.save(
            f"seed{seed}",
            {
                "tokens": tokens,
                "targets": targets,
                "held_tokens": h_tokens,
                "held_targets": h_targets,
                "pos": _pad(pos),
                "neg": _pad(neg),
                "test_pos": _pad(tpos),
                "test_neg": _pad(tneg),
                "attack": _pad(attack),
            },
        )
    return StepOutput(metrics={"restricted_share": float(d.p_restricted)})


def _train(ctx: Ctx) -> StepOutput:
    """The toy transformer per seed (Adam, constant lr), all seeds in one joint run."""
    from subspacelab.api import Member, train_joint

    t = ctx.cfg.train
    members = []
    for seed in ctx.seeded():
        raw = ctx.load(f"seed{seed}")
        model = _model(ctx)  # initialised under this seed
        members.append(
            Member(
                model,
                core.sequence_loss(model),
                t.lr,
                data=(raw["tokens"], raw["targets"]),
                seed=seed,
            )
        )
    result = train_joint(
        ctx,
        members,
        epochs=t.epochs,
        batch_size=t.batch,
        optimizer="adam",
        label="toy transformers",
        params={"seeds": ",".join(map(str, ctx.cfg.seeds))},
    )
    out: dict[str, float] = {}
    for seed, member in zip(ctx.cfg.seeds, members, strict=True):
        ctx.save_model(f"seed{seed}", member.model)
        raw = ctx.load(f"seed{seed}")
        decision, echo = core.answer_accuracy(
            member.model.eval(), raw["held_tokens"], raw["held_targets"]
        )
        out |= {f"seed{seed}/decision_acc": decision, f"seed{seed}/echo_acc": echo}
    write_json(ctx.out / "history.json", {"loss": result.history, "accuracy": out})
    return StepOutput(metrics=out)


def _features(ctx: Ctx) -> StepOutput:
    """Last-token residuals ``(layers + 1, n, d)`` of the train and test pairs per seed, and
    the toy model's decisions on them."""
    for seed in ctx.seeded():
        raw = ctx.load(f"seed{seed}", step="data")
        model = ctx.load_model(_model(ctx), f"seed{seed}", step="train").eval()
        tensors = {}
        for name in ("pos", "neg", "test_pos", "test_neg"):
            tokens, sep = core.prompts(_unpad(raw[name]))
            tensors[name] = core.residuals(model, tokens, sep)
            tensors[f"{name}_decision"] = core.decisions(model, tokens, sep)
        ctx.save(f"seed{seed}", tensors)
    return StepOutput()


def fit_directions(
    pos: torch.Tensor,
    neg: torch.Tensor,
    test_pos: torch.Tensor,
    test_neg: torch.Tensor,
    epochs: int,
    lr: float,
    seed: int,
) -> tuple[dict[str, torch.Tensor], dict[str, list[float] | list[list[float]]]]:
    """Directions, probes (and the shuffled-label control) per residual point; their held-out
    accuracies, |cos(w, r̂)| and the cross-layer cosines of r̂. Shared by both profiles."""
    _, r_hat = D.diff_in_means(pos, neg)
    x = torch.cat([pos, neg], 1)
    y = torch.cat([torch.ones(pos.shape[1]), torch.zeros(neg.shape[1])]).long()
    xt = torch.cat([test_pos, test_neg], 1)
    yt = torch.cat([torch.ones(test_pos.shape[1]), torch.zeros(test_neg.shape[1])]).long()
    probes = D.fit_probes(x, y, epochs=epochs, lr=lr, generator=torch.Generator().manual_seed(seed))
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed + SHUFFLE_SEED))
    shuffled = D.fit_probes(
        x, y[perm], epochs=epochs, lr=lr, generator=torch.Generator().manual_seed(seed)
    )
    tensors = {
        "r_hat": r_hat,
        "weight": probes.weight,
        "bias": probes.bias,
        "shuffled_weight": shuffled.weight,
        "shuffled_bias": shuffled.bias,
    }
    results = {
        "acc": D.probe_accuracy(probes, xt, yt).tolist(),
        "train_acc": D.probe_accuracy(probes, x, y).tolist(),
        "shuffled_acc": D.probe_accuracy(shuffled, xt, yt).tolist(),
        "abs_cos": D.cosine(probes.weight, r_hat).abs().tolist(),
        "rhat_norm": D.diff_in_means(pos, neg)[0].norm(dim=-1).tolist(),
        "cross_cos": D.cosine_matrix(r_hat).tolist(),
    }
    return tensors, results


def _fit(ctx: Ctx) -> StepOutput:
    """r̂, probes and their held-out numbers per seed and residual point."""
    p = ctx.cfg.probe
    for seed in ctx.seeded():
        f = ctx.load(f"seed{seed}")
        tensors, results = fit_directions(
            f["pos"], f["neg"], f["test_pos"], f["test_neg"], p.epochs, p.lr, seed
        )
        ctx.save(f"seed{seed}", tensors, kind="models")
        write_json(ctx.out / f"seed{seed}.json", results)
    return StepOutput()


def _flip_rate(decided: torch.Tensor, refused: torch.Tensor) -> float:
    """Share of the refused prompts answered COMPLY."""
    return float((decided[refused] == core.COMPLY).float().mean()) if refused.any() else 0.0


def _intervene(ctx: Ctx) -> StepOutput:
    """Ablation / steering of r̂ (every residual point, every position) on the held-out X+
    the model refuses, and the same with random unit directions; the logit lens of r̂."""
    e = ctx.cfg.eval
    for seed in ctx.seeded():
        raw = ctx.load(f"seed{seed}", step="data")
        feats = ctx.load(f"seed{seed}", step="features")
        fitted = ctx.load(f"seed{seed}", step="fit", kind="models")
        model = ctx.load_model(_model(ctx), f"seed{seed}", step="train").eval()
        tokens, sep = core.prompts(_unpad(raw["test_pos"]))
        refused = feats["test_pos_decision"] == core.REFUSE
        r_hat = fitted["r_hat"]
        g = torch.Generator().manual_seed(seed)
        out: dict[str, float] = {
            "refused": float(refused.float().mean()),
            "neg_complied": float((feats["test_neg_decision"] == core.COMPLY).float().mean()),
        }
        for name, a in (("ablation", ABLATION), ("steering", STEERING)):
            out[f"{name}_rhat"] = _flip_rate(
                core.decisions(model, tokens, sep, core.steering_hook(r_hat, a)), refused
            )
            flips = [
                _flip_rate(
                    core.decisions(
                        model,
                        tokens,
                        sep,
                        core.steering_hook(
                            core.random_directions(len(r_hat), r_hat.shape[1], g), a
                        ),
                    ),
                    refused,
                )
                for _ in range(e.n_random)
            ]
            out[f"{name}_random"] = float(np.mean(flips))
        out["lens_refuse_rank"] = float(core.logit_lens_rank(model, r_hat[-1], core.REFUSE))
        write_json(ctx.out / f"seed{seed}.json", out)
    return StepOutput()


def _suffix(ctx: Ctx) -> StepOutput:
    """Toy SSR per seed on the attack prompts, and random suffixes; flips are counted among the
    prompts the toy model refuses without a suffix (0 when it refuses none)."""
    s = ctx.cfg.suffix
    if s is None:
        raise ValueError("subspace_rerouting.suffix: must be set for the toy suffix step")
    lang = _lang(ctx)
    allowed = lang.benign_ids()
    settings = core.SSRSettings(
        s.search_width, s.top_k, s.buffer, s.patience, s.max_iters, s.early_stop
    )
    for seed in ctx.seeded():
        raw = ctx.load(f"seed{seed}", step="data")
        fitted = ctx.load(f"seed{seed}", step="fit", kind="models")
        model = ctx.load_model(_model(ctx), f"seed{seed}", step="train").eval()
        probes = D.Probes(fitted["weight"], fitted["bias"])
        attack = _unpad(raw["attack"])
        tokens, sep = core.prompts(attack)
        refused = core.decisions(model, tokens, sep) == core.REFUSE
        g = torch.Generator().manual_seed(seed)
        init = allowed[torch.randint(len(allowed), (len(attack), s.length), generator=g)]
        res = core.ssr_attack(model, probes, s.target_layers, attack, init, allowed, settings, g)
        tok, idx = core.prompts(attack, res.suffix)
        rand = []
        for _ in range(s.n_random):
            suffix = allowed[torch.randint(len(allowed), (len(attack), s.length), generator=g)]
            r_tok, r_idx = core.prompts(attack, suffix)
            rand.append(_flip_rate(core.decisions(model, r_tok, r_idx), refused))
        out = {
            "refused": float(refused.float().mean()),
            "flip": _flip_rate(core.decisions(model, tok, idx), refused),
            "probe_flip": float((res.loss[refused] <= s.early_stop).float().mean())
            if refused.any()
            else 0.0,
            "iters": float(res.iters.float().mean()),
            "random_flip": float(np.mean(rand)),
            "trace": res.trace,
        }
        ctx.progress(f"seed {seed}: SSR flips {out['flip']:.2f}, random {out['random_flip']:.2f}")
        write_json(ctx.out / f"seed{seed}.json", out)
    return StepOutput()


def _report(ctx: Ctx) -> Report:
    """Metrics per seed, the probe curve, the figure and the tables."""
    middle = ctx.cfg.eval.middle_layer
    per_seed = SeedMetrics()
    traces: list[list[float]] = []
    fits = [read_json(ctx.inputs["fit"] / f"seed{s}.json") for s in ctx.cfg.seeds]
    for seed, fit in zip(ctx.cfg.seeds, fits, strict=True):
        n_points = len(fit["acc"])
        deep = range(middle, n_points)
        row = {f"layer{i}/probe/acc": fit["acc"][i] for i in range(n_points)}
        row |= {f"layer{i}/shuffled/acc": fit["shuffled_acc"][i] for i in range(n_points)}
        row |= {f"layer{i}/probe/abs_cos_rhat": fit["abs_cos"][i] for i in range(n_points)}
        row |= {
            "deep/probe/min_acc": min(fit["acc"][i] for i in deep),
            "deep/shuffled/max_acc": max(fit["shuffled_acc"][i] for i in deep),
            "deep/probe/min_abs_cos": min(fit["abs_cos"][i] for i in deep),
            "directions/adjacent/cos": float(
                np.mean([fit["cross_cos"][i][i + 1] for i in range(max(1, middle), n_points - 1)])
            ),
        }
        inter_file = ctx.inputs["intervene"] / f"seed{seed}.json"
        if inter_file.exists():
            it = read_json(inter_file)
            row |= {
                "toy/model/refused_pos": it["refused"],
                "toy/model/complied_neg": it["neg_complied"],
                "ablation/rhat/flip": it["ablation_rhat"],
                "ablation/random/flip": it["ablation_random"],
                "steering/rhat/flip": it["steering_rhat"],
                "steering/random/flip": it["steering_random"],
                "directions/logit_lens/refuse_rank": it["lens_refuse_rank"],
            }
        suffix_file = ctx.inputs["suffix"] / f"seed{seed}.json"
        if suffix_file.exists():
            sx = read_json(suffix_file)
            traces.append(sx["trace"])
            row |= {
                "ssr/probe_loss/flip": sx["flip"],
                "ssr/probe_loss/probe_flip": sx["probe_flip"],
                "ssr/probe_loss/iters": sx["iters"],
                "ssr/random_suffix/flip": sx["random_flip"],
                "ssr/attack/refused": sx["refused"],
            }
        per_seed.record(row)
    metrics = per_seed.as_dict()
    n_points = len(fits[0]["acc"])
    curve = [
        {
            "layer": i,
            "probe": float(np.mean([f["acc"][i] for f in fits])),
            "shuffled": float(np.mean([f["shuffled_acc"][i] for f in fits])),
            "abs_cos_rhat": float(np.mean([f["abs_cos"][i] for f in fits])),
        }
        for i in range(n_points)
    ]
    cross = np.mean([np.asarray(f["cross_cos"]) for f in fits], axis=0)
    return Report(
        metrics=metrics,
        figures={"probes_and_directions": _figure(curve, cross)},
        tables={
            "Per residual point (mean over seeds)": _layer_table(curve),
            "Interventions and toy SSR (mean over seeds)": _effects_table(metrics),
            "group": _group_row(metrics, n_points, middle),
            "Deviations": DEVIATIONS,
        },
        curves={
            "probe_by_layer": curve,
            "ssr_loss": [
                {"iteration": i, "probe_loss": float(np.mean([t[i] for t in traces]))}
                for i in range(len(traces[0]))
            ]
            if traces
            else [{"iteration": 0, "probe_loss": float("nan")}],  # no toy SSR in this profile
        },
    )


def _layer_table(curve: list[dict[str, float]]) -> str:
    lines = [
        "| residual point | probe acc (held out) | shuffled-label probe | abs cos(w, r̂) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {int(r['layer'])} | {r['probe']:.3f} | {r['shuffled']:.3f} | {r['abs_cos_rhat']:.3f} |"
        for r in curve
    ]
    return "\n".join(lines)


def _effects_table(metrics: dict[str, list[float]]) -> str:
    rows = [
        ("ablation (a = -1), every layer", "ablation/rhat/flip", "ablation/random/flip"),
        ("steering (a = -2), every layer", "steering/rhat/flip", "steering/random/flip"),
        ("toy SSR (3-token suffix)", "ssr/probe_loss/flip", "ssr/random_suffix/flip"),
    ]
    lines = ["| intervention | REFUSE→COMPLY, r̂ / SSR | control (random) |", "|---|---|---|"]
    for label, ours, ctrl in rows:
        if ours in metrics:
            lines.append(
                f"| {label} | {np.mean(metrics[ours]):.3f} | {np.mean(metrics[ctrl]):.3f} |"
            )
        else:
            lines.append(f"| {label} | not run (measurement-only profile) | |")
    return "\n".join(lines)


def _group_row(metrics: dict[str, list[float]], n_points: int, middle: int) -> str:
    """The issue-17 table's row: the subspace, what it explains, the full-space baseline."""
    return (
        "| subspace | dimension | chosen by | what it explains | full-space baseline |\n"
        "|---|---|---|---|---|\n"
        f"| the refusal direction r̂ at each residual point | 1 per point ({n_points} points) "
        f"| difference of the refuse and comply means; read from point {middle} on (fixed in "
        f"advance) | refuse vs comply: min held-out probe acc "
        f"{np.mean(metrics['deep/probe/min_acc']):.3f}, min abs cos(probe w, r̂) "
        f"{np.mean(metrics['deep/probe/min_abs_cos']):.3f} | a logistic probe on the whole "
        "residual stream (its accuracy is the first number) |\n"
    )


DEVIATION_ROWS = (
    (
        "hooks",
        "transformer-lens HookedTransformer",
        "own toy transformer with residual hooks; transformers' hidden_states in the full profile",
        "no transformer-lens in the lab's pins; same residual points",
    ),
    (
        "probe fit",
        "per-layer Adam loop",
        "all layers in one full-batch Adam loop (layers independent; tested)",
        "same optimum, one pass",
    ),
    (
        "SSR candidates",
        "full forward per candidate",
        "prefix keys/values cached once per prompt, candidates run only the suffix and SEP "
        "(tested equal to the full forward)",
        "speed; the same losses",
    ),
    (
        "SSR patience",
        "repository's buffer/patience logic",
        "after `patience` iterations without a better loss, continue from a random buffer entry",
        "the repository is unlicensed: re-implemented from the paper's description",
    ),
    (
        "attack set",
        "harmful instructions",
        "X+ of the synthetic language with at most attack_max_len tokens; flips counted among "
        "those the toy refuses without a suffix",
        "no harmful content (issue 17); the suffix keeps positions within trained lengths",
    ),
    (
        "SSR success",
        "keyword judge / guard model on generations",
        "the toy's top-1 decision token at SEP is COMPLY",
        "the toy language has one decision token",
    ),
    (
        "full profile",
        "probes, steering, SSR on four chat models",
        "directions and probes on one open chat model; no intervention, no suffix step",
        "issue 17: measurement only, no attack path against a real model",
    ),
)
DEVIATIONS = "\n".join(
    ["| what | spec / paper | here | why |", "|---|---|---|---|"]
    + ["| " + " | ".join(row) + " |" for row in DEVIATION_ROWS]
)


def _figure(curve: list[dict[str, float]], cross: np.ndarray) -> Figure:
    """Probe accuracy and |cos(w, r̂)| per residual point; cross-layer cosines of r̂."""
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9, 3.5))
    layers = [r["layer"] for r in curve]
    ax.plot(layers, [r["probe"] for r in curve], "o-", label="probe (held out)")
    ax.plot(layers, [r["shuffled"] for r in curve], "s--", label="shuffled-label probe")
    ax.plot(layers, [r["abs_cos_rhat"] for r in curve], "^-", label="abs cos(w, r̂)")
    ax.axhline(0.95, color="grey", lw=0.5)
    ax.set_xlabel("residual point")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
    ax.set_title("refuse vs comply, last token")
    im = bx.imshow(cross, vmin=-1, vmax=1, cmap="RdBu_r")
    bx.set_title("cos(r̂_i, r̂_j)")
    bx.set_xlabel("residual point")
    fig.colorbar(im, ax=bx)
    fig.tight_layout()
    return fig


def _missing(m: Metrics, name: str) -> ClaimResult | None:
    """Where the toy-only metric ``name`` is absent (the measurement-only full profile): an
    explicit inconclusive verdict saying so."""
    if name in m:
        return None
    return decide(on_mean(f"{name}: not measured (toy model only, issue 17)", [0.0], ">=", 1.0))


def _probe_separates(m: Metrics) -> ClaimResult:
    """Probe accuracy >= 0.95 at every residual point from the middle one on; the shuffled-label
    control stays near chance (<= 0.6) there."""
    return decide(
        on_mean("min held-out probe acc, points >= middle", m["deep/probe/min_acc"], ">=", 0.95),
        on_mean("max shuffled-label probe acc there", m["deep/shuffled/max_acc"], "<=", 0.6),
        **{f"layer{i}_acc": s for i, s in m.family("layer{i}/probe/acc").items()},
    )


def _probe_is_direction(m: Metrics) -> ClaimResult:
    """|cos(w_l, r̂^l)| >= 0.8 at every residual point from the middle one on."""
    return decide(
        on_mean("min abs cos(w, r̂), points >= middle", m["deep/probe/min_abs_cos"], ">=", 0.8),
        **{f"layer{i}_abs_cos": s for i, s in m.family("layer{i}/probe/abs_cos_rhat").items()},
    )


def _ablation_flips(m: Metrics) -> ClaimResult:
    """Ablating r̂ flips >= 80 % of REFUSE; a random unit direction <= 5 %."""
    if (res := _missing(m, "ablation/rhat/flip")) is not None:
        return res
    rhat, rand = m["ablation/rhat/flip"], m["ablation/random/flip"]
    return decide(
        on_mean("REFUSE→COMPLY under ablation of r̂", rhat, ">=", 0.8),
        on_mean("REFUSE→COMPLY under ablation of a random direction", rand, "<=", 0.05),
        on_mean("r̂ - random", gap(rhat, rand), ">", 0.0),
        steering_rhat=m["steering/rhat/flip"],
        steering_random=m["steering/random/flip"],
    )


def _ssr_flips(m: Metrics) -> ClaimResult:
    """Toy SSR flips >= 80 % within max_iters; random suffixes <= 10 %."""
    if (res := _missing(m, "ssr/probe_loss/flip")) is not None:
        return res
    ssr, rand = m["ssr/probe_loss/flip"], m["ssr/random_suffix/flip"]
    return decide(
        on_mean("REFUSE→COMPLY with the SSR suffix", ssr, ">=", 0.8),
        on_mean("REFUSE→COMPLY with a random suffix", rand, "<=", 0.1),
        on_mean("SSR - random", gap(ssr, rand), ">", 0.0),
        probe_flip=m["ssr/probe_loss/probe_flip"],
        iterations=m["ssr/probe_loss/iters"],
    )


STUDY = Study(
    slug="subspace_rerouting",
    title="Using Mechanistic Interpretability to Craft Adversarial Attacks against LLMs "
    "(measurement side)",
    arxiv="2503.06269",
    group="language and modalities",
    config=SubspaceReroutingConfig,
    steps=(
        Step(
            "data",
            _data,
            reads=("data",),
            description="synthetic token language: training set, contrastive pairs, attack set",
            full=full.data_step,
        ),
        Step(
            "train",
            _train,
            needs=("data",),
            reads=("data", "model", "train"),
            kind="models",
            description="toy transformers, every seed in one joint run",
            full=full.model_step,
        ),
        Step(
            "features",
            _features,
            needs=("data", "train"),
            reads=("data", "model"),
            description="last-token residuals at every residual point",
            full=full.features_step,
        ),
        Step(
            "fit",
            _fit,
            needs=("features",),
            reads=("probe",),
            kind="models",
            description="difference-in-means directions and logistic probes per layer",
        ),
        Step(
            "intervene",
            _intervene,
            needs=("data", "train", "features", "fit"),
            reads=("data", "model", "eval"),
            description="ablation / steering of r̂ vs random directions (toy model)",
            full=full.no_intervention_step,
        ),
        Step(
            "suffix",
            _suffix,
            needs=("data", "train", "fit"),
            reads=("data", "model", "suffix"),
            description="toy SSR vs random suffixes (toy model only)",
            full=full.no_suffix_step,
        ),
        Step(
            "report",
            _report,
            needs=("fit", "intervene", "suffix"),
            reads=("eval",),
            kind="report",
        ),
    ),
    claims=(
        Claim(
            id="probe_separates",
            statement="probe accuracy ≥ 0.95 from some middle layer onward (here: every "
            "residual point from eval.middle_layer on, held-out pairs; shuffled-label probe ≤ 0.6)",
            paper="Llama-3.2-1B: probes > 95 % from layer 3, 0.99 at layer 5",
            check=_probe_separates,
        ),
        Claim(
            id="probe_is_direction",
            statement="|cos(w_l, r̂^l)| ≥ 0.8 at those layers",
            paper="probe weight W ≈ r̂ (bias ≈ 0)",
            check=_probe_is_direction,
        ),
        Claim(
            id="ablation_flips",
            statement="ablating r̂ flips ≥ 80 % of REFUSE outputs while a random unit direction "
            "flips ≤ 5 %",
            paper="directional ablation / steering with r̂ suppresses refusal",
            check=_ablation_flips,
        ),
        Claim(
            id="ssr_flips",
            statement="toy SSR (probe loss, 3-token suffix, GCG swaps) flips ≥ 80 % within 60 "
            "iterations vs random suffix ≤ 10 %",
            paper="Probe-SSR ASR 0.80-0.91 on four chat models (cited, not re-generated)",
            check=_ssr_flips,
        ),
    ),
    curves=(
        Curve(
            "probe_by_layer",
            x="layer",
            y=("probe", "shuffled", "abs_cos_rhat"),
            title="probe accuracy and abs cos(w, r̂) per residual point (mean over seeds)",
        ),
        Curve(
            "ssr_loss",
            x="iteration",
            y=("probe_loss",),
            title="toy SSR: best probe loss per iteration (mean over prompts and seeds)",
        ),
    ),
    headline=("deep/*/*", "ablation/*/flip", "ssr/*/flip"),
)
