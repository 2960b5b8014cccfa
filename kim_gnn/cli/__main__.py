"""``python -m kim_gnn.cli``: the ``kim-gnn`` command."""

import sys

from .parser import main

if __name__ == "__main__":
    sys.exit(main())
