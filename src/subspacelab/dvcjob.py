"""``python -m subspacelab.dvcjob <dvc arguments>``: DVC's command line for the lab's jobs.

The same DVC, with :func:`subspacelab.lab.fast_dvc_job` applied first: YAML texts parsed once,
params looked up by key, and dvc.lock updated through libyaml (atomically) instead of a
round-trip parse and dump of the whole lock per stage. When the lab driver runs a fork server
(:mod:`subspacelab.forkserver`), a stage command ``python -m stages ...`` is handed to it instead
of a new interpreter; any other command, or no server, runs as DVC runs it. What DVC decides and
records is unchanged.
"""

from __future__ import annotations

import os
import shlex
import sys
from typing import Any

from subspacelab.lab import fast_dvc_job


def _through_server() -> None:
    """Route DVC's stage commands through the fork server named in the environment."""
    from dvc.stage import run as dvc_run
    from dvc.stage.exceptions import StageCmdFailedError

    from subspacelab import forkserver

    path = os.environ.get(forkserver.ENV)
    if not path:
        return
    spawn = dvc_run._run

    def run(executable: str | None, cmd: str, **kwargs: Any) -> None:
        argv = shlex.split(cmd)
        if argv[:3] == ["python", "-m", forkserver.STAGES]:
            code = forkserver.run(path, argv[2], argv[3:], kwargs["cwd"], kwargs["env"])
            if code is not None:
                if code != 0:
                    raise StageCmdFailedError(cmd, code)
                return
        spawn(executable, cmd, **kwargs)

    dvc_run._run = run


def main() -> int:
    """Run DVC's CLI on this process's arguments."""
    fast_dvc_job()
    _through_server()
    from dvc.cli import main as dvc_main

    return dvc_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
