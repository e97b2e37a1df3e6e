"""TreeSynth (Wang et al. 2025, arXiv:2503.17195): tree-guided partition of a task space into
mutually exclusive, exhaustive attribute subspaces, then per-leaf synthesis; and the miniature's
simulated generator.

The tree algorithm (:func:`build_tree`, :func:`synthesise`) follows the official
``generator_*_async.py``: each node holds a path of (dimension, value) constraints; it generates
``samples_per_node`` samples under them, asks the generator for ONE new dimension and a
partition of those sample indices by its values (validated: every index exactly once; up to
``retries`` attempts, else the node is a leaf), has the value set completed, and gets one child
per value, or ONE child holding the whole value list when the dimension is "infinite" (more
than ``infinite_threshold`` values). BFS to ``max_depth``; a leaf generates
``infinite_path_samples ** (#infinite nodes on its path)`` batches (capped).

No LLM runs offline: :class:`SimulatedLLM` stands in for it over a known attribute space of
arithmetic word problems (:data:`WORLD`), rendered by templates with their exact answers. It
(i) generates from a skewed Zipf prior over each free dimension and repeats earlier outputs of
the same prompt with probability ``repeat`` (mode collapse); (ii) selects the unused dimension
with the highest empirical entropy among the samples, plus Gaussian noise, and returns a
partition that is corrupted with probability ``fail_prob`` (so the validator has work);
(iii) reveals the full value set when asked to expand. The full profile swaps in an LLM server
with the same interface (full.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Protocol

import numpy as np

from subspacelab.representation import diversity

OPERATIONS = ("add", "sub", "mul", "div", "mixed")
STEPS = ("2", "3", "4", "5", "6")
CONTEXTS = (
    ("shopping", "grocery store", "apples"),
    ("travel", "train station", "tickets"),
    ("cooking", "kitchen", "flour"),
    ("sports", "stadium", "balls"),
    ("school", "classroom", "pencils"),
    ("garden", "garden", "seeds"),
    ("library", "library", "books"),
    ("farm", "farm", "eggs"),
    ("bakery", "bakery", "cookies"),
    ("zoo", "zoo", "bananas"),
    ("office", "office", "paper"),
    ("concert", "concert hall", "chairs"),
    ("hospital", "hospital", "bandages"),
    ("beach", "beach", "shells"),
    ("museum", "museum", "postcards"),
    ("camping", "campsite", "firewood"),
    ("factory", "factory", "bolts"),
    ("harbour", "harbour", "rope"),
    ("art class", "art studio", "paint"),
    ("birthday party", "party", "balloons"),
)
NUMBERS = ("small", "medium", "large")
UNITS = ("money", "time", "length", "count")


@dataclass(frozen=True)
class Dimension:
    """One attribute dimension of the task space and its full value set."""

    name: str
    values: tuple[str, ...]


WORLD: tuple[Dimension, ...] = (
    Dimension("operation", OPERATIONS),
    Dimension("steps", STEPS),
    Dimension("context", tuple(c[0] for c in CONTEXTS)),
    Dimension("numbers", NUMBERS),
    Dimension("unit", UNITS),
)
OPERATION = 0  # index of the dimension the downstream classifier predicts
CONTEXT = 2

_NAMES = ("Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jo", "Kofi", "Lea")
_RANGES = {"small": (1, 9), "medium": (10, 99), "large": (100, 999)}
_FACTORS = {"small": (2, 3), "medium": (2, 6), "large": (2, 9)}
_START = {
    "money": "{name} is at the {place} with {n} dollars to spend on {item}.",
    "time": "{name} spends {n} minutes on {item} at the {place}.",
    "length": "{name} needs {n} meters of {item} at the {place}.",
    "count": "{name} counts {n} {item} at the {place}.",
}
_UNIT_WORD = {"money": "dollars", "time": "minutes", "length": "meters", "count": "{item}"}
_PHRASES = {
    "add": ("Then {p} gets {k} more {u}.", "After that, {k} more {u} are added."),
    "sub": ("Then {p} uses up {k} {u}.", "Next, {k} {u} are taken away."),
    "mul": ("Then the amount becomes {k} times as large.", "Next, it is multiplied by {k}."),
    "div": (
        "Then it is shared equally among {k} people and {p} keeps one share.",
        "Next, the amount is divided into {k} equal parts and one part is kept.",
    ),
}
_QUESTION = "How many {u} are left in the end?"


def universe(dims: Sequence[int]) -> list[tuple[int, ...]]:
    """Every combination of values of the dimensions ``dims`` of :data:`WORLD`."""
    combos: list[tuple[int, ...]] = [()]
    for d in dims:
        combos = [(*c, v) for c in combos for v in range(len(WORLD[d].values))]
    return combos


def render(attrs: Sequence[int], rng: np.random.Generator) -> tuple[str, str]:
    """A templated word problem with the attribute values ``attrs`` (one index per dimension of
    :data:`WORLD`) and its exact answer; names and numbers drawn from ``rng``."""
    op, steps = OPERATIONS[attrs[0]], int(STEPS[attrs[1]])
    _, place, item = CONTEXTS[attrs[2]]
    rng_name, unit = NUMBERS[attrs[3]], UNITS[attrs[4]]
    lo, hi = _RANGES[rng_name]
    name = _NAMES[int(rng.integers(len(_NAMES)))]
    u = _UNIT_WORD[unit].format(item=item)
    value = Fraction(int(rng.integers(lo, hi + 1)))
    parts = [_START[unit].format(name=name, n=value, item=item, place=place)]
    for _ in range(steps):
        step_op = OPERATIONS[int(rng.integers(4))] if op == "mixed" else op
        if step_op in ("mul", "div"):
            k = int(rng.integers(_FACTORS[rng_name][0], _FACTORS[rng_name][1] + 1))
        else:
            k = int(rng.integers(lo, hi + 1))
        value = {
            "add": value + k,
            "sub": value - k,
            "mul": value * k,
            "div": value / k,
        }[step_op]
        phrases = _PHRASES[step_op]
        parts.append(phrases[int(rng.integers(len(phrases)))].format(p=name, k=k, u=u))
    parts.append(_QUESTION.format(u=u))
    return " ".join(parts), str(value)


@dataclass(frozen=True)
class Sample:
    """One synthetic problem: its attribute indices (one per dimension), text and answer (an
    exact fraction written as text)."""

    attrs: tuple[int, ...]
    text: str
    answer: str


Constraints = dict[int, tuple[int, ...]]  # dimension -> one value, or the list of an infinite node


class Generator(Protocol):
    """What TreeSynth asks of its generator (the simulated LLM, or an LLM server in full)."""

    def generate(self, constraints: Constraints, n: int) -> list[Sample]:
        """``n`` samples obeying ``constraints``."""
        ...

    def propose(
        self, samples: Sequence[Sample], excluded: Sequence[int]
    ) -> tuple[int, dict[int, list[int]]]:
        """One new dimension (not in ``excluded``) and a partition of the sample indices by its
        values (value -> indices); not yet validated."""
        ...

    def expand(self, dim: int, seen: Sequence[int]) -> tuple[list[int], bool]:
        """The complete value set of ``dim`` given the values ``seen``, and whether it is
        "infinite"."""
        ...


class Synthesiser(Generator, Protocol):
    """A generator the baselines can also drive: seed evolution's mutation and a random stream."""

    rng: np.random.Generator

    def mutate(self, sample: Sample) -> Sample:
        """``sample`` with one attribute changed and the text rewritten."""
        ...


