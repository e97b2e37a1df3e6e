"""The shared "merge-bench" of the dc_merge and concrete_merge miniatures.

sklearn digits under T fixed input transforms (one task each), an MLP backbone pretrained on the
identity task, and frozen heads: H1 a per-task linear probe on base features, H2 the shared base
head. Task models fine-tune the backbone only (full FT, or LoRA merged back into the weights), so
every task vector lives in the backbone's parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from subspacelab.io import load_tensors, read_json
from subspacelab.merging.algebra import StateDict

TRANSFORMS = ("identity", "hflip", "vflip", "transpose", "invert", "rot90", "roll2", "permute")


def pixel_permutation(seed: int, side: int = 8) -> np.ndarray:
    """The fixed pixel permutation of the ``permute`` task."""
    return np.random.default_rng(seed).permutation(side * side)


def apply_transform(name: str, x: Tensor, perm: np.ndarray, side: int = 8) -> Tensor:
    """Task ``name``'s transform of flattened ``side``×``side`` images in [0, 1]."""
    img = x.reshape(-1, side, side)
    table: dict[str, Callable[[], Tensor]] = {
        "identity": lambda: img,
        "hflip": lambda: img.flip(2),
        "vflip": lambda: img.flip(1),
        "transpose": lambda: img.transpose(1, 2),
        "invert": lambda: 1.0 - img,
        "rot90": lambda: torch.rot90(img, 1, (1, 2)),
        "roll2": lambda: torch.roll(img, 2, dims=2),
        "permute": lambda: img.reshape(-1, side * side)[:, torch.as_tensor(perm)],
    }
    if name not in table:
        raise KeyError(f"unknown task transform {name!r}; known: {', '.join(TRANSFORMS)}")
    return table[name]().reshape(len(x), -1).contiguous()


class MLPBackbone(nn.Sequential):
    """``in → hidden[0] → … → hidden[-1]`` with ReLU after every layer."""

    def __init__(self, in_dim: int, hidden: Sequence[int]) -> None:
        layers: list[nn.Module] = []
        for d_in, d_out in zip([in_dim, *hidden[:-1]], hidden, strict=True):
            layers += [nn.Linear(d_in, d_out), nn.ReLU()]
        super().__init__(*layers)


def head_logits(features: Tensor, head: StateDict) -> Tensor:
    """A frozen linear head ``W f + b`` from its state dict (keys ``weight``, ``bias``)."""
    return features @ head["weight"].T + head["bias"]


def merged_logits(backbone: nn.Module, params: StateDict, head: StateDict, x: Tensor) -> Tensor:
    """Logits of the backbone under ``params`` (differentiable) followed by ``head``."""
    return head_logits(functional_call(backbone, params, (x,)), head)


@torch.no_grad()
def task_accuracies(
    backbone: nn.Module,
    params: StateDict,
    heads: Sequence[StateDict],
    xs: Sequence[Tensor],
    ys: Sequence[Tensor],
) -> list[float]:
    """Accuracy on every task with its own head."""
    return [
        float((merged_logits(backbone, params, h, x).argmax(1) == y).double().mean())
        for h, x, y in zip(heads, xs, ys, strict=True)
    ]


ZOO_SLUG = "task_zoo"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Zoo:
    """One seed of the task zoo, loaded: models, frozen heads and the task data.

    ``heads[h][t]`` is task t's head under variant h; ``finetuned[(h, regime)][t]`` is task t's
    fine-tuned backbone; ``x[split][t]``, ``y[split][t]`` are task t's inputs and labels.
    """

    tasks: list[str]
    hidden: list[int]
    lora_rank: int
    base: StateDict
    heads: dict[str, list[StateDict]]
    finetuned: dict[tuple[str, str], list[StateDict]]
    x: dict[str, list[Tensor]]
    y: dict[str, list[Tensor]]

    def backbone(self) -> nn.Module:
        """A backbone module of the zoo's architecture (weights come as ``params``)."""
        return MLPBackbone(int(self.base["0.weight"].shape[1]), self.hidden)


