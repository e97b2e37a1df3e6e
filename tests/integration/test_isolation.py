"""The suite needs nothing outside the repository and passes in any order."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from subspacelab import registry
from tests.helpers import REPO
from tests.studies import merging_helpers


def test_tests_read_nothing_outside_the_repository() -> None:
    """The paper specs (the developers' sibling folder) are not in a user's clone."""
    outside = re.compile(r"REPO\.parent|parents\[2\]|shared/papers|\"shared\"")
    offenders = [
        f"{path.relative_to(REPO)}:{n}"
        for path in sorted((REPO / "tests").rglob("*.py"))
        if path.name != Path(__file__).name
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if outside.search(line)
    ]
    assert offenders == []


def test_merging_chain_leaves_the_registry_as_it_found_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It registers only its five studies while it runs; left behind, that partial registry
    made the dvc.yaml drift test (and every registry-wide test after it) fail."""
    monkeypatch.setattr(registry, "_REGISTRY", {})
    monkeypatch.setattr(merging_helpers, "run_chain", lambda ws, slug: ({"slug": slug}, []))
    out = merging_helpers.tiny_merging_chain(tmp_path)
    assert list(out) == list(merging_helpers.CHAIN)
    assert registry._REGISTRY == {}
