"""gdl's molecule arms, full profile (arXiv 2104.13478, spec §7): E(3) on QM9 and permutations
on ogbg-molhiv, each beside a baseline without the prior.

* **QM9** — the EGNN of Satorras, Hoogeboom & Welling (2021, arXiv 2102.09844): atoms as one-hot
  elements times (1, Z/9, (Z/9)²), the lab's :class:`~subspacelab.modules.equivariant.EGNNLayer`
  on the fully connected molecule, a node MLP, masked sum pooling and a graph MLP; the baseline
  an MLP on the padded ``[Z, x, y, z]`` rows (neither E(3)- nor permutation-invariant). One model
  per seed and target group, L1 loss on targets standardised by the training split; test MAE
  per target in ``gdb9.sdf.csv``'s units.
* **ogbg-molhiv** — GIN with bond features (Xu et al. 2019, arXiv 1810.00826, as in OGB's
  example): h_i' = MLP((1 + ε) h_i + Σ_j ReLU(h_j + e_ij)), atom and bond features embedded per
  column and summed, mean pooling; the baseline an MLP on the summed atom embeddings (a set
  model that ignores the bonds). Test ROC-AUC on the scaffold split.

Molecules of different sizes share padded batches (QM9 ≤ 29 atoms): a node mask zeroes every
message from or to padding and every pooled padding row, so padding leaves the outputs as
they were (``tests/studies/test_gdl.py`` checks it with the E(3) and permutation invariances).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from subspacelab.api import SeedMetrics, predict, write_json
from subspacelab.modules.equivariance import Element, equivariance_error
from subspacelab.modules.equivariant import EGNNLayer, e3
from subspacelab.studies.gdl.core import MLP
from subspacelab.studies.gdl.full import ELEMENTS

if TYPE_CHECKING:
    from subspacelab.api import StepContext
    from subspacelab.studies.gdl.config import GdlConfig, MoleculeFit

    Ctx = StepContext[GdlConfig]

Z = tuple(ELEMENTS.values())  # QM9's atomic numbers
QM9_ARMS = ("egnn", "mlp")
MOLHIV_ARMS = ("gin", "mlp")
# gdb9.sdf.csv's units (MoleculeNet's QM9 table)
UNITS = {
    "mu": "D",
    "alpha": "bohr³",
    "homo": "Ha",
    "lumo": "Ha",
    "gap": "Ha",
    "r2": "bohr²",
    "zpve": "Ha",
    "u0": "Ha",
    "u298": "Ha",
    "h298": "Ha",
    "g298": "Ha",
    "cv": "cal/(mol K)",
    "A": "GHz",
    "B": "GHz",
    "C": "GHz",
}
EVAL_BATCH = 1000


def pad_rows(counts: Tensor, rows: Tensor, fill: float) -> Tensor:
    """Flat per-graph rows ``(Σ counts, ...)`` as ``(G, max counts, ...)``, padded with
    ``fill``."""
    graph = torch.repeat_interleave(torch.arange(len(counts)), counts)
    local = torch.arange(len(rows)) - (torch.cumsum(counts, 0) - counts)[graph]
    width = int(counts.max()) if len(counts) else 0
    out = torch.full((len(counts), width, *rows.shape[1:]), fill, dtype=rows.dtype)
    out[graph, local] = rows
    return out


def qm9_atoms(qm9: dict[str, Tensor]) -> Tensor:
    """QM9's molecules as ``(M, N, 4)`` rows ``[Z, x, y, z]`` (Z = 0: padding)."""
    rows = torch.cat([qm9["node_feat"].float(), qm9["pos"].float()], dim=1)
    return pad_rows(qm9["num_nodes"], rows, 0.0)


def _small(t: Tensor, name: str) -> Tensor:
    if len(t) and int(t.abs().max()) >= torch.iinfo(torch.int16).max:
        raise ValueError(f"molecules/molhiv: {name} values beyond int16")
    return t.to(torch.int16)


