"""``python -m flows [study ...]``: run the lab flow locally (all studies, or those named)."""

from __future__ import annotations

import sys

from flows.lab import lab_flow

if __name__ == "__main__":
    for row in lab_flow(sys.argv[1:] or None):
        print(f"{row['study']}: {row['holding']}/{row['claims']} claims hold")
