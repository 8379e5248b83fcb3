"""`python -m blockswap.cli ...` runs the `blockswap` command."""

import sys

from . import main

sys.exit(main())
