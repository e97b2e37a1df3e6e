"""gdl's full profile (arXiv 2104.13478, spec §7): rotated MNIST (MNIST-rot, Larochelle et
al. 2007; 12k train+valid / 50k test) in place of sklearn's digits for the C4 world, and the
molecules of QM9 (E(3): EGNN, MAE per target) and ogbg-molhiv (permutations: GIN, ROC-AUC).

MNIST-rot's archive holds two ``.amat`` text tables, one image per row: 784 pixel values in
[0, 1] followed by the label. The pixels of each row are stored column by column, so a row
reshaped to 28 × 28 is the transposed digit: :func:`load_amat` transposes it back.

QM9 comes as torch_geometric's raw files (MoleculeNet's ``qm9.zip``: ``gdb9.sdf``, a V2000 SD
file parsed here without RDKit, and ``gdb9.sdf.csv``, the 19 targets by ``mol_id``);
ogbg-molhiv as OGB's ``hiv.zip`` (gzipped CSVs, read without ogb or torch_geometric). Both
archives are fetched against SHA-256 pins and extracted refusing unsafe members.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from subspacelab.data.download import Resource, fetch, safe_extract

if TYPE_CHECKING:
    from subspacelab.api import StepContext
    from subspacelab.studies.gdl.config import GdlConfig, MoleculesData

ARCHIVE = "mnist_rotation_new.zip"
TRAIN = "mnist_all_rotation_normalized_float_train_valid.amat"
TEST = "mnist_all_rotation_normalized_float_test.amat"
SIDE = 28


def load_amat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, 1, 28, 28)`` float32 and labels int64 of one MNIST-rot table."""
    table = np.loadtxt(path, dtype=np.float64, ndmin=2)
    if table.shape[1] != SIDE * SIDE + 1:
        raise ValueError(
            f"{path.name}: rows of {SIDE * SIDE + 1} numbers expected, got {table.shape[1]}"
        )
    labels = table[:, -1]
    if np.any(labels != np.round(labels)) or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{path.name}: the last column must hold labels 0..9")
    x = table[:, :-1].reshape(-1, 1, SIDE, SIDE).transpose(0, 1, 3, 2)
    return np.ascontiguousarray(x, dtype=np.float32), labels.astype(np.int64)


