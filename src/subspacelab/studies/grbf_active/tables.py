"""The full profile's UCI tables: where each lives, how its text format is read.

grbf_active (D'Agostino et al., arXiv:2307.05639) benchmarks GRBFNN on UCI/OpenML regression and
classification tables; the spec did not retrieve the paper's exact list, so this catalogue holds
classic UCI tables of those suites (confirm against the paper's tables). Each file is fetched only
against the SHA-256 pinned in params.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases"


@dataclass(frozen=True)
class TableSpec:
    """A delimited text table: its URL, separator (None: whitespace), the target column, the
    columns to drop, and the positive class label (None: a regression target)."""

    url: str
    sep: str | None
    target: int
    drop: tuple[int, ...] = ()
    positive: str | None = None

    @property
    def filename(self) -> str:
        """The local file name (the URL's last part)."""
        return self.url.rsplit("/", 1)[-1]

    @property
    def task(self) -> str:
        """``regression`` or ``binary``."""
        return "regression" if self.positive is None else "binary"


TABLES: dict[str, TableSpec] = {
    "airfoil": TableSpec(f"{UCI}/00291/airfoil_self_noise.dat", None, -1),
    "yacht": TableSpec(f"{UCI}/00243/yacht_hydrodynamics.data", None, -1),
    "wdbc": TableSpec(f"{UCI}/breast-cancer-wisconsin/wdbc.data", ",", 1, (0,), "M"),
    "ionosphere": TableSpec(f"{UCI}/ionosphere/ionosphere.data", ",", -1, (), "g"),
}


def read_table(path: Path, spec: TableSpec) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) from a table file: float features, y float (regression) or 0/1 (binary).

    Blank lines are skipped; a row of another width, a non-numeric feature or (binary) a label
    outside the file's two classes is an error naming the line.
    """
    rows = [
        line.split(spec.sep) if spec.sep else line.split()
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    if not rows:
        raise ValueError(f"{path}: no rows")
    width = len(rows[0])
    target = spec.target % width
    keep = [c for c in range(width) if c != target and c not in {d % width for d in spec.drop}]
    xs, ys = [], []
    for i, row in enumerate(rows, start=1):
        if len(row) != width:
            raise ValueError(f"{path}: line {i} has {len(row)} fields, the first has {width}")
        try:
            xs.append([float(row[c]) for c in keep])
            label = row[target].strip()
            ys.append(float(label) if spec.positive is None else float(label == spec.positive))
        except ValueError as exc:
            raise ValueError(f"{path}: line {i}: {exc}") from None
    y = np.asarray(ys)
    if spec.positive is not None and len({r[target].strip() for r in rows}) != 2:
        raise ValueError(f"{path}: a binary table needs exactly two labels in column {target}")
    return np.asarray(xs), y
