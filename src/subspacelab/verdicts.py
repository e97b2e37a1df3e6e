"""Verdicts with their uncertainty: how every claim of every study is decided.

A claim is one or more *conditions*. Each puts a per-seed quantity (a metric, or the paired
per-seed difference of two arms: :func:`gap`) against a threshold and is decided on the 95 %
Student-t interval of that quantity's mean over seeds, never on a difference of means alone:

* ``holds`` — the whole interval lies on the claimed side of the threshold;
* ``does not hold`` — the whole interval lies on the other side;
* ``inconclusive`` — the interval straddles the threshold: the seeds cannot resolve the gap.

The interval's half-width is the smallest effect the study's seeds can resolve; it is reported
beside every verdict. With a single value there is no interval and a ``mean`` test is
inconclusive. Invariants that must hold on every seed (a doubly-stochastic matrix, an exact
identity) use :func:`every` instead: deterministic, ``holds`` only when every value satisfies it.

A claim's verdict combines its tests: ``does not hold`` if any test does not hold, else
``inconclusive`` if any is inconclusive, else ``holds``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Verdict = Literal["holds", "does not hold", "inconclusive"]
Op = Literal[">", ">=", "<", "<="]
VERDICTS: tuple[Verdict, ...] = ("holds", "inconclusive", "does not hold")
CONFIDENCE = 0.95
_OPS = (">", ">=", "<", "<=")


@dataclass(frozen=True)
class Stat:
    """A metric over seeds (or seeds x tasks): its values, mean and sample standard deviation."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        """Number of values."""
        return len(self.values)

    @property
    def mean(self) -> float:
        """Mean over seeds."""
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        """Sample standard deviation over seeds (0 for a single value)."""
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    def fmt(self, digits: int = 3) -> str:
        """``"mean ± std"`` with ``digits`` decimals (just the mean for a single value): the one
        way tables show a metric over seeds."""
        if len(self.values) == 1:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"

    def to_json(self) -> dict[str, Any]:
        """JSON form: mean, std, n and the values."""
        return {"mean": self.mean, "std": self.std, "n": len(self.values), "values": self.values}


def t_quantile(df: int, confidence: float = CONFIDENCE) -> float:
    """Two-sided Student-t critical value for ``df`` degrees of freedom."""
    from scipy.stats import t  # lazy: only report steps decide claims

    return float(t.ppf(0.5 + confidence / 2, df))


def mean_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high): the 95 % t-interval of the mean; infinite for a single value."""
    m = statistics.fmean(values)
    if len(values) < 2:
        return m, -math.inf, math.inf
    half = t_quantile(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return m, m - half, m + half


def _as_stat(x: Stat | Sequence[float] | float) -> Stat:
    if isinstance(x, Stat):
        return x
    if isinstance(x, int | float):
        return Stat((float(x),))
    return Stat(tuple(float(v) for v in x))


def gap(a: Stat | Sequence[float], b: Stat | Sequence[float] | float) -> Stat:
    """Paired per-seed differences ``a - b`` (value i of each is the same seed, or seed x task).

    ``b`` may be a single number (a constant baseline). Unequal lengths are an error: pairing is
    what makes the comparison fair.
    """
    sa, sb = _as_stat(a), _as_stat(b)
    if sb.n == 1 and sa.n > 1:
        return Stat(tuple(v - sb.values[0] for v in sa.values))
    if sa.n != sb.n:
        raise ValueError(f"paired difference needs equal lengths, got {sa.n} and {sb.n}")
    return Stat(tuple(x - y for x, y in zip(sa.values, sb.values, strict=True)))


def ratio(a: Stat | Sequence[float], b: Stat | Sequence[float] | float) -> Stat:
    """Paired per-seed ratios ``a / b`` (``b`` may be a single number, as in :func:`gap`)."""
    sa, sb = _as_stat(a), _as_stat(b)
    if sb.n == 1 and sa.n > 1:
        sb = Stat(sb.values * sa.n)
    if sa.n != sb.n:
        raise ValueError(f"paired ratio needs equal lengths, got {sa.n} and {sb.n}")
    if any(y == 0 for y in sb.values):
        raise ValueError("paired ratio: a denominator is zero")
    return Stat(tuple(x / y for x, y in zip(sa.values, sb.values, strict=True)))


@dataclass(frozen=True)
class Condition:
    """One condition of a claim: ``quantity op threshold``, decided by ``rule``.

    ``rule="mean"``: on the 95 % t-interval of the quantity's mean; ``rule="every"``: on every
    value (an invariant; no interval).
    """

    name: str
    values: tuple[float, ...]
    op: Op
    threshold: float
    rule: Literal["mean", "every"] = "mean"

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"test {self.name!r}: op must be one of {_OPS}, got {self.op!r}")
        if not self.values:
            raise ValueError(f"test {self.name!r}: no values")
        bad = [v for v in self.values if not math.isfinite(v)]
        if bad or not math.isfinite(self.threshold):
            raise ValueError(
                f"test {self.name!r}: non-finite values {bad} or threshold {self.threshold}"
            )

    @property
    def interval(self) -> tuple[float, float, float]:
        """(mean, low, high); for ``every`` the range of the values."""
        if self.rule == "every":
            return statistics.fmean(self.values), min(self.values), max(self.values)
        return mean_interval(self.values)

    @property
    def resolution(self) -> float:
        """Half-width of the interval: the smallest effect the seeds resolve (0 for ``every``)."""
        if self.rule == "every":
            return 0.0
        _, lo, hi = self.interval
        return (hi - lo) / 2

    @property
    def verdict(self) -> Verdict:
        """holds / does not hold / inconclusive, as the module docstring says."""
        _, lo, hi = self.interval
        t = self.threshold
        if self.op in (">", ">="):
            ok_all = lo > t if self.op == ">" else lo >= t
            bad_all = hi <= t if self.op == ">" else hi < t
        else:
            ok_all = hi < t if self.op == "<" else hi <= t
            bad_all = lo >= t if self.op == "<" else lo > t
        if self.rule == "every":
            return "holds" if ok_all else "does not hold"
        if ok_all:
            return "holds"
        return "does not hold" if bad_all else "inconclusive"

    def to_json(self) -> dict[str, Any]:
        """JSON form with the interval and the verdict."""
        mean, lo, hi = self.interval
        return {
            "name": self.name,
            "op": self.op,
            "threshold": self.threshold,
            "rule": self.rule,
            "n": len(self.values),
            "mean": mean,
            "low": lo if math.isfinite(lo) else None,
            "high": hi if math.isfinite(hi) else None,
            "verdict": self.verdict,
            "values": list(self.values),
        }

    def describe(self) -> str:
        """``name = mean [low, high] op threshold`` in one line."""
        mean, lo, hi = self.interval
        if self.rule == "every":
            span = f"all {len(self.values)} in [{lo:.4g}, {hi:.4g}]"
        elif math.isfinite(lo):
            span = f"{mean:.4g} [{lo:.4g}, {hi:.4g}] (n={len(self.values)})"
        else:
            span = f"{mean:.4g} (n=1, no interval)"
        return f"{self.name} = {span} {self.op} {self.threshold:.4g}"


