"""``python -m subspacelab.dvcjob <dvc arguments>``: DVC's command line for the lab's jobs.

The same DVC, with :func:`subspacelab.lab.fast_dvc_job` applied first: YAML texts parsed once,
params looked up by key, and dvc.lock updated through libyaml (atomically) instead of a
round-trip parse and dump of the whole lock per stage. What DVC decides and records is unchanged.
"""

from __future__ import annotations

import sys

from subspacelab.lab import fast_dvc_job


def main() -> int:
    """Run DVC's CLI on this process's arguments."""
    fast_dvc_job()
    from dvc.cli import main as dvc_main

    return dvc_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