def molhiv_graphs(hiv: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """ogbg-molhiv as padded int16 tensors (-1: padding): atom features ``(G, N, 9)``, bonds
    as local atom pairs ``(G, E, 2)`` and bond features ``(G, E, 3)``."""
    nodes = pad_rows(hiv["num_nodes"], _small(hiv["node_feat"], "node features"), -1)
    edges = pad_rows(hiv["num_edges"], _small(hiv["edges"], "edges"), -1)
    bonds = pad_rows(hiv["num_edges"], _small(hiv["edge_feat"], "edge features"), -1)
    return nodes, edges, bonds


def vocab(features: Tensor) -> list[int]:
    """Each categorical column's vocabulary size (its largest value + 1)."""
    return [int(v) + 1 for v in features.amax(0)]


def atom_features(z: Tensor) -> Tensor:
    """EGNN's QM9 node features: one-hot element times ``(1, Z/9, (Z/9)²)``, zero for padding."""
    onehot = (z[..., None] == torch.tensor(Z, dtype=z.dtype, device=z.device)).to(z.dtype)
    scale = z[..., None] / max(Z)
    return torch.cat([onehot, onehot * scale, onehot * scale**2], dim=-1)


def _mlp2(d_in: int, width: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, width), nn.SiLU(), nn.Linear(width, d_out))


class EGNNRegressor(nn.Module):
    """E(3)- and permutation-invariant regression on padded molecules ``(B, N, 4)``."""

    def __init__(self, width: int, layers: int, n_out: int) -> None:
        super().__init__()
        self.embed = nn.Linear(3 * len(Z), width)
        self.layers = nn.ModuleList(EGNNLayer(width) for _ in range(layers))
        self.node = _mlp2(width, width, width)
        self.head = _mlp2(width, width, n_out)

    def propagate(self, atoms: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Invariant node features, equivariant coordinates and the node mask."""
        z, x = atoms[..., 0], atoms[..., 1:]
        mask = (z > 0).to(atoms.dtype)
        h = self.embed(atom_features(z))
        for layer in self.layers:
            h, x = layer(h, x, mask)
        return h, x, mask

    def forward(self, atoms: Tensor) -> Tensor:
        h, _, mask = self.propagate(atoms)
        return self.head((self.node(h) * mask[..., None]).sum(1))


class Embedding(nn.Module):
    """OGB's Atom/BondEncoder: one embedding per categorical column, summed (-1: padding)."""

    def __init__(self, sizes: Sequence[int], width: int) -> None:
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(n, width) for n in sizes)

    def forward(self, features: Tensor) -> Tensor:
        f = features.long().clamp(min=0)
        return torch.stack([t(f[..., i]) for i, t in enumerate(self.tables)]).sum(0)


class GIN(nn.Module):
    """GIN with bond features on padded graphs: ``(nodes, edges, bonds) → (B, 1)`` logits."""

    def __init__(
        self, atoms: Sequence[int], bonds: Sequence[int], width: int, layers: int, dropout: float
    ) -> None:
        super().__init__()
        self.atoms = Embedding(atoms, width)
        self.bonds = nn.ModuleList(Embedding(bonds, width) for _ in range(layers))
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(width, 2 * width), nn.ReLU(), nn.Linear(2 * width, width))
            for _ in range(layers)
        )
        self.eps = nn.Parameter(torch.zeros(layers))
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(width, 1)

    def nodes(self, nodes: Tensor, edges: Tensor, bonds: Tensor) -> Tensor:
        """Node embeddings after the last layer, zero on padding (permutation-equivariant)."""
        h = self.atoms(nodes)
        width = h.shape[-1]
        pairs = edges.long().clamp(min=0)
        src = torch.cat([pairs[..., 0], pairs[..., 1]], 1)[..., None].expand(-1, -1, width)
        dst = torch.cat([pairs[..., 1], pairs[..., 0]], 1)[..., None].expand(-1, -1, width)
        valid = (edges[..., :1] >= 0).to(h.dtype).repeat(1, 2, 1)
        for k, (bond, mlp) in enumerate(zip(self.bonds, self.mlps, strict=True)):
            e = bond(bonds).repeat(1, 2, 1)
            msg = torch.relu(h.gather(1, src) + e) * valid
            h = mlp((1 + self.eps[k]) * h + torch.zeros_like(h).scatter_add(1, dst, msg))
            if k < len(self.mlps) - 1:
                h = torch.relu(h)
            h = self.drop(h)
        return h * (nodes[..., :1] >= 0).to(h.dtype)

    def forward(self, nodes: Tensor, edges: Tensor, bonds: Tensor) -> Tensor:
        count = (nodes[..., 0] >= 0).sum(1, keepdim=True).clamp(min=1)
        return self.head(self.nodes(nodes, edges, bonds).sum(1) / count)


