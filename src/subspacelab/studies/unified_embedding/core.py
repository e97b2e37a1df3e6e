"""The unified_embedding miniature's model and measurements (Coleman et al., arXiv:2305.12102).

Every embedding scheme feeds the same downstream model: each field's embedding e_f (width w_f)
goes through its own first-layer projection z_f = P_f e_f (d x w_f), then an FM term over the
z_f plus an MLP over their concatenation. The per-field projections are the paper's
"decomposition" argument: trained projections can read a shared (multiplexed) row differently
for each field that hashes to it, which :func:`collision_cosine` measures.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from subspacelab.recsys.hashing import bucket
from subspacelab.recsys.tables import (
    Scheme,
    multiplexed,
    per_field,
    salt,
    split_budget,
    unified,
)

SCHEMES = ("per_field_equal", "per_field_vocab", "multiplexed", "unified")


def build_schemes(
    vocab: list[int], rows: int, dim: int, large_fields: int, ue_chunks: int, ue_tables: int
) -> dict[str, Scheme]:
    """The four schemes at a budget of ``rows`` x ``dim`` embedding parameters.

    Unified Embedding gives ``ue_chunks`` chunks of width ``dim`` to the ``large_fields`` fields
    with the largest vocabularies (one to the others), round-robin over ``ue_tables`` tables that
    together hold ``rows`` rows.
    """
    if rows % ue_tables:
        raise ValueError(f"budget {rows} rows is not divisible by ue_tables={ue_tables}")
    large = set(np.argsort(vocab)[::-1][:large_fields].tolist())
    chunks = [ue_chunks if f in large else 1 for f in range(len(vocab))]
    return {
        "per_field_equal": per_field(split_budget(rows, vocab, "equal"), dim, "per_field_equal"),
        "per_field_vocab": per_field(split_budget(rows, vocab, "vocab"), dim, "per_field_vocab"),
        "multiplexed": multiplexed(len(vocab), rows, dim),
        "unified": unified(chunks, ue_tables, rows // ue_tables, dim),
    }


class CTRModel(nn.Module):
    """Per-field projections, an FM over them and an MLP: the same tower for every scheme.

    The projections P_f (d x w_f) are held as one (fields, d, max width) parameter, zero-padded
    where a field is narrower, so all fields project in one batched matmul.
    """

    def __init__(self, scheme: Scheme, dim: int, hidden: list[int], init_std: float) -> None:
        super().__init__()
        self.widths = list(scheme.widths)
        wmax, n_fields = max(self.widths), len(self.widths)
        self.table = scheme.module(init_std)
        # where each padded slot reads from the concatenated embedding (the last column: zero)
        total = sum(self.widths)
        gather = torch.full((n_fields, wmax), total, dtype=torch.long)
        start = 0
        for f, w in enumerate(self.widths):
            gather[f, :w] = torch.arange(start, start + w)
            start += w
        self.register_buffer("gather", gather.flatten(), persistent=False)
        weight = torch.zeros(n_fields, dim, wmax)
        for f, w in enumerate(self.widths):  # nn.Linear's default init, per field
            weight[f, :, :w].uniform_(-(w**-0.5), w**-0.5)
        self.proj = nn.Parameter(weight)
        layers: list[nn.Module] = []
        width = dim * n_fields
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def projections(self) -> list[Tensor]:
        """The P_f, each d x w_f: a copy, so a snapshot taken before training stays the initial
        projections (a detached view would follow the optimiser's in-place updates)."""
        return [self.proj[f, :, :w].detach().clone() for f, w in enumerate(self.widths)]

    def field_vectors(self, rows: Tensor) -> Tensor:
        """(n, fields, dim): each field's projected embedding."""
        e = self.table(rows)
        if len(set(self.widths)) == 1:
            padded = e.view(e.shape[0], len(self.widths), self.widths[0])
        else:
            e = torch.cat([e, e.new_zeros(e.shape[0], 1)], dim=1)
            padded = e[:, self.gather].view(e.shape[0], len(self.widths), -1)
        return torch.einsum("nfw,fdw->nfd", padded, self.proj)

    def forward(self, rows: Tensor) -> Tensor:
        """Click logits (n,)."""
        z = self.field_vectors(rows)
        fm = 0.5 * (z.sum(dim=1).pow(2) - z.pow(2).sum(dim=1)).sum(dim=1)
        return fm + self.mlp(z.flatten(1)).squeeze(1)

    def dense_params(self) -> int:
        """Parameters outside the embedding table (padding excluded), alike for every scheme."""
        mlp = sum(p.numel() for p in self.mlp.parameters())
        return mlp + self.proj.shape[1] * sum(self.widths)


def shared_row_share(scheme: Scheme, x: np.ndarray) -> float:
    """Share of the seen (field, value) pairs whose first chunk's row another pair also uses."""
    own = np.concatenate(
        [
            bucket(np.unique(x[:, f]), salt(f, 0), scheme.sizes[f][0]) + scheme.offsets[f][0]
            for f in range(x.shape[1])
        ]
    )
    _, inverse, counts = np.unique(own, return_inverse=True, return_counts=True)
    return float((counts[inverse] > 1).mean())


def collision_cosine(
    model: CTRModel, scheme: Scheme, x: np.ndarray, projections: list[Tensor]
) -> float:
    """Mean |cos(P_f e_r, P_g e_r)| over shared rows r and field pairs f != g that hash to r.

    Only rows of the multiplexed table reached by at least two fields' seen values count.
    ``projections`` are the P_f to use (trained, or the initial random ones as the reference);
    the embeddings e_r are the trained table's.
    """
    if len(set(scheme.chunks)) != 1 or scheme.chunks[0] != 1 or len(set(scheme.offsets)) != 1:
        raise ValueError("collision_cosine needs a multiplexed scheme (one shared table)")
    n_fields = x.shape[1]
    rows = scheme.lookup_rows(x)
    users: dict[int, set[int]] = {}
    for f in range(n_fields):
        for r in np.unique(rows[:, f]).tolist():
            users.setdefault(r, set()).add(f)
    shared = {r: sorted(fs) for r, fs in users.items() if len(fs) > 1}
    if not shared:
        raise ValueError("no row is shared by two fields: nothing to measure")
    weight = model.table.bag.weight.detach()
    cosines = []
    for r, fields in shared.items():
        reads = torch.stack([projections[f] @ weight[r] for f in fields])
        reads = nn.functional.normalize(reads, dim=1)
        sims = reads @ reads.T
        iu = torch.triu_indices(len(fields), len(fields), offset=1)
        cosines.append(sims[iu[0], iu[1]].abs())
    return float(torch.cat(cosines).mean())
