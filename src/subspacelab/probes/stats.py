"""A sign test as a verdict condition, for relations read over many cells rather than seeds.

Li et al.'s robustness relation (arXiv:2206.07918) asks whether a shift has one sign across
corruption × severity cells; a t-interval of the mean shift would let a few large cells carry
it. :func:`sign_test` decides it on the share of cells with a positive value (zeros dropped):
its 95 % Clopper-Pearson interval against one half, so that the verdict is ``holds`` when the
exact two-sided sign test rejects "no preferred sign" in the claimed direction, ``does not
hold`` when it rejects it the other way, and ``inconclusive`` otherwise.

:class:`SignTest` is a :class:`~subspacelab.verdicts.Condition` whose interval is that of the
share, so claims.json, the summary and the verdict combination treat it like any other test.
(A candidate for ``subspacelab.verdicts``; kept in the probes toolkit until it moves there.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from subspacelab.verdicts import CONFIDENCE, Condition


@dataclass(frozen=True)
class SignTest(Condition):
    """A condition on the share of positive values: its Clopper-Pearson interval vs 0.5."""

    @property
    def interval(self) -> tuple[float, float, float]:
        """(share of positive values, low, high) over the non-zero values; (0.5, 0, 1) when
        every value is zero (no evidence either way)."""
        from scipy.stats import binomtest  # lazy: only report steps decide claims

        pos = sum(v > 0 for v in self.values)
        n = sum(v != 0 for v in self.values)
        if n == 0:
            return 0.5, 0.0, 1.0
        ci = binomtest(pos, n).proportion_ci(CONFIDENCE, method="exact")
        return pos / n, float(ci.low), float(ci.high)


def sign_test(name: str, values: Sequence[float]) -> SignTest:
    """The sign test of ``values`` (oriented so that positive is the claimed direction): the
    share of positive values must exceed one half."""
    return SignTest(name, tuple(float(v) for v in values), ">", 0.5, "mean")
