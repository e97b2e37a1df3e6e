"""Rewrite the golden tiny-profile metrics of the named studies (all with no names)."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from subspacelab import registry
from tests.golden import MACHINE_KEY, TINY_METRICS, computed, machine
from tests.helpers import make_workspace, run_chain, tiny_params, upstream_studies


def main(slugs: list[str]) -> None:
    """Run each study's tiny chain in a scratch workspace and write its metric values."""
    for slug in slugs or sorted(registry.studies()):
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:  # a late log write
            upstream = upstream_studies(slug)
            ws = make_workspace(Path(tmp) / "ws", tiny_params([*upstream, slug]))
            for other in upstream:
                run_chain(ws, other)
            metrics, _ = run_chain(ws, slug)
        values = computed(metrics["metrics"])
        path = TINY_METRICS / f"{slug}.json"
        doc = {MACHINE_KEY: machine(), **values}
        path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        print(f"{slug}: {len(values)} metrics -> {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
