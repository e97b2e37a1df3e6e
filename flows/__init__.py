"""Prefect 3 flows built from the study registry (see flows/lab.py and flows/cluster.py).

A flow runs the code of the checkout it belongs to: on a worker that is its clone of the deployed
commit, whatever version of ``subspacelab`` the worker's environment has installed.
"""

import sys
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[1]
for _path in (_CHECKOUT, _CHECKOUT / "src"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