class AtomSum(nn.Module):
    """The molhiv baseline: an MLP on the summed atom embeddings (bonds ignored)."""

    def __init__(self, atoms: Sequence[int], width: int, mlp_width: int) -> None:
        super().__init__()
        self.atoms = Embedding(atoms, width)
        self.mlp = MLP(width, mlp_width, 1)

    def forward(self, nodes: Tensor, edges: Tensor, bonds: Tensor) -> Tensor:
        mask = (nodes[..., :1] >= 0).to(torch.get_default_dtype())
        return self.mlp((self.atoms(nodes) * mask).sum(1))


class Scaled(nn.Module):
    """A regressor in the targets' units: ``net(x) · std + mean`` (training-split statistics,
    kept as buffers so that the saved model carries them)."""

    def __init__(self, net: nn.Module, n_out: int) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.zeros(n_out))
        self.register_buffer("std", torch.ones(n_out))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x) * self.std + self.mean


def qm9_model(cfg: MoleculeFit, arm: str, atoms: int, n_out: int) -> Scaled:
    """The EGNN or its MLP baseline on molecules padded to ``atoms`` atoms."""
    q = cfg.qm9
    if arm == "egnn":
        return Scaled(EGNNRegressor(q.width, q.layers, n_out), n_out)
    return Scaled(MLP(atoms * 4, q.mlp_width, n_out), n_out)


def molhiv_model(cfg: MoleculeFit, arm: str, atoms: list[int], bonds: list[int]) -> nn.Module:
    """GIN or the summed-atom MLP."""
    h = cfg.molhiv
    if arm == "gin":
        return GIN(atoms, bonds, h.width, h.layers, h.dropout)
    return AtomSum(atoms, h.width, h.mlp_width)


def _groups(ctx: Ctx) -> list[tuple[str, list[int]]]:
    """Each target group and its columns in the saved targets."""
    mol, fit = ctx.cfg.data.molecules, ctx.cfg.molecule_fit
    assert mol is not None and fit is not None
    return [(g, [mol.qm9_targets.index(t) for t in g.split("+")]) for g in fit.qm9.groups]


def _l1(model: Scaled) -> Callable[[Tensor, Tensor], Tensor]:
    return lambda x, y: ((model(x) - y) / model.std).abs().mean()


def _bce(model: nn.Module) -> Callable[..., Tensor]:
    return lambda nodes, edges, bonds, y: F.binary_cross_entropy_with_logits(
        model(nodes, edges, bonds), y
    )


