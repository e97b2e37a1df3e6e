"""The miniature of subspace_rerouting (arXiv 2503.06269): a synthetic token language, a small
decoder-only transformer, its residual stream, interventions, and the toy suffix search.

Nothing here is natural language: tokens are integers. The language has six special tokens
(PAD, BOS, SEP, EOS, REFUSE, COMPLY), ``n_restricted`` abstract "restricted" tokens R1..Rk
(ids ``FIRST_RESTRICTED ..``) and benign tokens after them. An instruction is 6-12 content tokens;
the model reads ``BOS instruction SEP`` and must answer ``REFUSE EOS`` if any restricted token
appears, else ``COMPLY`` followed by the instruction echoed and ``EOS``.

The suffix search (:func:`ssr_attack`) is typed to :class:`ToyTransformer` and refuses any other
module: it is the paper's section-6 miniature on this toy model only, with no path to a real
language model. Tested in tests/studies/test_subspace_rerouting.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from subspacelab.representation.directions import Probes

PAD, BOS, SEP, EOS, REFUSE, COMPLY = range(6)
FIRST_RESTRICTED = 6
IGNORE = -100

Hook = Callable[[int, Tensor], Tensor]


# ---------------------------------------------------------------- the token language


@dataclass(frozen=True)
class Language:
    """Vocabulary layout and instruction lengths."""

    vocab: int
    n_restricted: int
    min_len: int
    max_len: int

    def __post_init__(self) -> None:
        if self.benign_ids().numel() < 2 or self.n_restricted < 1:
            raise ValueError(
                f"vocab {self.vocab} leaves no room for {self.n_restricted} restricted tokens "
                "and at least two benign ones"
            )
        if not 1 <= self.min_len <= self.max_len:
            raise ValueError(f"need 1 <= min_len <= max_len: {self.min_len}, {self.max_len}")

    def restricted_ids(self) -> Tensor:
        """The restricted tokens R1..Rk."""
        return torch.arange(FIRST_RESTRICTED, FIRST_RESTRICTED + self.n_restricted)

    def benign_ids(self) -> Tensor:
        """The benign content tokens."""
        return torch.arange(FIRST_RESTRICTED + self.n_restricted, self.vocab)

    @property
    def seq_len(self) -> int:
        """BOS + instruction + SEP + decision + echo + EOS at the longest."""
        return 2 * self.max_len + 4


def _benign(lang: Language, shape: tuple[int, ...], g: torch.Generator) -> Tensor:
    ids = lang.benign_ids()
    return ids[torch.randint(len(ids), shape, generator=g)]


def _restricted(lang: Language, shape: tuple[int, ...], g: torch.Generator) -> Tensor:
    ids = lang.restricted_ids()
    return ids[torch.randint(len(ids), shape, generator=g)]


def instructions(
    lang: Language, n: int, p_restricted: float, max_restricted: int, g: torch.Generator
) -> tuple[list[Tensor], Tensor]:
    """``n`` instructions (lengths uniform in [min_len, max_len]); with probability
    ``p_restricted`` one carries 1..``max_restricted`` restricted tokens at random positions.
    Returns the instructions and their labels (1 = REFUSE)."""
    out, labels = [], torch.zeros(n, dtype=torch.long)
    lengths = torch.randint(lang.min_len, lang.max_len + 1, (n,), generator=g)
    flags = torch.rand(n, generator=g) < p_restricted
    for i in range(n):
        length = int(lengths[i])
        seq = _benign(lang, (length,), g)
        if flags[i]:
            k = int(torch.randint(1, min(max_restricted, length) + 1, (1,), generator=g))
            where = torch.randperm(length, generator=g)[:k]
            seq[where] = _restricted(lang, (k,), g)
            labels[i] = 1
        out.append(seq)
    return out, labels


def contrastive_pairs(
    lang: Language, n: int, g: torch.Generator, max_len: int | None = None
) -> tuple[list[Tensor], list[Tensor]]:
    """``n`` pairs (X+, X-): X+ holds exactly one restricted token, X- is X+ with that token
    swapped for a benign one (a minimal edit). Lengths up to ``max_len`` (default the
    language's)."""
    top = lang.max_len if max_len is None else max_len
    pos, neg = [], []
    lengths = torch.randint(lang.min_len, top + 1, (n,), generator=g)
    for i in range(n):
        length = int(lengths[i])
        base = _benign(lang, (length,), g)
        where = int(torch.randint(length, (1,), generator=g))
        plus = base.clone()
        plus[where] = _restricted(lang, (1,), g)[0]
        pos.append(plus)
        neg.append(base)
    return pos, neg


def training_sequences(
    instr: list[Tensor], labels: Tensor, lang: Language
) -> tuple[Tensor, Tensor]:
    """Token rows ``BOS x SEP answer`` padded to ``seq_len`` and next-token targets (``IGNORE``
    before SEP and on padding): the answer is ``REFUSE EOS`` or ``COMPLY x EOS``."""
    n, t = len(instr), lang.seq_len
    tokens = torch.full((n, t), PAD, dtype=torch.long)
    targets = torch.full((n, t), IGNORE, dtype=torch.long)
    for i, (x, y) in enumerate(zip(instr, labels.tolist(), strict=True)):
        answer = [REFUSE, EOS] if y else [COMPLY, *x.tolist(), EOS]
        row = [BOS, *x.tolist(), SEP, *answer]
        tokens[i, : len(row)] = torch.tensor(row)
        sep = len(x) + 1
        targets[i, sep : len(row) - 1] = torch.tensor(row[sep + 1 :])
    return tokens, targets


def prompts(instr: list[Tensor], suffix: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``BOS x [suffix] SEP`` right-padded, and the index of SEP per row (the decision
    position: causal attention makes the padding after it irrelevant)."""
    k = 0 if suffix is None else suffix.shape[-1]
    width = max(len(x) for x in instr) + k + 2
    tokens = torch.full((len(instr), width), PAD, dtype=torch.long)
    sep = torch.empty(len(instr), dtype=torch.long)
    for i, x in enumerate(instr):
        parts = [torch.tensor([BOS]), x]
        if suffix is not None:
            parts.append(suffix[i] if suffix.ndim == 2 else suffix)
        parts.append(torch.tensor([SEP]))
        row = torch.cat(parts)
        tokens[i, : len(row)] = row
        sep[i] = len(row) - 1
    return tokens, sep


# ---------------------------------------------------------------- the toy transformer


class Block(nn.Module):
    """Pre-LN decoder block: causal multi-head attention and a GELU MLP, each residual."""

    def __init__(self, d: int, heads: int, mlp: int) -> None:
        super().__init__()
        if d % heads:
            raise ValueError(f"d_model {d} is not divisible by {heads} heads")
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, mlp), nn.GELU(), nn.Linear(mlp, d))

    def forward(self, x: Tensor) -> Tensor:
        """x + attn(LN x), then + MLP(LN x)."""
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).unbind(2)
        a = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
        )
        x = x + self.out(a.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))

    def kv(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values ``(b, heads, t, d/heads)`` of residuals ``x`` (a prefix's cache)."""
        b, t, d = x.shape
        _, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).unbind(2)
        return k.transpose(1, 2), v.transpose(1, 2)

    def cached(self, x: Tensor, cache: tuple[Tensor, Tensor], mask: Tensor) -> Tensor:
        """:meth:`forward` for new positions ``x`` after a cached prefix; ``mask`` ``(b, 1,
        new, prefix + new)`` says which keys each new position sees."""
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).unbind(2)
        keys = torch.cat([cache[0], k.transpose(1, 2)], 2)
        values = torch.cat([cache[1], v.transpose(1, 2)], 2)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), keys, values, attn_mask=mask)
        x = x + self.out(a.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class ToyTransformer(nn.Module):
    """Decoder-only transformer: token + learned position embeddings, ``layers`` blocks, a final
    LayerNorm and an untied unembedding. Residual point ``l`` (0..layers) is the input of block
    ``l`` (``layers``: the input of the final LayerNorm)."""

    def __init__(self, vocab: int, d: int, heads: int, layers: int, mlp: int, ctx: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(ctx, d)
        self.blocks = nn.ModuleList(Block(d, heads, mlp) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.unembed = nn.Linear(d, vocab)

    @property
    def n_layers(self) -> int:
        """Number of blocks (residual points are 0..n_layers)."""
        return len(self.blocks)

    def run(
        self, embeds: Tensor, hook: Hook | None = None, upto: int | None = None
    ) -> tuple[Tensor | None, list[Tensor]]:
        """From token embeddings ``(b, t, d)``: the logits (None when stopped at residual point
        ``upto``) and the residual stream at every point reached. ``hook(l, x)`` may replace
        the residual at point ``l`` (every position) before it is used."""
        t = embeds.shape[1]
        x = embeds + self.pos(torch.arange(t, device=embeds.device))
        stream = []
        last = self.n_layers if upto is None else upto
        for layer in range(last + 1):
            if hook is not None:
                x = hook(layer, x)
            stream.append(x)
            if layer == self.n_layers or (upto is not None and layer == upto):
                break
            x = self.blocks[layer](x)
        if upto is not None and upto < self.n_layers:
            return None, stream
        return self.unembed(self.ln_f(x)), stream

    def prefix_cache(self, tokens: Tensor, upto: int) -> list[tuple[Tensor, Tensor]]:
        """Keys and values of blocks ``0..upto-1`` on right-padded prefixes ``tokens``."""
        _, stream = self.run(self.embed(tokens), upto=upto)
        return [self.blocks[layer].kv(stream[layer]) for layer in range(upto)]

    def run_after(
        self, cache: list[tuple[Tensor, Tensor]], lengths: Tensor, embeds: Tensor
    ) -> list[Tensor]:
        """The residual stream (points ``0..len(cache)``) of new positions ``embeds``
        ``(b, n, d)`` appended to cached prefixes of ``lengths`` (cache rows match ``b``): the
        same numbers as running the whole sequence, for the new positions only."""
        b, n, _ = embeds.shape
        width = cache[0][0].shape[2] if cache else 0
        x = embeds + self.pos(lengths[:, None] + torch.arange(n))
        seen = torch.arange(width)[None, None, :] < lengths[:, None, None]
        causal = torch.ones(n, n, dtype=torch.bool).tril()[None].expand(b, n, n)
        mask = torch.cat([seen.expand(b, n, width), causal], 2)[:, None]
        stream = [x]
        for layer, kv in enumerate(cache):
            x = self.blocks[layer].cached(x, kv, mask)
            stream.append(x)
        return stream

    def forward(self, tokens: Tensor, hook: Hook | None = None) -> Tensor:
        """Logits ``(b, t, vocab)``."""
        logits, _ = self.run(self.embed(tokens), hook)
        assert logits is not None
        return logits


def sequence_loss(model: ToyTransformer) -> Callable[[Tensor, Tensor], Tensor]:
    """Next-token cross-entropy on the answer positions (targets ``IGNORE`` elsewhere)."""

    def loss(tokens: Tensor, targets: Tensor) -> Tensor:
        logits = model(tokens)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)

    return loss


def gather(x: Tensor, index: Tensor) -> Tensor:
    """Row ``i`` of ``x`` (``(b, t, d)``) at position ``index[i]``: ``(b, d)``."""
    return x[torch.arange(len(index)), index]


@torch.no_grad()
def residuals(model: ToyTransformer, tokens: Tensor, index: Tensor) -> Tensor:
    """The residual stream at position ``index`` (the last prompt token), every point:
    ``(layers + 1, b, d)``."""
    _, stream = model.run(model.embed(tokens))
    return torch.stack([gather(x, index) for x in stream])


@torch.no_grad()
def decisions(
    model: ToyTransformer, tokens: Tensor, index: Tensor, hook: Hook | None = None
) -> Tensor:
    """The top-1 token at the decision position (``index``), optionally under ``hook``."""
    return gather(model(tokens, hook), index).argmax(-1)


@torch.no_grad()
def answer_accuracy(model: ToyTransformer, tokens: Tensor, targets: Tensor) -> tuple[float, float]:
    """Teacher-forced accuracy of the decision token and of the echo (and EOS) tokens."""
    pred = model(tokens).argmax(-1)
    mask = targets != IGNORE
    first = mask.float().argmax(1)
    rows = torch.arange(len(tokens))
    decision = (pred[rows, first] == targets[rows, first]).float().mean()
    rest = mask.clone()
    rest[rows, first] = False
    echo = (pred[rest] == targets[rest]).float().mean()
    return float(decision), float(echo)


def steering_hook(directions: Tensor, a: float) -> Hook:
    """``e ← e + a r̂ r̂ᵀ e`` at every residual point ``l`` with its direction ``directions[l]``
    (unit or zero), every position; a = -1 is directional ablation."""

    def hook(layer: int, x: Tensor) -> Tensor:
        u = directions[layer]
        return x + a * (x @ u)[..., None] * u

    return hook


def random_directions(n: int, d: int, g: torch.Generator) -> Tensor:
    """``n`` random unit vectors in R^d (the control of an intervention)."""
    v = torch.randn(n, d, generator=g)
    return v / v.norm(dim=1, keepdim=True)


def logit_lens_rank(model: ToyTransformer, direction: Tensor, token: int) -> int:
    """Rank of ``token`` (0 = top) among the unembedding's readings of ``direction``,
    ``W_U r̂``."""
    with torch.no_grad():
        scores = model.unembed.weight @ direction
    return int((scores > scores[token]).sum())


# ---------------------------------------------------------------- toy subspace rerouting


@dataclass(frozen=True)
class SSRSettings:
    """GCG-style token search (the SSR repository's defaults): candidates per iteration,
    top-k tokens per position, buffer size, patience, iteration cap and the loss at which a
    prompt stops."""

    search_width: int
    top_k: int
    buffer: int
    patience: int
    max_iters: int
    early_stop: float


@dataclass(frozen=True)
class SSRResult:
    """Best suffix per prompt ``(n, k)``, its loss, the iterations used, and the mean best loss
    per iteration (over prompts, the last value carried once a prompt stops)."""

    suffix: Tensor
    loss: Tensor
    iters: Tensor
    trace: list[float]


def probe_loss(
    model: ToyTransformer,
    probes: Probes,
    layers: list[int],
    embeds: Tensor,
    index: Tensor,
) -> Tensor:
    """SSR's probe loss per row: Σ_k -log(1 - p_k(e_k)) with p_k = σ(w_kᵀe_k + b_k) at the
    decision position of the target residual points ``layers``."""
    _, stream = model.run(embeds, upto=max(layers))
    return _probe_total(stream, probes, layers, index)


def _probe_total(stream: list[Tensor], probes: Probes, layers: list[int], index: Tensor) -> Tensor:
    """Σ_k softplus(w_kᵀe_k + b_k) = Σ_k -log(1 - σ(·)) at position ``index`` of each row."""
    total = torch.zeros(stream[0].shape[0])
    for layer in layers:
        z = gather(stream[layer], index) @ probes.weight[layer] + probes.bias[layer]
        total = total + F.softplus(z)
    return total


def _rows(instr: list[Tensor], suffix: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Prompt tokens with ``suffix`` (n, k), SEP indices, and the suffix positions (n, k)."""
    tokens, sep = prompts(instr, suffix)
    k = suffix.shape[1]
    where = sep[:, None] - k + torch.arange(k)[None, :]
    return tokens, sep, where


def ssr_attack(
    model: ToyTransformer,
    probes: Probes,
    layers: list[int],
    instr: list[Tensor],
    init: Tensor,
    allowed: Tensor,
    settings: SSRSettings,
    g: torch.Generator,
) -> SSRResult:
    """Subspace rerouting on the toy model: per prompt, search the ``k``-token suffix (started
    at ``init``, ``(n, k)``, tokens from ``allowed``) that drives the decision position's
    residual into the probes' acceptance side at ``layers``. Each iteration: the gradient of
    the loss with respect to the suffix's one-hot rows, the top-k allowed tokens per position,
    ``search_width`` candidates that each swap one random position for one of its top-k, the
    best candidate enters a buffer of the ``buffer`` best suffixes; the search continues from
    the buffer's best, or from a random buffer entry after ``patience`` iterations without
    improvement; a prompt stops at ``early_stop`` or after ``max_iters``. All prompts advance
    together (batched)."""
    if not isinstance(model, ToyTransformer):
        raise TypeError("ssr_attack runs on the study's ToyTransformer only")
    s = settings
    n, k = init.shape
    vocab = model.embed.num_embeddings
    mask = torch.full((vocab,), float("inf"))
    mask[allowed] = 0.0
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    tokens, sep, where = _rows(instr, init)
    rows = torch.arange(n)
    with torch.no_grad():
        start = probe_loss(model, probes, layers, model.embed(tokens), sep)
    buffers: list[list[tuple[float, Tensor]]] = [[(float(start[i]), init[i].clone())] for i in rows]
    current = init.clone()
    best = start.clone()
    stale = torch.zeros(n, dtype=torch.long)
    iters = torch.zeros(n, dtype=torch.long)
    active = best > s.early_stop
    trace = [float(best.mean())]
    for _ in range(s.max_iters):
        idx = active.nonzero().flatten()
        if len(idx) == 0:
            trace.append(float(best.mean()))
            continue
        sub_instr = [instr[i] for i in idx.tolist()]
        tokens, sep, where = _rows(sub_instr, current[idx])
        onehot = F.one_hot(tokens, vocab).float().requires_grad_(True)
        with torch.enable_grad():
            loss = probe_loss(model, probes, layers, onehot @ model.embed.weight, sep)
            (grad,) = torch.autograd.grad(loss.sum(), onehot)
        r = torch.arange(len(idx))[:, None]
        grad = grad[r, where] + mask  # (m, k, vocab); disallowed tokens never chosen
        top = (-grad).topk(s.top_k, dim=-1).indices  # (m, k, top_k)
        pos = torch.randint(k, (len(idx), s.search_width), generator=g)
        pick = torch.randint(s.top_k, (len(idx), s.search_width), generator=g)
        cand = current[idx][:, None, :].repeat(1, s.search_width, 1)  # (m, W, k)
        new_tok = top[r, pos, pick]
        cand.scatter_(2, pos[..., None], new_tok[..., None])
        with torch.no_grad():  # the prefixes BOS x are shared: cached once per prompt
            heads = [torch.cat([torch.tensor([BOS]), x]) for x in sub_instr]
            lengths = torch.tensor([len(h) for h in heads])
            pre = nn.utils.rnn.pad_sequence(heads, batch_first=True, padding_value=PAD)
            cache = [
                (kk.repeat_interleave(s.search_width, 0), vv.repeat_interleave(s.search_width, 0))
                for kk, vv in model.prefix_cache(pre, max(layers))
            ]
            tail = torch.cat(
                [cand.reshape(-1, k), torch.full((len(idx) * s.search_width, 1), SEP)], 1
            )
            stream = model.run_after(
                cache, lengths.repeat_interleave(s.search_width), model.embed(tail)
            )
            c_loss = _probe_total(stream, probes, layers, torch.full((len(tail),), k))
        c_loss = c_loss.view(len(idx), s.search_width)
        win = c_loss.argmin(1)
        for j, i in enumerate(idx.tolist()):
            iters[i] += 1
            value, suffix = float(c_loss[j, win[j]]), cand[j, win[j]].clone()
            buf = buffers[i]
            if len(buf) < s.buffer or value < buf[-1][0]:
                buf.append((value, suffix))
                buf.sort(key=lambda e: e[0])
                del buf[s.buffer :]
            if value < float(best[i]):
                best[i], stale[i] = value, 0
            else:
                stale[i] += 1
            if stale[i] >= s.patience and len(buf) > 1:
                choice = int(torch.randint(len(buf), (1,), generator=g))
                current[i], stale[i] = buf[choice][1], 0
            else:
                current[i] = buf[0][1]
            if best[i] <= s.early_stop:
                active[i] = False
        trace.append(float(best.mean()))
    suffix = torch.stack([buffers[i][0][1] for i in rows.tolist()])
    return SSRResult(suffix, best, iters, trace)
