"""`python -m qscope.cli` == the `qscope` console script."""

import sys

from qscope.cli import main

sys.exit(main())
