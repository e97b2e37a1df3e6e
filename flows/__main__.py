"""``python -m flows [study ...] [--deployment study-worker/gpu]``: run the lab flow.

Without ``--deployment`` every chain runs here, ``lab.jobs`` of them side by side; with it, one
flow run per study goes to that deployment's work pool and the results are merged into this
checkout (docs/CLUSTER.md).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from prefect.task_runners import ThreadPoolTaskRunner

from flows.lab import lab_flow
from flows.tasks import stop_stages
from subspacelab.config import lab_config, read_params

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m flows", description=__doc__)
    parser.add_argument("studies", nargs="*", help="studies to run (default: all)")
    parser.add_argument("--deployment", help="fan the studies out to this deployment's pool")
    args = parser.parse_args()
    jobs = lab_config(read_params(Path("params.yaml"))).job_count()  # chains at once, locally
    flow = lab_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=jobs))
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM behaves as Ctrl-C
    try:
        rows = flow(args.studies or None, deployment=args.deployment)
    except KeyboardInterrupt:
        stop_stages()  # whatever the flow engine was doing when it came
        print("interrupted: no stage was recorded half-done; `dvc repro` resumes", file=sys.stderr)
        sys.exit(130)
    for row in rows:
        print(
            f"{row['study']}: {row['holding']}/{row['claims']} claims hold, "
            f"{row['inconclusive']} inconclusive"
        )
