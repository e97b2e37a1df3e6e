"""Stage entry point: ``python -m stages <step> <study>`` or ``python -m stages summary``.

Thin by design: parse, run, report errors as one clear line. All logic lives in subspacelab.
"""

from __future__ import annotations

import sys
from pathlib import Path

from subspacelab.cli import main

if __name__ == "__main__":
    sys.exit(main(["stage", *sys.argv[1:]], root=Path.cwd()))