def _prefixed(tensors: dict[str, Tensor], prefix: str) -> StateDict:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def load_zoo(data_dir: Path, zoo_dir: Path, seed: int) -> Zoo:
    """Load seed ``seed`` of the task zoo from its data and zoo step directories."""
    index = read_json(zoo_dir / "index.json")
    if index.get("backbone") == "open_clip":  # the full profile's CLIP zoo
        from subspacelab.merging.clip_zoo import load_clip_zoo

        return load_clip_zoo(data_dir, zoo_dir, seed)
    tasks, heads, regimes = index["tasks"], index["heads"], index["regimes"]
    data, _ = load_tensors(data_dir / f"seed{seed}.safetensors", study=ZOO_SLUG, kind="digits")
    perm = data["perm"].numpy()
    x = {s: [apply_transform(t, data[f"x_{s}"], perm) for t in tasks] for s in SPLITS}
    y = {s: [data[f"y_{s}"]] * len(tasks) for s in SPLITS}
    m, _ = load_tensors(zoo_dir / f"seed{seed}.safetensors", study=ZOO_SLUG, kind="zoo")
    head_sd = {
        "h1": [_prefixed(m, f"head.h1.{t}.") for t in tasks],
        "h2": [_prefixed(m, "head.h2.")] * len(tasks),
    }
    return Zoo(
        tasks=list(tasks),
        hidden=list(index["hidden"]),
        lora_rank=int(index["lora_rank"]),
        base=_prefixed(m, "base."),
        heads={h: head_sd[h] for h in heads},
        finetuned={
            (h, r): [_prefixed(m, f"ft.{h}.{r}.{t}.") for t in tasks]
            for h in heads
            for r in regimes
        },
        x=x,
        y=y,
    )


def validation_curve(
    zoo: Zoo, head: str, tv: StateDict, alphas: Sequence[float], net: nn.Module | None = None
) -> list[float]:
    """Mean validation accuracy over tasks of ``θ_0 + α τ`` at each α of ``alphas`` (``net``:
    the zoo's backbone module, built here if not given)."""
    net = net or zoo.backbone()
    curve = []
    for a in alphas:
        params = {k: zoo.base[k] + a * tv[k] for k in zoo.base}
        curve.append(
            float(
                np.mean(task_accuracies(net, params, zoo.heads[head], zoo.x["val"], zoo.y["val"]))
            )
        )
    return curve


def best_alpha(alphas: Sequence[float], curve: Sequence[float]) -> float:
    """The α of ``alphas`` with the highest validation accuracy (ties go to the first)."""
    best, best_val = alphas[0], -1.0
    for a, val in zip(alphas, curve, strict=True):
        if val > best_val:
            best, best_val = a, val
    return best


def accuracies_at(
    zoo: Zoo, head: str, tv: StateDict, alpha: float, net: nn.Module | None = None
) -> list[float]:
    """Per-task test accuracies of ``θ_0 + α τ``."""
    params = {k: zoo.base[k] + alpha * tv[k] for k in zoo.base}
    net = net or zoo.backbone()
    return task_accuracies(net, params, zoo.heads[head], zoo.x["test"], zoo.y["test"])


def tune_and_test(
    zoo: Zoo, head: str, tv: StateDict, alphas: Sequence[float]
) -> tuple[float, list[float]]:
    """Pick α from ``alphas`` by mean validation accuracy of ``θ_0 + α τ``; return it and the
    per-task test accuracies at that α (ties go to the smaller α)."""
    net = zoo.backbone()
    best = best_alpha(alphas, validation_curve(zoo, head, tv, alphas, net))
    return best, accuracies_at(zoo, head, tv, best, net)


def individual_accuracies(zoo: Zoo, head: str, regime: str, split: str = "test") -> list[float]:
    """Each fine-tuned task model's accuracy on its own task."""
    net = zoo.backbone()
    return [
        task_accuracies(net, ft, [hd], [x], [y])[0]
        for ft, hd, x, y in zip(
            zoo.finetuned[(head, regime)], zoo.heads[head], zoo.x[split], zoo.y[split], strict=True
        )
    ]


def normalised(accs: Sequence[float], individual: Sequence[float]) -> float:
    """Mean over tasks of merged accuracy / individual fine-tuned accuracy."""
    return float(np.mean([a / max(i, 1e-12) for a, i in zip(accs, individual, strict=True)]))


def collect_results(results: dict[str, dict], seeds: Sequence[int]) -> dict[str, list[float]]:
    """Metrics ``<head>/<regime>/<method>/<field>`` from a merge step's ``results.json`` (keys
    ``"<seed>/<head>/<regime>"`` -> method -> field -> value), in the order of ``seeds``: one
    value per seed, or one per seed x task (seed-major) for list fields such as ``task_norm``.
    Wall times (``time_s``) stay in results.json: a rerun must reproduce the metrics exactly;
    so do curves (fields ending in ``_curve``: a validation sweep, a loss trajectory)."""
    metrics: dict[str, list[float]] = {}
    for seed in seeds:
        for key, methods in results.items():
            s, h, r = key.split("/")
            if int(s) != seed:
                continue
            for method, row in methods.items():
                for field, value in row.items():
                    if field == "time_s" or field.endswith("_curve"):
                        continue
                    vals = value if isinstance(value, list) else [value]
                    metrics.setdefault(f"{h}/{r}/{method}/{field}", []).extend(vals)
    return metrics
