"""Shared fixtures: a throw-away workspace with params.yaml shrunk to the tiny test profile."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never write to the repository's MLflow store from a test; runs stay in the workspace's
    spool unless a test asks for SUBSPACELAB_TRACKING=sync."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow-test.db'}")
    monkeypatch.setenv("SUBSPACELAB_TRACKING", "off")
