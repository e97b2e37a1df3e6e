"""Run the merging group's chains (task_zoo first: the others use its steps) on tiny params."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any
from unittest import mock

from subspacelab import registry
from tests.helpers import make_workspace, run_chain, tiny_params

CHAIN = ("task_zoo", "dc_merge", "concrete_merge", "flora", "merging_compare")


def tiny_merging_chain(tmp_path: Path) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Every study of :data:`CHAIN` run in order in one workspace; (metrics, claims) each.

    Only these studies are registered while it runs (unrelated packages may be mid-edit), and
    the registry is restored afterwards: a partial registry left behind would hide every other
    study from the tests that run next.
    """
    chain = {
        slug: importlib.import_module(f"subspacelab.studies.{slug}.study").STUDY for slug in CHAIN
    }
    with mock.patch.dict(registry._REGISTRY, chain, clear=True):
        ws = make_workspace(tmp_path / "ws", tiny_params(list(CHAIN)))
        return {slug: run_chain(ws, slug) for slug in CHAIN}