def fit_molecules(ctx: Ctx) -> None:
    """Where ``molecule_fit`` is set: the QM9 arms (every seed and target group) in one joint
    run, the molhiv arms (every seed) in another; models ``seed<s>/qm9/<group>/<arm>`` and
    ``seed<s>/molhiv/<arm>``, losses per epoch in ``molecule_history.json``."""
    from subspacelab.api import Member, train_joint

    cfg = ctx.cfg.molecule_fit
    if cfg is None:
        return
    qm9 = ctx.load("molecules/qm9")
    atoms, y = qm9_atoms(qm9), qm9["y"]
    members, names = [], []
    for seed in ctx.seeded():
        train = ctx.load(f"seed{seed}/qm9_split")["idx_train"]
        x_tr = atoms[train]
        for group, cols in _groups(ctx):
            y_tr = y[train][:, cols]
            std = y_tr.std(0, unbiased=False)
            for arm in QM9_ARMS:
                model = qm9_model(cfg, arm, atoms.shape[1], len(cols))
                model.mean.copy_(y_tr.mean(0))
                model.std.copy_(torch.where(std > 0, std, torch.ones_like(std)))
                lr = cfg.qm9.lr if arm == "egnn" else cfg.qm9.mlp_lr
                members.append(
                    Member(model, _l1(model), lr, cfg.qm9.weight_decay, (x_tr, y_tr), seed)
                )
                names.append(f"seed{seed}/qm9/{group}/{arm}")
    q = cfg.qm9
    run = train_joint(
        ctx,
        members,
        epochs=q.epochs,
        batch_size=q.batch,
        optimizer="adam",
        schedule=q.schedule,
        label="qm9",
        params={"world": "qm9", "seeds": ",".join(map(str, ctx.cfg.seeds))},
    )
    history = dict(zip(names, run.history, strict=True))
    for name, member in zip(names, members, strict=True):
        ctx.save_model(name, member.model)
    hiv = ctx.load("molecules/molhiv")
    graphs = molhiv_graphs(hiv)
    train = hiv["idx_train"]
    data = (*(t[train] for t in graphs), hiv["y"][train])
    sizes = vocab(hiv["node_feat"]), vocab(hiv["edge_feat"])
    members, names = [], []
    for seed in ctx.seeded():
        for arm in MOLHIV_ARMS:
            model = molhiv_model(cfg, arm, *sizes)
            lr = cfg.molhiv.lr if arm == "gin" else cfg.molhiv.mlp_lr
            members.append(Member(model, _bce(model), lr, data=data, seed=seed))
            names.append(f"seed{seed}/molhiv/{arm}")
    run_hiv = train_joint(
        ctx,
        members,
        epochs=cfg.molhiv.epochs,
        batch_size=cfg.molhiv.batch,
        optimizer="adam",
        label="molhiv",
        params={"world": "molhiv", "seeds": ",".join(map(str, ctx.cfg.seeds))},
    )
    history |= dict(zip(names, run_hiv.history, strict=True))
    for name, member in zip(names, members, strict=True):
        ctx.save_model(name, member.model)
    write_json(ctx.out / "molecule_history.json", history)


def _on_atoms(g: Element) -> Element:
    """An E(3) element of point clouds acting on the coordinates of ``[Z, x, y, z]`` rows."""

    def act(atoms: Tensor) -> Tensor:
        return torch.cat([atoms[..., :1], g.on_input(atoms[..., 1:])], dim=-1)

    return Element(g.name, act, g.on_output)


def _logits(model: nn.Module, tensors: Sequence[Tensor]) -> np.ndarray:
    with torch.no_grad():
        out = [
            model(*(t[i : i + EVAL_BATCH] for t in tensors))
            for i in range(0, len(tensors[0]), EVAL_BATCH)
        ]
    return torch.cat(out)[:, 0].double().numpy()


