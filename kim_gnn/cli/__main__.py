"""``python -m kim_gnn.cli``: the ``kim-gnn`` command."""

import sys

from .parser import main

sys.exit(main())