def zipf_prior(n_values: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Zipf probabilities ``∝ rank^-exponent`` over ``n_values`` values in a random rank order."""
    p = 1.0 / np.arange(1, n_values + 1) ** exponent
    return (p / p.sum())[rng.permutation(n_values)]


@dataclass
class SimulatedLLM:
    """The miniature's stand-in for the LLM (see the module docstring); ``rng`` drives it."""

    priors: list[np.ndarray]
    repeat: float
    select_noise: float
    fail_prob: float
    infinite_threshold: int
    rng: np.random.Generator
    history: dict[tuple[tuple[int, tuple[int, ...]], ...], list[Sample]] = field(
        default_factory=dict
    )
    calls: Counter[str] = field(default_factory=Counter)

    def fresh(self, constraints: Constraints) -> Sample:
        """One new sample: constrained dimensions fixed (an infinite node's list: uniform over
        it), free dimensions from the skewed prior."""
        attrs = []
        for d, prior in enumerate(self.priors):
            allowed = constraints.get(d)
            if allowed is None:
                attrs.append(int(self.rng.choice(len(prior), p=prior)))
            else:
                attrs.append(int(allowed[int(self.rng.integers(len(allowed)))]))
        text, answer = render(attrs, self.rng)
        return Sample(tuple(attrs), text, answer)

    def generate(self, constraints: Constraints, n: int) -> list[Sample]:
        """``n`` samples for one prompt; each repeats an earlier output of the same prompt with
        probability ``repeat`` (mode collapse)."""
        self.calls["generate"] += 1
        seen = self.history.setdefault(tuple(sorted(constraints.items())), [])
        out = []
        for _ in range(n):
            if seen and self.rng.random() < self.repeat:
                s = seen[int(self.rng.integers(len(seen)))]
            else:
                s = self.fresh(constraints)
            seen.append(s)
            out.append(s)
        return out

    def mutate(self, sample: Sample) -> Sample:
        """Seed evolution: one random dimension of ``sample`` changed to another value drawn
        from the prior (the LLM's own preference), the text rewritten."""
        self.calls["mutate"] += 1
        attrs = list(sample.attrs)
        d = int(self.rng.integers(len(attrs)))
        p = self.priors[d].copy()
        p[attrs[d]] = 0.0
        attrs[d] = int(self.rng.choice(len(p), p=p / p.sum()))
        text, answer = render(attrs, self.rng)
        return Sample(tuple(attrs), text, answer)

    def propose(
        self, samples: Sequence[Sample], excluded: Sequence[int]
    ) -> tuple[int, dict[int, list[int]]]:
        """The unused dimension of highest empirical entropy (+ noise) and the sample indices
        grouped by its value; with probability ``fail_prob`` one index is dropped."""
        self.calls["propose"] += 1
        free = [d for d in range(len(self.priors)) if d not in excluded]
        scores = [
            diversity.entropy([s.attrs[d] for s in samples]) + self.select_noise * self.rng.normal()
            for d in free
        ]
        dim = free[int(np.argmax(scores))]
        partition: dict[int, list[int]] = {}
        for i, s in enumerate(samples):
            partition.setdefault(s.attrs[dim], []).append(i)
        if self.rng.random() < self.fail_prob:
            value = next(iter(partition))
            partition[value] = partition[value][1:]
        return dim, partition

    def expand(self, dim: int, seen: Sequence[int]) -> tuple[list[int], bool]:
        """The full value set of ``dim``; infinite when it has more than the threshold."""
        self.calls["expand"] += 1
        values = list(range(len(self.priors[dim])))
        return values, len(values) > self.infinite_threshold


def valid_partition(partition: dict[int, list[int]], n: int) -> bool:
    """True when the groups cover the indices ``0..n-1`` exactly once, none empty."""
    flat = [i for group in partition.values() for i in group]
    return all(partition.values()) and sorted(flat) == list(range(n))


@dataclass
class Node:
    """A tree node: its path of constraints, depth, and (once expanded) dimension and children."""

    constraints: Constraints
    depth: int
    dim: int | None = None
    infinite: bool = False
    children: list[Node] = field(default_factory=list)

    @property
    def infinite_on_path(self) -> int:
        """How many constraints on the path are an infinite node's value list."""
        return sum(len(v) > 1 for v in self.constraints.values())


@dataclass
class TreeStats:
    """Bookkeeping of one tree: nodes, leaves, partition attempts and failures."""

    nodes: int = 0
    leaves: int = 0
    attempts: int = 0
    rejected: int = 0
    failed_nodes: int = 0


def select_and_classify(
    gen: Generator, samples: Sequence[Sample], excluded: Sequence[int], retries: int, st: TreeStats
) -> tuple[int, dict[int, list[int]]] | None:
    """Ask for a dimension and partition until it validates (at most ``retries`` times)."""
    for _ in range(retries):
        st.attempts += 1
        dim, partition = gen.propose(samples, excluded)
        if dim not in excluded and valid_partition(partition, len(samples)):
            return dim, partition
        st.rejected += 1
    return None


def build_tree(
    gen: Generator, n_dims: int, max_depth: int, samples_per_node: int, retries: int
) -> tuple[Node, TreeStats]:
    """Breadth-first TreeSynth partition of the task space, to depth ``max_depth``."""
    root, st = Node({}, 0), TreeStats()
    queue = [root]
    while queue:
        node = queue.pop(0)
        st.nodes += 1
        if node.depth == max_depth or len(node.constraints) == n_dims:
            st.leaves += 1
            continue
        samples = gen.generate(node.constraints, samples_per_node)
        chosen = select_and_classify(gen, samples, list(node.constraints), retries, st)
        if chosen is None:
            st.failed_nodes += 1
            st.leaves += 1
            continue
        node.dim, partition = chosen
        values, node.infinite = gen.expand(node.dim, sorted(partition))
        groups = [tuple(values)] if node.infinite else [(v,) for v in values]
        node.children = [Node(node.constraints | {node.dim: g}, node.depth + 1) for g in groups]
        queue.extend(node.children)
    return root, st


def tree_json(node: Node) -> dict[str, object]:
    """The tree as JSON (the cached artefact): constraints by dimension name, children."""
    return {
        "constraints": {
            WORLD[d].name: [WORLD[d].values[v] for v in vals]
            for d, vals in node.constraints.items()
        },
        "dimension": None if node.dim is None else WORLD[node.dim].name,
        "infinite": node.infinite,
        "children": [tree_json(c) for c in node.children],
    }


def leaves(root: Node) -> list[Node]:
    """The tree's leaves, left to right."""
    return [root] if not root.children else [lf for c in root.children for lf in leaves(c)]


def synthesise(
    gen: Generator,
    root: Node,
    samples_per_node: int,
    infinite_path_samples: int,
    max_leaf_batches: int,
) -> list[Sample]:
    """Every leaf's samples: ``infinite_path_samples ** k`` batches (``k`` infinite nodes on its
    path, capped at ``max_leaf_batches``) of ``samples_per_node``."""
    out: list[Sample] = []
    for leaf in leaves(root):
        batches = min(infinite_path_samples**leaf.infinite_on_path, max_leaf_batches)
        for _ in range(batches):
            out.extend(gen.generate(leaf.constraints, samples_per_node))
    return out


def naive(gen: Synthesiser, n: int, batch: int) -> list[Sample]:
    """Temperature sampling: ``n`` samples from the unconstrained prompt, ``batch`` per call."""
    out: list[Sample] = []
    while len(out) < n:
        out.extend(gen.generate({}, min(batch, n - len(out))))
    return out


def seed_evolution(gen: Synthesiser, n: int, batch: int) -> list[Sample]:
    """Evol-style baseline: ``batch`` naive seeds, then each new sample mutates one attribute of
    a uniformly chosen earlier sample."""
    out = gen.generate({}, min(batch, n))
    while len(out) < n:
        out.append(gen.mutate(out[int(gen.rng.integers(len(out)))]))
    return out


def subsample(pool: Sequence[Sample], n: int, rng: np.random.Generator) -> list[Sample]:
    """``n`` samples of ``pool`` without replacement (the equal-size comparison)."""
    if len(pool) < n:
        raise ValueError(f"the tree produced {len(pool)} samples, fewer than the {n} compared")
    return [pool[int(i)] for i in rng.choice(len(pool), size=n, replace=False)]


def uniform_set(n: int, rng: np.random.Generator) -> list[Sample]:
    """``n`` problems with every attribute uniform (the held-out test set)."""
    out = []
    for _ in range(n):
        attrs = [int(rng.integers(len(d.values))) for d in WORLD]
        text, answer = render(attrs, rng)
        out.append(Sample(tuple(attrs), text, answer))
    return out