def on_mean(name: str, x: Stat | Sequence[float] | float, op: Op, threshold: float) -> Condition:
    """A test on the 95 % interval of the mean of ``x`` (per-seed values, or a :func:`gap`)."""
    return Condition(name, _as_stat(x).values, op, float(threshold), "mean")


def every(name: str, x: Stat | Sequence[float] | float, op: Op, threshold: float) -> Condition:
    """An invariant: every value of ``x`` must satisfy ``op threshold``."""
    return Condition(name, _as_stat(x).values, op, float(threshold), "every")


def combine(verdicts: Sequence[Verdict]) -> Verdict:
    """A conjunction: fails if any fails, inconclusive if any is, else holds."""
    if not verdicts:
        raise ValueError("a claim needs at least one test")
    if "does not hold" in verdicts:
        return "does not hold"
    return "inconclusive" if "inconclusive" in verdicts else "holds"


@dataclass(frozen=True)
class ClaimResult:
    """A claim's tests and extra numbers shown beside them; the verdict follows from the tests."""

    tests: tuple[Condition, ...]
    measured: dict[str, float | Stat] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.tests or not all(isinstance(t, Condition) for t in self.tests):
            raise TypeError(
                "ClaimResult needs a non-empty tuple of Condition (subspacelab.verdicts)"
            )

    @property
    def verdict(self) -> Verdict:
        """The claim's three-way verdict."""
        return combine([t.verdict for t in self.tests])

    @property
    def holds(self) -> bool:
        """True only for ``holds``."""
        return self.verdict == "holds"

    @property
    def resolution(self) -> float:
        """The largest interval half-width among the claim's tests."""
        return max(t.resolution for t in self.tests)

    def measured_json(self) -> dict[str, Any]:
        """The extra measured numbers in JSON form."""
        return {
            k: v.to_json() if isinstance(v, Stat) else _finite_or_none(v)
            for k, v in self.measured.items()
        }


def decide(*tests: Condition, **measured: float | Stat) -> ClaimResult:
    """The claim result of ``tests`` (all must hold), with ``measured`` shown beside them."""
    return ClaimResult(tuple(tests), dict(measured))


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(float(value)) else None
