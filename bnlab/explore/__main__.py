"""``python -m bnlab.explore`` = ``bnlab-explore``."""

import sys

from bnlab.explore.cli import main

sys.exit(main())