def mnist_rot(
    root: Path, url: str, sha256: str, progress: Callable[[str], None]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fetch (or verify a copy placed by hand in ``root``), extract and load MNIST-rot:
    ``x_train, y_train, x_test, y_test``."""
    archive = fetch(Resource(url, ARCHIVE, sha256=sha256), root, progress)
    folder = root / "mnist_rot"
    if not (folder / TRAIN).is_file():
        safe_extract(archive, folder)
    tables = {p.name: p for p in folder.rglob("*.amat")}
    missing = [name for name in (TRAIN, TEST) if name not in tables]
    if missing:
        raise ValueError(f"{archive.name}: missing {', '.join(missing)}")
    x_tr, y_tr = load_amat(tables[TRAIN])
    x_te, y_te = load_amat(tables[TEST])
    return x_tr, y_tr, x_te, y_te


# ---------------------------------------------------------------- molecules (spec §7)

QM9_ARCHIVE = "qm9.zip"
QM9_SDF = "gdb9.sdf"
QM9_CSV = "gdb9.sdf.csv"
ELEMENTS = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}  # QM9's elements and atomic numbers
MOLHIV_ARCHIVE = "hiv.zip"
OGB_RAW = ("edge", "node-feat", "edge-feat", "graph-label", "num-node-list", "num-edge-list")
OGB_SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Graphs:
    """Graphs stored flat, as OGB's raw files: per-graph node and edge counts, each graph's
    edges ``(E, 2)`` as node ids local to the graph (one row per bond), node features
    ``(N, f)`` (QM9: the atomic number), edge features ``(E, g)`` (QM9: the bond order), the
    targets ``(G, t)`` and, for QM9, the atoms' coordinates ``(N, 3)`` in ångström."""

    num_nodes: np.ndarray
    num_edges: np.ndarray
    edges: np.ndarray
    node_feat: np.ndarray
    edge_feat: np.ndarray
    y: np.ndarray
    pos: np.ndarray | None = None

    def tensors(self) -> dict[str, Tensor]:
        """Every array (``pos`` where present) as a tensor, for ``ctx.save``."""
        arrays = {f.name: getattr(self, f.name) for f in fields(self)}
        return {
            k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items() if v is not None
        }


def _sdf_records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Each molecule's lines of an SD file and the file line number it starts at."""
    lines: list[str] = []
    start = 1
    with path.open() as fh:
        for number, line in enumerate(fh, start=1):
            if line.startswith("$$$$"):
                yield start, lines
                lines, start = [], number + 1
            else:
                lines.append(line.rstrip("\n"))
    if any(line.strip() for line in lines):
        raise ValueError(f"{path.name} line {start}: a molecule without its closing '$$$$'")


def read_sdf(
    path: Path,
) -> tuple[list[str], list[np.ndarray], list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """The molecules of a V2000 SD file (fixed columns, as ``gdb9.sdf``): names, atomic numbers,
    coordinates ``(n, 3)``, bonds ``(m, 2)`` as 0-based atom ids and bond orders; a malformed
    line is refused, naming its line number."""
    names, zs, positions, bonds, orders = [], [], [], [], []
    for start, lines in _sdf_records(path):
        where = f"{path.name} line {start + 3}"
        if len(lines) < 4 or "V2000" not in lines[3]:
            raise ValueError(f"{where}: want a V2000 counts line")
        try:
            n_atoms, n_bonds = int(lines[3][0:3]), int(lines[3][3:6])
        except ValueError:
            raise ValueError(f"{where}: unreadable atom / bond counts {lines[3]!r}") from None
        if len(lines) < 4 + n_atoms + n_bonds or n_atoms < 1:
            raise ValueError(f"{where}: {n_atoms} atoms and {n_bonds} bonds announced")
        z, xyz, pairs, kinds = [], [], [], []
        for i, line in enumerate(lines[4 : 4 + n_atoms]):
            symbol = line[31:34].strip()
            try:
                xyz.append([float(line[0:10]), float(line[10:20]), float(line[20:30])])
            except ValueError:
                raise ValueError(f"{path.name} line {start + 4 + i}: bad coordinates") from None
            if symbol not in ELEMENTS:
                raise ValueError(
                    f"{path.name} line {start + 4 + i}: element {symbol!r} not in {list(ELEMENTS)}"
                )
            z.append(ELEMENTS[symbol])
        for i, line in enumerate(lines[4 + n_atoms : 4 + n_atoms + n_bonds]):
            at = f"{path.name} line {start + 4 + n_atoms + i}"
            try:
                a, b, kind = int(line[0:3]), int(line[3:6]), int(line[6:9])
            except ValueError:
                raise ValueError(f"{at}: unreadable bond {line!r}") from None
            if not (1 <= a <= n_atoms and 1 <= b <= n_atoms and a != b and 1 <= kind <= 4):
                raise ValueError(f"{at}: bond {a}-{b} of order {kind} in a {n_atoms}-atom molecule")
            pairs.append([a - 1, b - 1])
            kinds.append(kind)
        names.append(lines[0].strip())
        zs.append(np.asarray(z, dtype=np.int64))
        positions.append(np.asarray(xyz, dtype=np.float32))
        bonds.append(np.asarray(pairs, dtype=np.int64).reshape(-1, 2))
        orders.append(np.asarray(kinds, dtype=np.int64))
    if not names:
        raise ValueError(f"{path.name}: no molecules")
    return names, zs, positions, bonds, orders


def read_qm9_targets(path: Path, targets: Sequence[str]) -> dict[str, np.ndarray]:
    """``{mol_id: targets}`` of ``gdb9.sdf.csv`` (its units: Debye, bohr³, hartree, ...)."""
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("mol_id", *targets) if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path.name}: missing columns {missing}")
        out: dict[str, np.ndarray] = {}
        for i, row in enumerate(reader, start=2):
            try:
                out[row["mol_id"]] = np.asarray([float(row[t]) for t in targets])
            except (TypeError, ValueError):
                raise ValueError(f"{path.name} line {i}: want numbers in {list(targets)}") from None
    return out


def read_qm9(folder: Path, targets: Sequence[str]) -> Graphs:
    """QM9 from torch_geometric's raw files (``gdb9.sdf``, ``gdb9.sdf.csv``) in ``folder``:
    atoms, coordinates and bonds from the SD file, the targets matched by ``mol_id``."""
    files = {p.name: p for p in folder.rglob("gdb9.sdf*")}
    missing = [name for name in (QM9_SDF, QM9_CSV) if name not in files]
    if missing:
        raise FileNotFoundError(f"{folder}: missing {', '.join(missing)}")
    table = read_qm9_targets(files[QM9_CSV], targets)
    names, zs, positions, bonds, orders = read_sdf(files[QM9_SDF])
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"{QM9_SDF}: molecule {unknown[0]!r} has no row in {QM9_CSV}")
    return Graphs(
        num_nodes=np.asarray([len(z) for z in zs], dtype=np.int64),
        num_edges=np.asarray([len(b) for b in bonds], dtype=np.int64),
        edges=np.concatenate(bonds),
        node_feat=np.concatenate(zs)[:, None],
        edge_feat=np.concatenate(orders)[:, None],
        y=np.stack([table[n] for n in names]).astype(np.float32),
        pos=np.concatenate(positions),
    )


