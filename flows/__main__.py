"""``python -m flows [study ...] [--deployment study-worker/gpu]``: run the lab flow.

Without ``--deployment`` every chain runs here, in process; with it, one flow run per study goes
to that deployment's work pool and the results are merged into this checkout (docs/CLUSTER.md).
"""

from __future__ import annotations

import argparse

from flows.lab import lab_flow

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m flows", description=__doc__)
    parser.add_argument("studies", nargs="*", help="studies to run (default: all)")
    parser.add_argument("--deployment", help="fan the studies out to this deployment's pool")
    args = parser.parse_args()
    for row in lab_flow(args.studies or None, deployment=args.deployment):
        print(
            f"{row['study']}: {row['holding']}/{row['claims']} claims hold, "
            f"{row['inconclusive']} inconclusive"
        )