def molecule_report(ctx: Ctx) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Per seed: test (and validation) MAE per QM9 target of both arms, the EGNN's and the
    MLP's E(3) invariance error e_eq on test molecules; molhiv ROC-AUC on the scaffold test
    (and validation) split. Metrics and the two tables."""
    from sklearn.metrics import roc_auc_score

    cfg = ctx.cfg.molecule_fit
    assert cfg is not None and ctx.cfg.data.molecules is not None
    targets = ctx.cfg.data.molecules.qm9_targets
    qm9 = ctx.load("molecules/qm9", step="data")
    atoms, y = qm9_atoms(qm9), qm9["y"]
    hiv = ctx.load("molecules/molhiv", step="data")
    graphs = molhiv_graphs(hiv)
    sizes = vocab(hiv["node_feat"]), vocab(hiv["edge_feat"])
    per_seed = SeedMetrics()
    for seed in ctx.seeded():
        split = ctx.load(f"seed{seed}/qm9_split", step="data")
        probe = atoms[split["idx_test"][: ctx.cfg.eval.probe_samples]]
        g = [_on_atoms(e) for e in e3(ctx.cfg.eval.elements, seed, output="invariant")]
        row: dict[str, float] = {}
        for group, cols in _groups(ctx):
            for arm in QM9_ARMS:
                model = qm9_model(cfg, arm, atoms.shape[1], len(cols))
                name = f"seed{seed}/qm9/{group}/{arm}"
                model = ctx.load_model(model, name, step="fit").eval()
                for part, key in (("idx_test", "mae"), ("idx_val", "mae_val")):
                    idx = split[part]
                    if not len(idx):
                        continue
                    err = (predict(model, atoms[idx], EVAL_BATCH) - y[idx][:, cols]).abs()
                    for c, value in zip(cols, err.mean(0).tolist(), strict=True):
                        row[f"qm9/{arm}/{key}_{targets[c]}"] = value
                row[f"qm9/{arm}/e_eq_{group}"] = equivariance_error(model, probe, g)["max"]
        for arm in MOLHIV_ARMS:
            model = molhiv_model(cfg, arm, *sizes)
            model = ctx.load_model(model, f"seed{seed}/molhiv/{arm}", step="fit").eval()
            for part, key in (("idx_test", "roc_auc"), ("idx_valid", "roc_auc_val")):
                idx = hiv[part]
                labels = hiv["y"][idx, 0].numpy()
                if len(np.unique(labels)) == 2:
                    row[f"molhiv/{arm}/{key}"] = roc_auc_score(
                        labels, _logits(model, [t[idx] for t in graphs])
                    )
        per_seed.record(row)
    metrics = per_seed.as_dict()
    return metrics, {
        "QM9: test MAE per target (gdb9.sdf.csv's units, mean ± sd over seeds)": _qm9_table(
            metrics, ctx
        ),
        "ogbg-molhiv: ROC-AUC, scaffold split (mean ± sd over seeds)": _molhiv_table(metrics),
    }


def _ms(values: list[float] | None, fmt: str = ".4g") -> str:
    if values is None:
        return ""
    return f"{np.mean(values):{fmt}} ± {np.std(values):{fmt}}"


def _qm9_table(metrics: dict[str, list[float]], ctx: Ctx) -> str:
    lines = [
        "| target | unit | EGNN | MLP (padded atoms) | EGNN e_eq (E(3)) | MLP e_eq |",
        "|---|---|---|---|---|---|",
    ]
    for group, _ in _groups(ctx):
        for t in group.split("+"):
            lines.append(
                f"| {t} | {UNITS.get(t, 'see gdb9.sdf.csv')} "
                f"| {_ms(metrics.get(f'qm9/egnn/mae_{t}'))} "
                f"| {_ms(metrics.get(f'qm9/mlp/mae_{t}'))} "
                f"| {_ms(metrics.get(f'qm9/egnn/e_eq_{group}'), '.1e')} "
                f"| {_ms(metrics.get(f'qm9/mlp/e_eq_{group}'), '.1e')} |"
            )
    return "\n".join(lines)


def _molhiv_table(metrics: dict[str, list[float]]) -> str:
    lines = ["| arm | test ROC-AUC | validation ROC-AUC |", "|---|---|---|"]
    for arm, label in (("gin", "GIN"), ("mlp", "MLP on summed atom embeddings")):
        lines.append(
            f"| {label} | {_ms(metrics.get(f'molhiv/{arm}/roc_auc'))} "
            f"| {_ms(metrics.get(f'molhiv/{arm}/roc_auc_val'))} |"
        )
    return "\n".join(lines)