def _int_rows(path: Path, columns: int | None = None) -> np.ndarray:
    """A gzipped OGB table of integers ``(rows, columns)`` (no header); a row of the wrong
    width or not integers is refused, naming its line."""
    rows = []
    with gzip.open(path, "rt", newline="") as fh:
        for i, row in enumerate(csv.reader(fh), start=1):
            try:
                values = [int(v) for v in row]
            except ValueError:
                raise ValueError(f"{path.name} line {i}: want integers, got {row}") from None
            if columns is None:
                columns = len(values)
            if len(values) != columns or not values:
                raise ValueError(f"{path.name} line {i}: want {columns} values, got {row}")
            rows.append(values)
    return np.asarray(rows, dtype=np.int64).reshape(-1, columns or 1)


def read_molhiv(folder: Path) -> tuple[Graphs, dict[str, np.ndarray]]:
    """ogbg-molhiv from OGB's raw layout in ``folder`` (``hiv/raw/*.csv.gz``; edges once per
    bond, node ids local to each graph) and its scaffold split (``hiv/split/scaffold``)."""
    found = next(folder.rglob("num-node-list.csv.gz"), None)
    if found is None:
        raise FileNotFoundError(f"{folder}: no hiv/raw/num-node-list.csv.gz in the archive")
    raw, base = found.parent, found.parent.parent
    missing = [f"{n}.csv.gz" for n in OGB_RAW if not (raw / f"{n}.csv.gz").is_file()]
    missing += [
        f"split/scaffold/{s}.csv.gz"
        for s in OGB_SPLITS
        if not (base / "split" / "scaffold" / f"{s}.csv.gz").is_file()
    ]
    if missing:
        raise FileNotFoundError(f"{base}: missing {', '.join(missing)}")
    num_nodes = _int_rows(raw / "num-node-list.csv.gz", 1)[:, 0]
    num_edges = _int_rows(raw / "num-edge-list.csv.gz", 1)[:, 0]
    y = _int_rows(raw / "graph-label.csv.gz", 1)
    edges = _int_rows(raw / "edge.csv.gz", 2)
    node_feat = _int_rows(raw / "node-feat.csv.gz")
    edge_feat = _int_rows(raw / "edge-feat.csv.gz")
    n_graphs = len(num_nodes)
    if len(num_edges) != n_graphs or len(y) != n_graphs:
        raise ValueError(
            f"{raw}: {n_graphs} node counts, {len(num_edges)} edge counts, {len(y)} labels"
        )
    if len(node_feat) != num_nodes.sum() or not len(edges) == len(edge_feat) == num_edges.sum():
        raise ValueError(
            f"{raw}: {len(node_feat)} node rows for {num_nodes.sum()} nodes, {len(edges)} edge "
            f"and {len(edge_feat)} edge-feature rows for {num_edges.sum()} edges"
        )
    owner = np.repeat(num_nodes, num_edges)
    bad = np.flatnonzero((edges < 0).any(1) | (edges >= owner[:, None]).any(1))
    if len(bad):
        raise ValueError(f"edge.csv.gz line {bad[0] + 1}: node id outside its graph")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("graph-label.csv.gz: labels must be 0 or 1")
    split = {}
    for name in OGB_SPLITS:
        path = base / "split" / "scaffold" / f"{name}.csv.gz"
        split[name] = _int_rows(path, 1)[:, 0]
        if len(split[name]) and (split[name].min() < 0 or split[name].max() >= n_graphs):
            raise ValueError(f"{path.name}: graph ids outside 0..{n_graphs - 1}")
    if len(np.unique(np.concatenate(list(split.values())))) != sum(map(len, split.values())):
        raise ValueError(f"{base}/split/scaffold: the splits overlap")
    graphs = Graphs(num_nodes, num_edges, edges, node_feat, edge_feat, y.astype(np.float32))
    return graphs, split


