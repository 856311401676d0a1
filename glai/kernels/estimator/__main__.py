"""``python -m glai.kernels.estimator [--verbose]``: build the compiled CPU estimator for this machine (``make
install`` runs it); exits 1 with a warning when the build fails (the ``torch`` backend still works)."""

import sys

from glai.kernels.estimator.compiled import main

if __name__ == "__main__":
    sys.exit(main())
