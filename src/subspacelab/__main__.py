"""``python -m subspacelab``: see :mod:`subspacelab.cli`."""

import sys

from subspacelab.cli import main

sys.exit(main())