def _archive(root: Path, name: str, url: str, sha256: str, progress: Callable[[str], None]) -> Path:
    """Fetch (or verify a copy in ``root``) and extract an archive once; its folder."""
    archive = fetch(Resource(url, name, sha256=sha256), root, progress)
    folder = root / name.removesuffix(".zip")
    if not folder.exists():
        safe_extract(archive, folder)
    return folder


def molecules(
    root: Path, cfg: MoleculesData, progress: Callable[[str], None]
) -> tuple[Graphs, Graphs, dict[str, np.ndarray]]:
    """QM9 (the configured targets) and ogbg-molhiv with its scaffold split, from their pinned
    archives in ``root``."""
    qm9 = read_qm9(
        _archive(root, QM9_ARCHIVE, cfg.qm9_url, cfg.qm9_sha256, progress), cfg.qm9_targets
    )
    hiv, split = read_molhiv(
        _archive(root, MOLHIV_ARCHIVE, cfg.molhiv_url, cfg.molhiv_sha256, progress)
    )
    return qm9, hiv, split


def save_molecules(ctx: StepContext[GdlConfig]) -> None:
    """Where ``data.molecules`` is set: QM9 and ogbg-molhiv (with its scaffold split) saved
    once as flat graphs, and each seed's QM9 train / validation / test molecule ids."""
    cfg = ctx.cfg.data.molecules
    if cfg is None:
        return
    qm9, hiv, split = molecules(ctx.root / ctx.cfg.data.download_dir, cfg, ctx.progress)
    n_tr, n_va, n_te = cfg.qm9_split
    if n_tr + n_va + n_te > len(qm9.num_nodes):
        raise ValueError(
            f"data.molecules.qm9_split: {cfg.qm9_split} exceeds the {len(qm9.num_nodes)} molecules"
        )
    ctx.save("molecules/qm9", qm9.tensors())
    ctx.save(
        "molecules/molhiv",
        hiv.tensors() | {f"idx_{k}": torch.from_numpy(v) for k, v in split.items()},
    )
    for seed in ctx.seeded():
        order = torch.randperm(len(qm9.num_nodes), generator=torch.Generator().manual_seed(seed))
        parts = order[:n_tr], order[n_tr : n_tr + n_va], order[n_tr + n_va : n_tr + n_va + n_te]
        ctx.save(
            f"seed{seed}/qm9_split",
            dict(zip(("idx_train", "idx_val", "idx_test"), parts, strict=True)),
        )
